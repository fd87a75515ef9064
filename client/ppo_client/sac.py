"""Reading rating data sets in the Simulacra Aesthetic Captions (SAC) sqlite schema.

    survey(id, qid, rating)                    generations(id, sid, method, prompt, verified)
    images(id, gid, idx)                       paths(iid, path)
    ratings(sid, iid, rating, verified)        upscales(iid, method)

A set whose raters' noise-free taste is known (the demo world's) also holds
``true_ratings(sid, iid, score)``; the reader returns those scores where present, so evaluations can
report how far noise lets any method go. Other tables of such a set are its owner's business.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ppo_client.errors import DataError

SAC_TABLES = {
    "survey": "id INTEGER, qid INTEGER, rating INTEGER",
    "generations": "id INTEGER PRIMARY KEY, sid INTEGER, method TEXT, prompt TEXT, verified INTEGER",
    "images": "id INTEGER PRIMARY KEY, gid INTEGER, idx INTEGER",
    "paths": "iid INTEGER PRIMARY KEY, path TEXT",
    "ratings": "sid INTEGER, iid INTEGER, rating INTEGER, verified INTEGER",
    "upscales": "iid INTEGER, method TEXT",
}
TRUTH_TABLES = {"true_ratings": "sid INTEGER, iid INTEGER, score REAL"}
REQUIRED = ("ratings", "paths")


@dataclass
class SacRatings:
    """Every rater's ratings (repeated ratings of one image averaged), image paths, and truth if present."""

    path: Path
    ratings: dict[int, dict[int, float]]
    """sid -> {iid: rating}"""
    paths: dict[int, str]
    true_scores: dict[int, dict[int, float]] = field(default_factory=dict)
    """sid -> {iid: noise-free score}; empty for a real SAC file."""

    @property
    def has_truth(self) -> bool:
        return bool(self.true_scores)


def connect(path: Path) -> tuple[sqlite3.Connection, set[str]]:
    """A read-only connection to a SAC-format file and its tables, or a ``DataError`` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such SAC file")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise DataError(f"{path}: not a SQLite database ({exc})") from exc
    missing = [t for t in REQUIRED if t not in tables]
    if missing:
        connection.close()
        raise DataError(f"{path}: not a SAC file, table {missing[0]!r} is missing")
    return connection, tables


def read_sac(path: Path, *, sid: int | None = None) -> SacRatings:
    connection, tables = connect(path)
    try:
        where, args = ("WHERE sid = ?", (sid,)) if sid is not None else ("", ())
        sums: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row_sid, iid, rating in connection.execute(f"SELECT sid, iid, rating FROM ratings {where}", args):
            try:
                value = float(rating)
            except (TypeError, ValueError):
                raise DataError(f"{path}: ratings row sid={row_sid} iid={iid} has rating {rating!r}, not a number") from None
            if not 1 <= value <= 10:
                raise DataError(f"{path}: ratings row sid={row_sid} iid={iid} has rating {value}, outside 1-10")
            sums[int(row_sid)][int(iid)].append(value)
        ratings = {s: {i: sum(v) / len(v) for i, v in items.items()} for s, items in sums.items()}
        paths = {int(iid): str(p) for iid, p in connection.execute("SELECT iid, path FROM paths")}
        truth: dict[int, dict[int, float]] = defaultdict(dict)
        if "true_ratings" in tables:
            for row_sid, iid, score in connection.execute(f"SELECT sid, iid, score FROM true_ratings {where}", args):
                truth[int(row_sid)][int(iid)] = float(score)
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: cannot read the SAC tables ({exc})") from exc
    finally:
        connection.close()
    return SacRatings(Path(path), ratings, paths, dict(truth))
