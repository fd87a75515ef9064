"""The demo world's known true taste: which virtual user stands behind a store's user, and the judge
that scores images with that persona's noise-free taste.

The link lives in a table of the demo world's own in the user store, ``demo_personas``
(a row per linked user, deleted with the user); the store itself knows nothing about personas.
``PROVIDER`` plugs this into the SDK's optimization runs (entry-point group
``ppo_client.optimize.truth.GROUP``): a run for a linked user records the true taste of every image
it renders beside the learned score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import sqlalchemy as sa

from ppo_client.store import UserStore
from ppo_demo.personas import Persona, score_image
from ppo_demo.sac import read_personas

TABLE = "demo_personas"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE, spec TEXT NOT NULL)"
)


def link_persona(store: UserStore, user: str, spec: dict) -> None:
    """Say that ``user``'s true taste is this persona's (checked first: a bad spec is refused)."""
    Persona.from_dict(spec)
    user_id = store.user_id(user)
    with store.transaction() as db:
        db.execute(sa.text(_DDL))
        db.execute(sa.text(f"INSERT INTO {TABLE} VALUES (:u, :s) ON CONFLICT (user_id) DO UPDATE SET spec = excluded.spec"),
                   {"u": user_id, "s": json.dumps(spec)})


def link_from_sac(store: UserStore, user: str, sac: Path, sid: int) -> dict | None:
    """Link ``user`` to rater ``sid`` of a demo rating set; None (nothing linked) where the set has no
    persona for that rater, as a real SAC file has none."""
    spec = read_personas(Path(sac), sid=sid).get(sid)
    if spec is not None:
        link_persona(store, user, spec)
    return spec


def persona_of(store: UserStore, user: str) -> dict | None:
    user_id = store.user_id(user)
    if not store.has_table(TABLE):
        return None
    rows = store.read(f"SELECT spec FROM {TABLE} WHERE user_id = :u", {"u": user_id})
    return json.loads(rows[0][0]) if rows else None


def judge(specs: Sequence[dict]) -> Callable[[object], float]:
    """The mean noise-free taste of these personas, of one image (a PIL image or RGB array)."""
    personas = [Persona.from_dict(s) for s in specs]
    return lambda image: float(np.mean([score_image(p, np.asarray(image)) for p in personas]))


class PersonaTruth:
    """The SDK's ``TruthProvider`` for the demo world: the truth of a run is its users' personas."""

    name = "personas"

    def spec(self, store: UserStore, users: Sequence[str]) -> dict | None:
        personas = [p for p in (persona_of(store, u) for u in users) if p]
        return {"personas": personas} if personas else None

    def judge(self, spec: dict) -> Callable[[object], float]:
        return judge(spec["personas"])


PROVIDER = PersonaTruth()
