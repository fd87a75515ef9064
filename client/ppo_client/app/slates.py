"""The images to show a person side by side, and the slates the app has handed out.

A slate is chosen by ``piaa.active.most_informative_slate`` under the person's current ``bayes``
posterior, learnt from every signal they have given (ratings, choices, description), as
``user train`` would learn it. Each slate handed out gets an opaque id, kept in memory per app (the
newest ``MAX_SLATES``): an answer that names it is refused if the slate was already answered, so a
double key press or a second tab cannot store one pick twice; an undo opens the slate again. The
ids do not survive a restart of the app (the choices do: each is stored as it is given).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ppo_client.app.queue import PriorCache
from ppo_client.errors import PPOError
from ppo_client.piaa.active import most_informative_slate
from ppo_client.piaa.embeddings import embed_stored
from ppo_client.piaa.methods import bayes_posterior
from ppo_client.piaa.training import user_signals
from ppo_client.store import MAX_SHOWN, MIN_SHOWN, PoolImage, UserStore

MAX_SLATES = 1000
"""Slates remembered per app; the oldest are forgotten first."""


class SlateConflictError(PPOError):
    """A slate answered again (the app answers 409)."""


def choose(store: UserStore, client, user: str, k: int, *, priors: PriorCache,
           rng: np.random.Generator | None = None) -> tuple[tuple[PoolImage, ...], str, float]:
    """The ``k`` pool images whose pick would teach the user's model most, why, and the expected
    information in nats (no images: the pool has fewer than ``k``)."""
    if not MIN_SHOWN <= k <= MAX_SHOWN:
        raise ValueError(f"a slate shows {MIN_SHOWN} to {MAX_SHOWN} images, not {k}")
    pool = store.pool()
    if len(pool) < k:
        return (), f"the pool has {len(pool)} images; a slate of {k} needs {k}", 0.0
    x_pool = embed_stored(client, store, [p.image_hash for p in pool])
    signals = user_signals(client, store, user, "bayes")
    answers = len(signals.ratings.y) + (len(signals.choices) if signals.choices is not None else 0)
    prior = priors.get(client, store, user, x_pool.shape[1], answers)
    posterior = bayes_posterior(prior, signals.ratings.x, signals.ratings.y, choices=signals.choices,
                                description=signals.description)
    slate = most_informative_slate(posterior, x_pool, k, rng or np.random.default_rng())
    return tuple(pool[i] for i in slate.indices), slate.why, slate.information


class SlateBook:
    """The slates handed out by this app, which are answered, and by which stored choice."""

    def __init__(self, limit: int = MAX_SLATES) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._slates: OrderedDict[str, tuple[str, tuple[str, ...], int | None]] = OrderedDict()
        """id -> (user, hashes shown, the choice that answered it or None)."""

    def issue(self, user: str, shown: Sequence[str]) -> str:
        slate_id = secrets.token_urlsafe(12)
        with self._lock:
            self._slates[slate_id] = (user, tuple(shown), None)
            while len(self._slates) > self._limit:
                self._slates.popitem(last=False)
        return slate_id

    def shown(self, user: str, slate_id: str) -> tuple[str, ...] | None:
        """The images of the user's slate (None: no such slate here, or it was forgotten)."""
        with self._lock:
            entry = self._slates.get(slate_id)
        return entry[1] if entry is not None and entry[0] == user else None

    def claim(self, user: str, slate_id: str) -> None:
        """Mark the slate as being answered; a second answer is refused."""
        with self._lock:
            entry = self._slates.get(slate_id)
            if entry is None or entry[0] != user:
                raise SlateConflictError("slate: no such slate (the app forgets slates when it restarts): ask for a new one")
            if entry[2] is not None:
                raise SlateConflictError(f"slate: already answered (choice {entry[2]}); undo that choice to answer it again")
            self._slates[slate_id] = (user, entry[1], -1)

    def answered(self, slate_id: str, choice_id: int | None) -> None:
        """The stored choice that answered a claimed slate (None: storing failed; the slate is open again)."""
        with self._lock:
            entry = self._slates.get(slate_id)
            if entry is not None:
                self._slates[slate_id] = (entry[0], entry[1], choice_id)

    def reopen(self, user: str, choice_id: int) -> None:
        """An undone choice: the slate it answered can be answered again."""
        with self._lock:
            for slate_id, (owner, shown, answer) in self._slates.items():
                if owner == user and answer == choice_id:
                    self._slates[slate_id] = (owner, shown, None)
