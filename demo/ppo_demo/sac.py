"""The demo world's rating set in the SAC schema (``ppo_client.sac`` reads it, like a real one).

Besides SAC's tables it fills ``true_ratings(sid, iid, score)`` (the noise-free taste behind each
rating, which the SDK's reader returns) and ``personas(sid, spec)`` (each virtual user's JSON
persona, read here: ``read_personas``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ppo_client.errors import DataError
from ppo_client.sac import SAC_TABLES, TRUTH_TABLES, connect

SURVEY_QUESTIONS = 20
PERSONAS_TABLE = {"personas": "sid INTEGER PRIMARY KEY, spec TEXT"}


@dataclass(frozen=True)
class RatedImage:
    iid: int
    gid: int
    prompt: str
    path: str
    """Relative to the folder that holds the sqlite file."""


@dataclass(frozen=True)
class UserRatings:
    sid: int
    persona_spec: dict
    survey: Sequence[int]
    """Answers to the 20 sign-up questions (the demo world: ratings of the first 20 images)."""
    ratings: Sequence[tuple[int, int]]
    """(image id, rating 1..10)"""
    true_scores: Sequence[tuple[int, float]]


def write_sac(path: Path, images: Sequence[RatedImage], users: Sequence[UserRatings], *, method: str) -> Path:
    """Write a complete file atomically: a crash leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    if tmp.exists():
        tmp.unlink()
    connection = sqlite3.connect(tmp)
    try:
        with connection:
            for table, columns in {**SAC_TABLES, **TRUTH_TABLES, **PERSONAS_TABLE}.items():
                connection.execute(f"CREATE TABLE {table} ({columns})")
            connection.executemany(
                "INSERT INTO generations VALUES (?, ?, ?, ?, 1)", [(im.gid, 0, method, im.prompt) for im in images]
            )
            connection.executemany("INSERT INTO images VALUES (?, ?, 0)", [(im.iid, im.gid) for im in images])
            connection.executemany("INSERT INTO paths VALUES (?, ?)", [(im.iid, im.path) for im in images])
            for user in users:
                connection.execute("INSERT INTO personas VALUES (?, ?)", (user.sid, json.dumps(user.persona_spec)))
                connection.executemany(
                    "INSERT INTO survey VALUES (?, ?, ?)", [(user.sid, q, int(r)) for q, r in enumerate(user.survey)]
                )
                connection.executemany(
                    "INSERT INTO ratings VALUES (?, ?, ?, 1)", [(user.sid, iid, int(r)) for iid, r in user.ratings]
                )
                connection.executemany(
                    "INSERT INTO true_ratings VALUES (?, ?, ?)",
                    [(user.sid, iid, float(s)) for iid, s in user.true_scores],
                )
    finally:
        connection.close()
    os.replace(tmp, path)
    return path


def read_personas(path: Path, *, sid: int | None = None) -> dict[int, dict]:
    """sid -> persona spec of a demo rating set (empty for a set without personas, e.g. a real one)."""
    connection, tables = connect(Path(path))
    try:
        if "personas" not in tables:
            return {}
        where, args = ("WHERE sid = ?", (sid,)) if sid is not None else ("", ())
        personas = {}
        for row_sid, spec in connection.execute(f"SELECT sid, spec FROM personas {where}", args):
            try:
                personas[int(row_sid)] = json.loads(spec)
            except (TypeError, ValueError):
                raise DataError(f"{path}: personas row sid={row_sid} is not JSON") from None
        return personas
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: cannot read the personas table ({exc})") from exc
    finally:
        connection.close()
