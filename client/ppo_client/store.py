"""The user store: users, their rated images, cached embeddings and trained preference models.

One SQLite file (``PPO_STORE`` or ``--store``; default under the user's data directory) and, beside
it, a folder of content-addressed image copies, so deleting an original loses nothing. Every write
is one transaction; an import checks all its rows before it writes anything.

Several processes may use one store at once. Each write transaction takes SQLite's write lock at
its start (``BEGIN IMMEDIATE``), and image files are only added or removed while it is held, so an
import never deletes a file another process committed and a delete never removes a file that an
import is about to reference. A store is checked (``PRAGMA quick_check``) when it is opened, and a
damaged file is reported with its path instead of half-working.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ppo_client.errors import DataError, HeadFormatError, StoreError
from ppo_client.images import decode_image, read_image
from ppo_client.piaa.head import PreferenceHead

logger = logging.getLogger(__name__)

STORE_ENV = "PPO_STORE"
SCHEMA_VERSION = 3
MAX_NAME_LENGTH = 64
GENERAL_USER = "general"
"""Not a user: ``optimize --user general`` means the crowd's taste, so no user may take the name."""
BUSY_TIMEOUT_S = 60.0
"""How long a write waits for another process's write to finish before giving up."""
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
_MIGRATIONS = {
    2: """
CREATE TABLE pool (
    image_hash TEXT PRIMARY KEY REFERENCES images(hash), origin TEXT NOT NULL, label TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE comparisons (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    left_hash TEXT NOT NULL REFERENCES images(hash),
    right_hash TEXT NOT NULL REFERENCES images(hash),
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'same')),
    context TEXT NOT NULL,
    created REAL NOT NULL
);
""",
}
"""Schema changes after version 1, applied in order to older stores (and to new ones): SQL scripts,
or functions of the connection where SQL alone cannot say it."""


def _unlink_personas(db: sqlite3.Connection) -> None:
    """Version 3: the store holds users and their ratings, nothing about who they are. Version 2 kept
    the demo world's persona link in ``users.persona``; those links move to the demo world's own table
    (``ppo_demo.truth``), and the column is dropped (emptied where SQLite is older than 3.35)."""
    if "persona" not in {row[1] for row in db.execute("PRAGMA table_info(users)")}:
        return
    links = db.execute("SELECT id, persona FROM users WHERE persona IS NOT NULL").fetchall()
    if links:
        db.execute(
            "CREATE TABLE IF NOT EXISTS demo_personas "
            "(user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE, spec TEXT NOT NULL)"
        )
        db.executemany("INSERT OR IGNORE INTO demo_personas VALUES (?, ?)", links)
    if sqlite3.sqlite_version_info >= (3, 35):
        db.execute("ALTER TABLE users DROP COLUMN persona")
    else:
        db.execute("UPDATE users SET persona = NULL")


_MIGRATIONS[3] = _unlink_personas


def default_store_path() -> Path:
    from platformdirs import user_data_dir

    override = os.environ.get(STORE_ENV)
    return Path(override) if override else Path(user_data_dir("ppo")) / "store.sqlite"


def check_name(name: str) -> str:
    if not isinstance(name, str):
        raise StoreError(f"a user name is text, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"user name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}")
    if re.search(r"[/\\\x00-\x1f\x7f]", name) or name in (".", ".."):
        raise StoreError(f"user name {name!r} contains a path separator or a control character")
    return name


def _guarded(method):
    """SQLite's errors out of a store method become one ``StoreError`` naming the store file."""

    @functools.wraps(method)
    def guarded(self: UserStore, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise self._failure(exc) from exc

    return guarded


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
class PoolImage:
    """An image kept for rating though nobody may have rated it yet (a starter-gallery render, a
    person's own picture, a run's image)."""

    image_hash: str
    path: Path
    origin: str
    """``gallery``, ``folder`` or ``run``."""
    label: str
    """What it is: the prompt that rendered it, or the file it came from."""


@dataclass(frozen=True)
class PoolEntry:
    data: bytes
    origin: str
    label: str


@dataclass(frozen=True)
class Comparison:
    left_hash: str
    right_hash: str
    choice: str
    context: str


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


class UserStore:
    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S, check: bool = True) -> None:
        """``check=False`` skips the integrity check, for a process that checked this store when it
        started and opens it again for each request (the web app)."""
        self.path = Path(path) if path else default_store_path()
        self.images_dir = self.path.parent / (self.path.stem + "_images")
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # autocommit mode: every transaction is begun explicitly, by _write
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise self._failure(exc) from exc
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check")] if check else ["ok"]
            if problems != ["ok"]:
                found = " ".join(" ".join(problems[:3]).split())[:300]
                raise StoreError(
                    f"{self.path} is damaged (integrity check: {found}); restore it from a backup, or use another "
                    "store (--store or $PPO_STORE)"
                )
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._failure(exc) from exc
        except BaseException:
            self._db.close()
            raise

    def _failure(self, exc: sqlite3.DatabaseError) -> StoreError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return StoreError(
                f"{self.path} is busy: another process kept it locked for more than {self.busy_timeout_s:g} s ({text})"
            )
        return StoreError(
            f"{self.path} is damaged or not a user store ({text}); restore it from a backup, or use another store "
            "(--store or $PPO_STORE)"
        )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the store's write lock from its first statement on."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise StoreError(f"{self.path} has no readable schema version") from None

    def _migrate(self) -> None:
        tables = self._tables()
        if tables and "meta" not in tables:
            raise StoreError(f"{self.path} is an SQLite file but not a user store")
        if tables and self._version() == SCHEMA_VERSION:
            return
        if tables and self._version() > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {self._version()}; this version reads {SCHEMA_VERSION}")
        with self._write() as db:  # two processes creating or upgrading one store: the second finds it done
            if not self._tables():
                _run_script(db, _SCHEMA)
                db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
            for version in range(self._version() + 1, SCHEMA_VERSION + 1):
                migration = _MIGRATIONS[version]
                if callable(migration):
                    migration(db)
                else:
                    _run_script(db, migration)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
                logger.info("upgraded %s to schema version %d", self.path, version)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- users ---

    @_guarded
    def create_user(self, name: str) -> None:
        check_name(name)
        if name == GENERAL_USER:
            raise StoreError(f"{GENERAL_USER!r} is reserved (`optimize --user {GENERAL_USER}` means the crowd's taste); choose another name")
        try:
            with self._write() as db:
                db.execute("INSERT INTO users (name, created) VALUES (?, ?)", (name, time.time()))
        except sqlite3.IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None

    def _user_id(self, name: str) -> int:
        row = self._db.execute("SELECT id FROM users WHERE name = ?", (check_name(name),)).fetchone()
        if row is None:
            raise StoreError(f"unknown user {name!r}; create it with `ppo-client user create {name}`")
        return int(row[0])

    @_guarded
    def user_id(self, name: str) -> int:
        """The user's row id, for tables that others keep beside the store's own (``transaction``)."""
        return self._user_id(name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the store's file, for code that keeps its own tables there (the demo
        world's persona links): their rows then live and die with the store's users
        (``REFERENCES users(id) ON DELETE CASCADE``), under the same lock."""
        try:
            with self._write() as db:
                yield db
        except sqlite3.DatabaseError as exc:
            raise self._failure(exc) from exc

    def read(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        """Rows of a read-only query on the store's file (see ``transaction``)."""
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failure(exc) from exc

    @_guarded
    def has_user(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None

    _SUMMARY = (
        "SELECT u.name, u.created, (SELECT COUNT(*) FROM ratings r WHERE r.user_id = u.id),"
        " (SELECT COUNT(*) FROM models m WHERE m.user_id = u.id) FROM users u"
    )

    @_guarded
    def users(self) -> list[UserSummary]:
        return [UserSummary(*row) for row in self._db.execute(self._SUMMARY + " ORDER BY u.name")]

    @_guarded
    def user(self, name: str) -> UserSummary:
        row = self._db.execute(self._SUMMARY + " WHERE u.id = ?", (self._user_id(name),)).fetchone()
        return UserSummary(*row)

    @_guarded
    def delete_user(self, name: str) -> None:
        """The user, their ratings and models, and the image files no other user rated. Files are
        moved aside inside the transaction and removed after it commits (put back if it fails)."""
        moved: list[tuple[Path, Path]] = []
        try:
            with self._write() as db:
                user_id = self._user_id(name)
                db.execute("DELETE FROM ratings WHERE user_id = ?", (user_id,))
                db.execute("DELETE FROM models WHERE user_id = ?", (user_id,))
                db.execute("DELETE FROM users WHERE id = ?", (user_id,))
                orphans = db.execute(
                    "SELECT hash, file FROM images WHERE hash NOT IN (SELECT image_hash FROM ratings)"
                    " AND hash NOT IN (SELECT image_hash FROM pool)"
                    " AND hash NOT IN (SELECT left_hash FROM comparisons) AND hash NOT IN (SELECT right_hash FROM comparisons)"
                ).fetchall()
                db.executemany("DELETE FROM images WHERE hash = ?", [(h,) for h, _ in orphans])
                db.executemany("DELETE FROM embeddings WHERE image_hash = ?", [(h,) for h, _ in orphans])
                for _, file in orphans:
                    path = self.images_dir / file
                    aside = path.with_name(f"{path.name}.{uuid.uuid4().hex}.deleting")
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(path, aside)
                        moved.append((path, aside))
        except BaseException:
            for path, aside in moved:
                os.replace(aside, path)
            raise
        for _, aside in moved:
            aside.unlink(missing_ok=True)

    # --- ratings ---

    @_guarded
    def import_ratings(self, name: str, rows: Sequence[RatingRow], *, source: str) -> int:
        """Add ``rows`` to the user's ratings, all or nothing; returns how many were added."""
        self._user_id(name)
        if not rows:
            raise DataError(f"{source}: no ratings to import")
        checked, seen = [], {}
        for row in rows:  # read and decode every image before taking the write lock
            rating = _checked_rating(row)
            data, image = read_image(row.path, row.where)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                raise DataError(f"{row.where}: {row.path} is the same image as {seen[digest][0]}")
            seen[digest] = (row.where, row.path)
            suffix = "." + (image.format or "img").lower()
            checked.append((digest, suffix, data, image.size, rating))

        written: list[Path] = []
        with self._write() as db:
            try:
                user_id = self._user_id(name)
                already = {h for (h,) in db.execute("SELECT image_hash FROM ratings WHERE user_id = ?", (user_id,))}
                for digest, *_ in checked:
                    if digest in already:
                        where, path = seen[digest]
                        raise DataError(f"{where}: {path} is already rated by {name!r}")
                written += self._add_images(db, [(d, s, data, size) for d, s, data, size, _ in checked])
                now = time.time()
                db.executemany(
                    "INSERT INTO ratings (user_id, image_hash, rating, source, created) VALUES (?, ?, ?, ?, ?)",
                    [(user_id, d, r, source, now) for d, _, _, _, r in checked],
                )
            except BaseException:
                for path in written:  # still under the lock: no other process can refer to these yet
                    path.unlink(missing_ok=True)
                raise
        logger.info("imported %d ratings for %s from %s", len(checked), name, source)
        return len(checked)

    def _add_images(self, db: sqlite3.Connection, items: Sequence[tuple[str, str, bytes, tuple[int, int]]]) -> list[Path]:
        """Copy images (hash, suffix, bytes, size) into the store; call inside ``_write``. Returns
        the files written, for the caller to remove if its transaction fails."""
        written = []
        for digest, suffix, data, _ in items:
            target = self.images_dir / digest[:2] / (digest + suffix)
            if not target.exists():  # under the write lock: no delete can remove it meanwhile
                _write_file(target, data)
                written.append(target)
        now = time.time()
        db.executemany(
            "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?)",
            [(d, f"{d[:2]}/{d}{s}", size[0], size[1], now) for d, s, _, size in items],
        )
        return written

    # --- the pool of images to rate, single ratings, comparisons ---

    @_guarded
    def add_to_pool(self, entries: Sequence[PoolEntry]) -> list[str]:
        """Keep images for rating (decoded and checked first); returns their hashes, in order."""
        items, hashes = {}, []
        for entry in entries:
            image = decode_image(entry.data, entry.label)
            digest = hashlib.sha256(entry.data).hexdigest()
            items[digest] = (digest, "." + (image.format or "img").lower(), entry.data, image.size, entry)
            hashes.append(digest)
        written: list[Path] = []
        with self._write() as db:
            try:
                written = self._add_images(db, [item[:4] for item in items.values()])
                db.executemany(
                    "INSERT OR IGNORE INTO pool VALUES (?, ?, ?, ?)",
                    [(d, e.origin, e.label, time.time()) for d, _, _, _, e in items.values()],
                )
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                raise
        return hashes

    @_guarded
    def pool(self, origin: str | None = None) -> list[PoolImage]:
        rows = self._db.execute(
            "SELECT p.image_hash, i.file, p.origin, p.label FROM pool p JOIN images i ON i.hash = p.image_hash"
            + (" WHERE p.origin = ?" if origin else "") + " ORDER BY p.rowid",  # insertion order: timestamps can tie
            (origin,) if origin else (),
        ).fetchall()
        return [PoolImage(h, self.images_dir / f, o, label) for h, f, o, label in rows]

    @_guarded
    def image_file(self, image_hash: str) -> Path | None:
        """The stored copy of an image by its content hash (None: not in the store)."""
        if not re.fullmatch(r"[0-9a-f]{64}", image_hash or ""):
            return None
        row = self._db.execute("SELECT file FROM images WHERE hash = ?", (image_hash,)).fetchone()
        return self.images_dir / row[0] if row else None

    @_guarded
    def rate(self, name: str, image_hash: str, rating: float, *, source: str) -> None:
        """One rating of a stored image, in its own transaction; rating it again replaces it."""
        value = _checked_rating(RatingRow(f"image {image_hash[:12]}", Path(), rating))
        with self._write() as db:
            user_id = self._user_id(name)
            if db.execute("SELECT 1 FROM images WHERE hash = ?", (image_hash,)).fetchone() is None:
                raise DataError(f"image {image_hash[:12]}... is not in the store")
            db.execute(
                "INSERT INTO ratings (user_id, image_hash, rating, source, created) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, image_hash) DO UPDATE SET rating = excluded.rating, source = excluded.source,"
                " created = excluded.created",
                (user_id, image_hash, value, source, time.time()),
            )

    @_guarded
    def unrate(self, name: str, image_hash: str) -> bool:
        """Remove one rating (an undo); the image stays. Returns whether there was one."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM ratings WHERE user_id = ? AND image_hash = ?", (self._user_id(name), image_hash))
        return cursor.rowcount > 0

    @_guarded
    def add_comparison(self, name: str, left_hash: str, right_hash: str, choice: str, *, context: str) -> None:
        """A blind pairwise choice (``left``, ``right`` or ``same``), kept as training data."""
        if choice not in ("left", "right", "same"):
            raise DataError(f"choice must be left, right or same, got {choice!r}")
        with self._write() as db:
            db.execute(
                "INSERT INTO comparisons (user_id, left_hash, right_hash, choice, context, created) VALUES (?, ?, ?, ?, ?, ?)",
                (self._user_id(name), left_hash, right_hash, choice, context, time.time()),
            )

    @_guarded
    def comparisons(self, name: str) -> list[Comparison]:
        rows = self._db.execute(
            "SELECT left_hash, right_hash, choice, context FROM comparisons WHERE user_id = ? ORDER BY id",
            (self._user_id(name),),
        ).fetchall()
        return [Comparison(*row) for row in rows]

    @_guarded
    def ratings(self, name: str) -> list[Rating]:
        rows = self._db.execute(
            "SELECT r.image_hash, i.file, r.rating, r.source FROM ratings r JOIN images i ON i.hash = r.image_hash"
            " WHERE r.user_id = ? ORDER BY r.id",
            (self._user_id(name),),
        )
        return [Rating(h, self.images_dir / f, float(v), s) for h, f, v, s in rows]

    # --- embeddings ---

    @_guarded
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

    @_guarded
    def put_embeddings(self, vectors: dict[str, np.ndarray], encoder: str) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [(h, encoder, np.asarray(v, dtype="<f4").tobytes()) for h, v in vectors.items()],
            )

    # --- preference models ---

    @_guarded
    def save_model(self, name: str, method: str, encoder: str, head: PreferenceHead, params: dict, metrics: dict) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO models (user_id, method, encoder, head, params, metrics, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._user_id(name), method, encoder, head.to_bytes(), json.dumps(params), json.dumps(metrics), time.time()),
            )
        return int(cursor.lastrowid)

    @_guarded
    def models(self, name: str) -> list[StoredModel]:
        rows = self._db.execute(
            "SELECT id, method, encoder, head, params, metrics, created FROM models WHERE user_id = ? ORDER BY id",
            (self._user_id(name),),
        ).fetchall()
        try:
            return [
                StoredModel(i, name, m, e, PreferenceHead.from_bytes(h), json.loads(p), json.loads(x), c)
                for i, m, e, h, p, x, c in rows
            ]
        except (HeadFormatError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: a stored model of {name!r} is damaged ({exc}); retrain it") from None

    @_guarded
    def latest_model(self, name: str, method: str | None = None) -> StoredModel:
        models = [m for m in self.models(name) if method is None or m.method == method]
        if not models:
            wanted = f" with method {method!r}" if method else ""
            raise StoreError(f"user {name!r} has no trained model{wanted}; run `ppo-client user train {name}`")
        return models[-1]



def _run_script(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _write_file(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically, through a temporary name no other process uses."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
