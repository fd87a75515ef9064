"""The user store: users, their rated images, cached embeddings and trained preference models.

One SQLite file (``PPO_STORE`` or ``--store``; default under the user's data directory) and, beside
it, a folder of content-addressed image copies, so deleting an original loses nothing. Every write
is one transaction; an import checks all its rows before it writes anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ppo_client.errors import DataError, StoreError
from ppo_client.piaa.head import PreferenceHead

logger = logging.getLogger(__name__)

STORE_ENV = "PPO_STORE"
SCHEMA_VERSION = 1
MAX_NAME_LENGTH = 64
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL, persona TEXT);
CREATE TABLE images (
    hash TEXT PRIMARY KEY, file TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, created REAL NOT NULL
);
CREATE TABLE ratings (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    image_hash TEXT NOT NULL REFERENCES images(hash),
    rating REAL NOT NULL CHECK (rating >= 1 AND rating <= 10),
    source TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (user_id, image_hash)
);
CREATE TABLE embeddings (
    image_hash TEXT NOT NULL, encoder TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (image_hash, encoder)
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    method TEXT NOT NULL,
    encoder TEXT NOT NULL,
    head BLOB NOT NULL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def default_store_path() -> Path:
    from platformdirs import user_data_dir

    override = os.environ.get(STORE_ENV)
    return Path(override) if override else Path(user_data_dir("ppo")) / "store.sqlite"


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"user name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}")
    if re.search(r"[/\\\x00-\x1f\x7f]", name) or name in (".", ".."):
        raise StoreError(f"user name {name!r} contains a path separator or a control character")
    return name


@dataclass(frozen=True)
class RatingRow:
    """One rating to import; ``where`` names its origin in errors (``ratings.csv row 3``)."""

    where: str
    path: Path
    rating: object


@dataclass(frozen=True)
class Rating:
    image_hash: str
    image_path: Path
    rating: float
    source: str


@dataclass(frozen=True)
class StoredModel:
    id: int
    user: str
    method: str
    encoder: str
    head: PreferenceHead
    params: dict
    metrics: dict
    created: float


@dataclass(frozen=True)
class UserSummary:
    name: str
    created: float
    ratings: int
    models: int


def _checked_rating(row: RatingRow) -> float:
    try:
        value = float(row.rating)
    except (TypeError, ValueError):
        raise DataError(f"{row.where}: rating {row.rating!r} is not a number") from None
    if not np.isfinite(value) or not 1 <= value <= 10:
        raise DataError(f"{row.where}: rating {value:g} is outside 1-10")
    return value


def _read_image(row: RatingRow) -> tuple[bytes, Image.Image]:
    try:
        data = row.path.read_bytes()
    except OSError as exc:
        raise DataError(f"{row.where}: cannot read image {row.path} ({exc.strerror or exc})") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{row.where}: {row.path} is not a readable image ({exc})") from None
    return data, image


class UserStore:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_store_path()
        self.images_dir = self.path.parent / (self.path.stem + "_images")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a user store ({exc})") from exc

    def _migrate(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            with self._db:
                self._db.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
            return
        if "meta" not in tables:
            raise StoreError(f"{self.path} is an SQLite file but not a user store")
        (version,) = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if int(version) != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}; this version reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- users ---

    def create_user(self, name: str) -> None:
        check_name(name)
        try:
            with self._db:
                self._db.execute("INSERT INTO users (name, created) VALUES (?, ?)", (name, time.time()))
        except sqlite3.IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None

    def _user_id(self, name: str) -> int:
        row = self._db.execute("SELECT id FROM users WHERE name = ?", (check_name(name),)).fetchone()
        if row is None:
            raise StoreError(f"unknown user {name!r}; create it with `ppo-client user create {name}`")
        return int(row[0])

    def set_persona(self, name: str, spec: dict) -> None:
        """Link a demo-world virtual user's persona spec (its true taste) to this user."""
        user_id = self._user_id(name)
        with self._db:
            self._db.execute("UPDATE users SET persona = ? WHERE id = ?", (json.dumps(spec), user_id))

    def persona(self, name: str) -> dict | None:
        (spec,) = self._db.execute("SELECT persona FROM users WHERE id = ?", (self._user_id(name),)).fetchone()
        return json.loads(spec) if spec else None

    def has_user(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None

    _SUMMARY = (
        "SELECT u.name, u.created, (SELECT COUNT(*) FROM ratings r WHERE r.user_id = u.id),"
        " (SELECT COUNT(*) FROM models m WHERE m.user_id = u.id) FROM users u"
    )

    def users(self) -> list[UserSummary]:
        return [UserSummary(*row) for row in self._db.execute(self._SUMMARY + " ORDER BY u.name")]

    def user(self, name: str) -> UserSummary:
        row = self._db.execute(self._SUMMARY + " WHERE u.id = ?", (self._user_id(name),)).fetchone()
        return UserSummary(*row)

    def delete_user(self, name: str) -> None:
        user_id = self._user_id(name)
        with self._db:
            self._db.execute("DELETE FROM ratings WHERE user_id = ?", (user_id,))
            self._db.execute("DELETE FROM models WHERE user_id = ?", (user_id,))
            self._db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            orphans = self._db.execute(
                "SELECT hash, file FROM images WHERE hash NOT IN (SELECT image_hash FROM ratings)"
            ).fetchall()
            self._db.executemany("DELETE FROM images WHERE hash = ?", [(h,) for h, _ in orphans])
            self._db.executemany("DELETE FROM embeddings WHERE image_hash = ?", [(h,) for h, _ in orphans])
        for _, file in orphans:
            (self.images_dir / file).unlink(missing_ok=True)

    # --- ratings ---

    def import_ratings(self, name: str, rows: Sequence[RatingRow], *, source: str) -> int:
        """Add ``rows`` to the user's ratings, all or nothing; returns how many were added."""
        user_id = self._user_id(name)
        if not rows:
            raise DataError(f"{source}: no ratings to import")
        already = {h for (h,) in self._db.execute("SELECT image_hash FROM ratings WHERE user_id = ?", (user_id,))}
        checked, seen = [], {}
        for row in rows:
            rating = _checked_rating(row)
            data, image = _read_image(row)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                raise DataError(f"{row.where}: {row.path} is the same image as {seen[digest]}")
            if digest in already:
                raise DataError(f"{row.where}: {row.path} is already rated by {name!r}")
            seen[digest] = row.where
            suffix = "." + (image.format or "img").lower()
            checked.append((digest, suffix, data, image.size, rating))

        written = []
        try:
            for digest, suffix, data, _, _ in checked:
                target = self.images_dir / digest[:2] / (digest + suffix)
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_suffix(target.suffix + ".tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, target)
                    written.append(target)
            now = time.time()
            with self._db:
                self._db.executemany(
                    "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?)",
                    [(d, f"{d[:2]}/{d}{s}", size[0], size[1], now) for d, s, _, size, _ in checked],
                )
                self._db.executemany(
                    "INSERT INTO ratings (user_id, image_hash, rating, source, created) VALUES (?, ?, ?, ?, ?)",
                    [(user_id, d, r, source, now) for d, _, _, _, r in checked],
                )
        except BaseException:
            for path in written:  # the transaction rolled back: leave no files it does not name
                path.unlink(missing_ok=True)
            raise
        logger.info("imported %d ratings for %s from %s", len(checked), name, source)
        return len(checked)

    def ratings(self, name: str) -> list[Rating]:
        rows = self._db.execute(
            "SELECT r.image_hash, i.file, r.rating, r.source FROM ratings r JOIN images i ON i.hash = r.image_hash"
            " WHERE r.user_id = ? ORDER BY r.id",
            (self._user_id(name),),
        )
        return [Rating(h, self.images_dir / f, float(v), s) for h, f, v, s in rows]

    # --- embeddings ---

    def embeddings(self, hashes: Iterable[str], encoder: str) -> dict[str, np.ndarray]:
        hashes = list(hashes)
        found = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for digest, blob in self._db.execute(
                f"SELECT image_hash, vector FROM embeddings WHERE encoder = ? AND image_hash IN ({marks})",
                (encoder, *chunk),
            ):
                found[digest] = np.frombuffer(blob, dtype="<f4").copy()
        return found

    def put_embeddings(self, vectors: dict[str, np.ndarray], encoder: str) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [(h, encoder, np.asarray(v, dtype="<f4").tobytes()) for h, v in vectors.items()],
            )

    # --- preference models ---

    def save_model(self, name: str, method: str, encoder: str, head: PreferenceHead, params: dict, metrics: dict) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO models (user_id, method, encoder, head, params, metrics, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._user_id(name), method, encoder, head.to_bytes(), json.dumps(params), json.dumps(metrics), time.time()),
            )
        return int(cursor.lastrowid)

    def models(self, name: str) -> list[StoredModel]:
        rows = self._db.execute(
            "SELECT id, method, encoder, head, params, metrics, created FROM models WHERE user_id = ? ORDER BY id",
            (self._user_id(name),),
        )
        return [
            StoredModel(i, name, m, e, PreferenceHead.from_bytes(h), json.loads(p), json.loads(x), c)
            for i, m, e, h, p, x, c in rows
        ]

    def latest_model(self, name: str, method: str | None = None) -> StoredModel:
        models = [m for m in self.models(name) if method is None or m.method == method]
        if not models:
            wanted = f" with method {method!r}" if method else ""
            raise StoreError(f"user {name!r} has no trained model{wanted}; run `ppo-client user train {name}`")
        return models[-1]

