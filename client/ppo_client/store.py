"""The user store: users, their rated images, cached embeddings and trained preference models.

One SQLite file (``PPO_STORE`` or ``--store``; default under the user's data directory) and, beside
it, a folder of content-addressed image copies, so deleting an original loses nothing. Every write
is one transaction; an import checks all its rows before it writes anything.

Several processes may use one store at once. Each write transaction takes SQLite's write lock at
its start (``BEGIN IMMEDIATE``), and image files are only added or removed while it is held, so an
import never deletes a file another process committed and a delete never removes a file that an
import is about to reference. A store is checked (``PRAGMA quick_check``) when it is opened, and a
damaged file is reported with its path instead of half-working.

A writer killed at any point (``kill -9``, a power cut) leaves nothing that stays. SQLite rolls its
transaction back; for the files, a transaction that adds or removes image files first leaves a
marker, ``STORE_images/.writing/<pid>-<id>``, and removes it once its files match what it committed
or rolled back. Files are written under a temporary name (``*.tmp``), synced, then renamed; a delete
renames the files it drops to ``*.deleting`` and removes them after its commit. The next process to
hold the write lock while a marker is there (the next write that adds files, or anyone opening the
store, without waiting for a busy lock) sweeps the image folders: a file no ``images`` row names (a
killed import's copies and ``*.tmp`` halves) is removed, and a ``*.deleting`` file goes back to its
name if its row is still there (the delete was rolled back) or is removed if not. No grace period is
needed: while the sweeper holds the lock no other writer is between its first file and its commit,
so every marker it sees belongs to a writer that committed or died. ``ppo-client store check``
reports the same for any store (one left by a version without markers too), and what a sweep cannot
mend (a row whose file is gone); ``--repair`` sweeps.

What a person teaches the store about their taste: absolute ratings (``ratings``), choices among 2
to 4 shown images (``choices``, the shown images in ``choice_images``; the app's blind pairwise
``comparisons`` are written as choices too), and a versioned free-text description
(``descriptions``). An image stays in the store while a rating, a choice, a comparison or the pool
refers to it.
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

from ppo_client import text
from ppo_client.errors import DataError, HeadFormatError, StoreError
from ppo_client.images import decode_image, read_image
from ppo_client.piaa.head import PreferenceHead

logger = logging.getLogger(__name__)

STORE_ENV = "PPO_STORE"
SCHEMA_VERSION = 4
CHOICE_OUTCOMES = ("chosen", "none", "same")
"""``chosen``: one shown image was picked; ``none``: none of them; ``same``: no preference."""
MIN_SHOWN, MAX_SHOWN = 2, 4
"""How many distinct images one choice shows."""
MAX_DESCRIPTION_CHARS = 1000
MAX_NAME_LENGTH = 64
GENERAL_USER = "general"
"""Not a user: ``optimize --user general`` means the crowd's taste, so no user may take the name."""
BUSY_TIMEOUT_S = 60.0
"""How long a write waits for another process's write to finish before giving up."""
WRITING_MARKERS = ".writing"
"""The folder, inside the image folder, of the markers left by transactions that change files."""
_SET_ASIDE = ".deleting"
_PARTIAL = ".tmp"
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

_CHOICE_TABLES = """
CREATE TABLE IF NOT EXISTS choices (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    chosen TEXT REFERENCES images(hash),
    outcome TEXT NOT NULL CHECK (outcome IN ('chosen', 'none', 'same')),
    source TEXT NOT NULL,
    created REAL NOT NULL,
    CHECK ((outcome = 'chosen') = (chosen IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS choice_images (
    choice_id INTEGER NOT NULL REFERENCES choices(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    image_hash TEXT NOT NULL REFERENCES images(hash),
    PRIMARY KEY (choice_id, position)
);
CREATE INDEX IF NOT EXISTS choice_images_hash ON choice_images (image_hash);
CREATE INDEX IF NOT EXISTS choices_user ON choices (user_id);
CREATE TABLE IF NOT EXISTS descriptions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version >= 1),
    text TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (user_id, version)
);
"""


def _add_choices(db: sqlite3.Connection) -> None:
    """Version 4: choices among 2-4 shown images, descriptions, and a linear head's posterior
    covariance beside its model. Every stored comparison becomes a choice (``compare:<context>``);
    one of an image with itself says nothing about taste and stays a comparison only. Done again on
    a store that has it (its version number set back by hand), it changes nothing."""
    copied = "choices" in {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    _run_script(db, _CHOICE_TABLES)
    if "covariance" not in {row[1] for row in db.execute("PRAGMA table_info(models)")}:
        db.execute("ALTER TABLE models ADD COLUMN covariance BLOB")
    if copied:
        return
    rows = db.execute("SELECT user_id, left_hash, right_hash, choice, context, created FROM comparisons ORDER BY id")
    for user_id, left, right, choice, context, created in rows.fetchall():
        if left != right:
            _insert_comparison_choice(db, user_id, left, right, choice, context, created)


_MIGRATIONS[4] = _add_choices


def _insert_comparison_choice(db: sqlite3.Connection, user_id: int, left: str, right: str, choice: str, context: str,
                              created: float) -> None:
    """A pairwise comparison (``left``, ``right`` or ``same``) as a choice, ``compare:<context>``."""
    chosen = {"left": left, "right": right}.get(choice)
    _insert_choice(db, user_id, (left, right), chosen, "chosen" if chosen else "same", f"compare:{context}", created)


def _insert_choice(db: sqlite3.Connection, user_id: int, shown: Sequence[str], chosen: str | None, outcome: str,
                   source: str, created: float) -> int:
    cursor = db.execute(
        "INSERT INTO choices (user_id, chosen, outcome, source, created) VALUES (?, ?, ?, ?, ?)",
        (user_id, chosen, outcome, source, created),
    )
    choice_id = int(cursor.lastrowid)
    db.executemany("INSERT INTO choice_images VALUES (?, ?, ?)", [(choice_id, i, h) for i, h in enumerate(shown)])
    return choice_id


def default_store_path() -> Path:
    from platformdirs import user_data_dir

    override = os.environ.get(STORE_ENV)
    return Path(override) if override else Path(user_data_dir("ppo")) / "store.sqlite"


def check_name(name: str) -> str:
    if not isinstance(name, str):
        raise StoreError(f"a user name is text, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"user name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}")
    if re.search(r"[/\\\s]", name.replace(" ", "")) or text.hidden(name) or name in (".", ".."):
        raise StoreError(f"user name {name!r} contains a path separator, a line break or tab, or a control or format character")
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
    covariance: np.ndarray | None = None
    """[D + 1, D + 1] float32 posterior covariance of a linear head (weights, then bias), where the
    method that trained it keeps one (``bayes``)."""


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
class Choice:
    """One choice among the images ``shown`` (content hashes, in the order shown)."""

    id: int
    shown: tuple[str, ...]
    chosen: str | None
    """The hash picked; None when the outcome is ``none`` or ``same``."""
    outcome: str
    """One of ``CHOICE_OUTCOMES``."""
    source: str
    created: float


@dataclass(frozen=True)
class ChoiceRow:
    """One choice to import; ``where`` names its origin in errors (``choices.csv row 3``)."""

    where: str
    shown: tuple[Path, ...]
    chosen: int | None
    """Index into ``shown``; None for "none of them"."""


@dataclass(frozen=True)
class Description:
    version: int
    text: str
    created: float


@dataclass(frozen=True)
class UserSummary:
    name: str
    created: float
    ratings: int
    models: int
    choices: int
    description_version: int
    """0: no description yet."""


@dataclass(frozen=True)
class StoreCheck:
    """What ``UserStore.check`` found in the image folder (paths are inside it)."""

    unreferenced: tuple[Path, ...]
    """Files no image row names: a killed import's copies, ``*.tmp`` halves, a finished delete's
    ``*.deleting`` files. Removed by a repair."""
    set_aside: tuple[Path, ...]
    """``*.deleting`` files whose image row is still there (a delete killed before its commit). Put
    back by a repair."""
    missing: tuple[str, ...]
    """Image rows whose file is gone (deleted by hand, or a store copied without its image folder):
    no repair brings them back; import those images again."""
    unreferenced_bytes: int
    repaired: bool

    @property
    def clean(self) -> bool:
        """Nothing left to repair or report (after a repair: only ``missing`` can remain)."""
        return not self.missing and (self.repaired or not (self.unreferenced or self.set_aside))


def _checked_choice(where: str, shown: Sequence, chosen, outcome: str | None, *, by_index: bool = False) -> str:
    """The outcome of a choice whose ``shown`` are hashes and ``chosen`` one of them (``by_index``:
    paths, and an index into them), or None; raises ``DataError`` starting with ``where``."""
    if isinstance(shown, (str, bytes)) or not MIN_SHOWN <= len(shown) <= MAX_SHOWN:
        count = "text" if isinstance(shown, (str, bytes)) else f"{len(shown)} images"
        raise DataError(f"{where}: a choice shows {MIN_SHOWN} to {MAX_SHOWN} images, got {count}")
    if outcome is None:
        outcome = "none" if chosen is None else "chosen"
    if outcome not in CHOICE_OUTCOMES:
        raise DataError(f"{where}: outcome must be one of {', '.join(CHOICE_OUTCOMES)}, got {str(outcome)[:40]!r}")
    if (outcome == "chosen") != (chosen is not None):
        raise DataError(f"{where}: outcome {outcome!r} " + ("needs the image chosen" if outcome == "chosen" else "has no image chosen"))
    if chosen is None:
        return outcome
    if by_index:
        if not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 <= chosen < len(shown):
            raise DataError(f"{where}: chosen {str(chosen)[:40]!r} is not the index of one of the {len(shown)} images shown")
    elif not isinstance(chosen, str) or chosen not in shown:
        raise DataError(f"{where}: the image chosen, {str(chosen)[:80]!r}, is not one of those shown")
    return outcome


def _checked_description(description: str) -> str:
    if not isinstance(description, str):
        raise DataError(f"a description is text, got {type(description).__name__}")
    description = description.strip()
    if not 1 <= len(description) <= MAX_DESCRIPTION_CHARS:
        raise DataError(f"a description is 1 to {MAX_DESCRIPTION_CHARS} characters, got {len(description)}")
    if text.hidden(description):
        raise DataError("a description may not contain control or format characters (escape sequences, zero-width ...)")
    return description


def _checked_rating(row: RatingRow) -> float:
    try:
        value = float(row.rating)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{row.where}: rating {str(row.rating)[:40]!r} is not a number from 1 to 10") from None
    if not np.isfinite(value) or not 1 <= value <= 10:
        raise DataError(f"{row.where}: rating {value:g} is outside 1-10")
    return value


class UserStore:
    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S, check: bool = True,
                 recover: bool = True) -> None:
        """``check=False`` skips the integrity check, for a process that checked this store when it
        started and opens it again for each request (the web app). ``recover=False`` leaves a killed
        writer's files for ``check`` to report."""
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
            if recover and self._markers():
                self._recover()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._failure(exc) from exc
        except BaseException:
            self._db.close()
            raise

    def _failure(self, exc: sqlite3.DatabaseError) -> StoreError:
        reason = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in reason or "busy" in reason):
            return StoreError(
                f"{self.path} is busy: another process kept it locked for more than {self.busy_timeout_s:g} s ({reason})"
            )
        return StoreError(
            f"{self.path} is damaged or not a user store ({reason}); restore it from a backup, or use another store "
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

    @contextlib.contextmanager
    def _write_files(self) -> Iterator[tuple[sqlite3.Connection, _FileChanges]]:
        """A write transaction that adds or removes image files (see the module docstring): a dead
        writer's leftovers are swept first, and this one's marker stays until its files match what
        it committed or rolled back (a failure undoes its files under the lock, before the rollback)."""
        self._db.execute("BEGIN IMMEDIATE")
        marker: Path | None = None
        changes = _FileChanges()
        try:
            if self._markers():
                try:
                    self._sweep(self._db, repair=True)
                except StoreError as exc:  # what is left stays for the next sweep; this write can go on
                    logger.warning("%s", exc)
            try:
                marker = self._leave_marker()
                yield self._db, changes
                changes.sync()
            except OSError as exc:
                raise StoreError(
                    f"cannot write the image files of {self.path} in {self.images_dir} ({exc.strerror or exc}); "
                    "nothing was changed"
                ) from exc
            self._db.execute("COMMIT")
        except BaseException:
            undone = changes.undo()
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if undone and marker is not None:
                marker.unlink(missing_ok=True)
            raise
        if changes.finish():
            marker.unlink(missing_ok=True)

    def _markers(self) -> list[Path]:
        """The markers of writers that changed files (see the module docstring)."""
        try:
            return list((self.images_dir / WRITING_MARKERS).iterdir())
        except OSError:  # none yet; or unreadable, and then a write fails naming the folder
            return []

    def _leave_marker(self) -> Path:
        folder = self.images_dir / WRITING_MARKERS
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / f"{os.getpid()}-{uuid.uuid4().hex}"
        marker.touch()
        return marker

    def _sweep(self, db: sqlite3.Connection, *, repair: bool) -> StoreCheck:
        """Compare the image folder with the images table; call holding the write lock, so every
        file not named by a row belongs to a writer that died or to a delete that committed."""
        try:
            return self._compare(db, repair=repair)
        except OSError as exc:
            raise StoreError(
                f"cannot tidy the image folder {self.images_dir} ({exc.strerror or exc}); "
                "check its permissions, then run `ppo-client store check --repair`"
            ) from exc

    def _compare(self, db: sqlite3.Connection, *, repair: bool) -> StoreCheck:
        markers = self._markers()
        referenced = {file for (file,) in db.execute("SELECT file FROM images")}
        unreferenced, set_aside, size = [], [], 0
        folders = sorted(self.images_dir.glob("[0-9a-f][0-9a-f]")) if self.images_dir.is_dir() else []
        for folder in folders:
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in sorted(folder.iterdir()):
                if f"{folder.name}/{path.name}" in referenced or not path.is_file() or path.is_symlink():
                    continue
                if path.name.endswith(_SET_ASIDE):
                    original = folder / path.name.rsplit(".", 2)[0]
                    if f"{folder.name}/{original.name}" in referenced and not original.exists():
                        set_aside.append(path)
                        if repair:
                            os.replace(path, original)
                        continue
                unreferenced.append(path)
                size += path.stat().st_size
                if repair:
                    path.unlink(missing_ok=True)
        missing = sorted(f for f in referenced if not (self.images_dir / f).exists())
        if repair:
            for marker in markers:
                marker.unlink(missing_ok=True)
            if unreferenced or set_aside:
                logger.warning(
                    "%s: removed %d image files no rating or pool entry refers to (%.1f MB, left by a write that "
                    "was killed) and put back %d a killed delete had set aside",
                    self.path, len(unreferenced), size / 1e6, len(set_aside),
                )
        return StoreCheck(tuple(unreferenced), tuple(set_aside), tuple(missing), size, repair)

    def _recover(self) -> None:
        """At opening, a dead writer's marker is there: sweep now if the write lock is free (a busy
        lock means a live writer, which sweeps itself, or leaves it to the next one)."""
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            with self._write() as db:
                self._sweep(db, repair=True)
        except sqlite3.OperationalError as exc:
            logger.debug("%s: no sweep now (%s)", self.path, exc)
        except StoreError as exc:
            logger.warning("%s", exc)
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")

    @_guarded
    def check(self, *, repair: bool = False) -> StoreCheck:
        """Compare the image folder with the store's rows (under the write lock, so a live import's
        files are not mistaken for leftovers); ``repair`` removes what no row names and puts back
        what a killed delete had set aside."""
        with self._write() as db:
            return self._sweep(db, repair=repair)

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
        " (SELECT COUNT(*) FROM models m WHERE m.user_id = u.id),"
        " (SELECT COUNT(*) FROM choices c WHERE c.user_id = u.id),"
        " (SELECT COALESCE(MAX(d.version), 0) FROM descriptions d WHERE d.user_id = u.id) FROM users u"
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
        """The user, their ratings, choices, descriptions and models, and the image files no other
        user rated or was shown in a choice. Files are set aside inside the transaction and removed
        after it commits (put back if it fails)."""
        with self._write_files() as (db, changes):
            user_id = self._user_id(name)
            for table in ("ratings", "models", "choices", "descriptions", "comparisons"):
                db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            orphans = db.execute(
                "SELECT hash, file FROM images WHERE hash NOT IN (SELECT image_hash FROM ratings)"
                " AND hash NOT IN (SELECT image_hash FROM pool) AND hash NOT IN (SELECT image_hash FROM choice_images)"
                " AND hash NOT IN (SELECT left_hash FROM comparisons) AND hash NOT IN (SELECT right_hash FROM comparisons)"
            ).fetchall()
            db.executemany("DELETE FROM images WHERE hash = ?", [(h,) for h, _ in orphans])
            db.executemany("DELETE FROM embeddings WHERE image_hash = ?", [(h,) for h, _ in orphans])
            for _, file in orphans:
                changes.set_aside(self.images_dir / file)

    # --- ratings ---

    @_guarded
    def import_ratings(self, name: str, rows: Iterable[RatingRow], *, source: str) -> int:
        """Add ``rows`` to the user's ratings, all or nothing; returns how many were added. Rows are
        checked in order as they come, so the first bad one is the one named (a source read lazily
        can raise its own errors, about its own rows, in the same order)."""
        user_id = self._user_id(name)
        rated = {h for (h,) in self._db.execute("SELECT image_hash FROM ratings WHERE user_id = ?", (user_id,))}
        checked, seen = [], {}
        for row in rows:  # read and decode every image before taking the write lock
            rating = _checked_rating(row)
            data, image = read_image(row.path, row.where)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                raise DataError(f"{row.where}: {row.path} is the same image as {seen[digest][0]}")
            if digest in rated:
                raise DataError(f"{row.where}: {row.path} is already rated by {name!r}")
            seen[digest] = (row.where, row.path)
            suffix = "." + (image.format or "img").lower()
            checked.append((digest, suffix, data, image.size, rating))
        if not checked:
            raise DataError(f"{source}: no ratings to import")

        with self._write_files() as (db, changes):
            user_id = self._user_id(name)
            already = {h for (h,) in db.execute("SELECT image_hash FROM ratings WHERE user_id = ?", (user_id,))}
            for digest, *_ in checked:  # again under the lock: another process may have rated them meanwhile
                if digest in already:
                    where, path = seen[digest]
                    raise DataError(f"{where}: {path} is already rated by {name!r}")
            self._add_images(db, changes, [(d, s, data, size) for d, s, data, size, _ in checked])
            now = time.time()
            db.executemany(
                "INSERT INTO ratings (user_id, image_hash, rating, source, created) VALUES (?, ?, ?, ?, ?)",
                [(user_id, d, r, source, now) for d, _, _, _, r in checked],
            )
        logger.info("imported %d ratings for %s from %s", len(checked), name, source)
        return len(checked)

    def _add_images(self, db: sqlite3.Connection, changes: _FileChanges,
                    items: Sequence[tuple[str, str, bytes, tuple[int, int]]]) -> None:
        """Copy images (hash, suffix, bytes, size) into the store; call inside ``_write_files``. An
        image without a row is written afresh (a file already there under its name is a dead
        writer's leftover, perhaps cut short); one with a row keeps its file (or gets back a lost one)."""
        known: dict[str, str] = {}
        hashes = [item[0] for item in items]
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(db.execute(f"SELECT hash, file FROM images WHERE hash IN ({marks})", chunk))
        for digest, suffix, data, _ in items:
            if digest not in known:
                changes.add(self.images_dir / digest[:2] / (digest + suffix), data)
            elif not (self.images_dir / known[digest]).exists():
                _write_file(self.images_dir / known[digest], data)
        now = time.time()
        db.executemany(
            "INSERT OR IGNORE INTO images VALUES (?, ?, ?, ?, ?)",
            [(d, f"{d[:2]}/{d}{s}", size[0], size[1], now) for d, s, _, size in items],
        )

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
        with self._write_files() as (db, changes):
            self._add_images(db, changes, [item[:4] for item in items.values()])
            db.executemany(
                "INSERT OR IGNORE INTO pool VALUES (?, ?, ?, ?)",
                [(d, e.origin, e.label, time.time()) for d, _, _, _, e in items.values()],
            )
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
            user_id, now = self._user_id(name), time.time()
            db.execute(
                "INSERT INTO comparisons (user_id, left_hash, right_hash, choice, context, created) VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, left_hash, right_hash, choice, context, now),
            )
            if left_hash != right_hash:  # also a choice (compare:<context>), in the same transaction
                _insert_comparison_choice(db, user_id, left_hash, right_hash, choice, context, now)

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

    # --- choices and descriptions ---

    @_guarded
    def add_choice(self, name: str, shown: Sequence[str], chosen: str | None, *, outcome: str | None = None,
                   source: str) -> int:
        """One choice among 2-4 distinct stored images (content hashes, in the order shown), in its
        own transaction; ``chosen`` is one of them, or None for "none of them" (``outcome`` ``none``,
        the default then) or "no preference" (``same``). Returns its id."""
        where = f"choice from {source}"
        outcome = _checked_choice(where, shown, chosen, outcome)
        shown = tuple(shown)
        if len(set(shown)) != len(shown):
            raise DataError(f"{where}: an image is shown twice")
        with self._write() as db:
            user_id = self._user_id(name)
            marks = ",".join("?" * len(shown))
            stored = {h for (h,) in db.execute(f"SELECT hash FROM images WHERE hash IN ({marks})", shown)}
            for digest in shown:
                if digest not in stored:
                    raise DataError(f"{where}: image {str(digest)[:12]}... is not in the store")
            return _insert_choice(db, user_id, shown, chosen, outcome, source, time.time())

    @_guarded
    def remove_choice(self, name: str, choice_id: int) -> bool:
        """Remove one of the user's choices (an undo); its images stay. Returns whether there was one."""
        with self._write() as db:
            cursor = db.execute("DELETE FROM choices WHERE id = ? AND user_id = ?", (choice_id, self._user_id(name)))
        return cursor.rowcount > 0

    @_guarded
    def choices(self, name: str) -> list[Choice]:
        """The user's choices, oldest first."""
        user_id = self._user_id(name)
        shown: dict[int, list[str]] = {}
        for choice_id, digest in self._db.execute(
            "SELECT s.choice_id, s.image_hash FROM choice_images s JOIN choices c ON c.id = s.choice_id"
            " WHERE c.user_id = ? ORDER BY s.choice_id, s.position",
            (user_id,),
        ):
            shown.setdefault(choice_id, []).append(digest)
        rows = self._db.execute(
            "SELECT id, chosen, outcome, source, created FROM choices WHERE user_id = ? ORDER BY id", (user_id,)
        ).fetchall()
        return [Choice(i, tuple(shown.get(i, ())), chosen, outcome, source, created)
                for i, chosen, outcome, source, created in rows]

    @_guarded
    def import_choices(self, name: str, rows: Iterable[ChoiceRow], *, source: str) -> int:
        """Add ``rows`` to the user's choices, all or nothing, copying their images into the store as
        ``import_ratings`` does; returns how many were added. Rows are checked in order as they come,
        so the first bad one is the one named."""
        self._user_id(name)
        images: dict[str, tuple[str, str, bytes, tuple[int, int]]] = {}
        read: dict[Path, str] = {}  # an image shown in many rows is read once
        checked = []
        for row in rows:  # read and decode every image before taking the write lock
            _checked_choice(row.where, row.shown, row.chosen, None, by_index=True)
            hashes, first = [], {}
            for path in row.shown:
                digest = read.get(path)
                if digest is None:
                    data, image = read_image(path, row.where)
                    digest = read[path] = hashlib.sha256(data).hexdigest()
                    images.setdefault(digest, (digest, "." + (image.format or "img").lower(), data, image.size))
                if digest in first:
                    again = "is shown twice" if path == first[digest] else f"is the same image as {first[digest]}"
                    raise DataError(f"{row.where}: {path} {again}")
                first[digest] = path
                hashes.append(digest)
            chosen = None if row.chosen is None else hashes[row.chosen]
            checked.append((tuple(hashes), chosen, "none" if chosen is None else "chosen"))
        if not checked:
            raise DataError(f"{source}: no choices to import")

        with self._write_files() as (db, changes):
            user_id = self._user_id(name)
            self._add_images(db, changes, list(images.values()))
            now = time.time()
            for shown, chosen, outcome in checked:
                _insert_choice(db, user_id, shown, chosen, outcome, source, now)
        logger.info("imported %d choices for %s from %s", len(checked), name, source)
        return len(checked)

    @_guarded
    def describe(self, name: str, description: str) -> int:
        """Keep a new version of the user's description of their taste (1 to 1000 characters, no
        control or format characters; surrounding space dropped); returns its version, from 1 up."""
        description = _checked_description(description)
        with self._write() as db:
            user_id = self._user_id(name)
            (latest,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM descriptions WHERE user_id = ?", (user_id,)).fetchone()
            db.execute("INSERT INTO descriptions (user_id, version, text, created) VALUES (?, ?, ?, ?)",
                       (user_id, latest + 1, description, time.time()))
        return int(latest) + 1

    @_guarded
    def descriptions(self, name: str) -> list[Description]:
        """Every version of the user's description, oldest first."""
        rows = self._db.execute(
            "SELECT version, text, created FROM descriptions WHERE user_id = ? ORDER BY version", (self._user_id(name),)
        ).fetchall()
        return [Description(*row) for row in rows]

    @_guarded
    def description(self, name: str) -> Description | None:
        """The user's latest description (None: they have not written one)."""
        row = self._db.execute(
            "SELECT version, text, created FROM descriptions WHERE user_id = ? ORDER BY version DESC LIMIT 1",
            (self._user_id(name),),
        ).fetchone()
        return Description(*row) if row else None

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
    def save_model(self, name: str, method: str, encoder: str, head: PreferenceHead, params: dict, metrics: dict,
                   covariance: np.ndarray | None = None) -> int:
        """``covariance``: a linear head's [D + 1, D + 1] posterior covariance (kept as float32)."""
        blob = None if covariance is None else _checked_covariance(head, covariance).tobytes()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO models (user_id, method, encoder, head, params, metrics, created, covariance)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self._user_id(name), method, encoder, head.to_bytes(), json.dumps(params), json.dumps(metrics), time.time(),
                 blob),
            )
        return int(cursor.lastrowid)

    @_guarded
    def models(self, name: str) -> list[StoredModel]:
        rows = self._db.execute(
            "SELECT id, method, encoder, head, params, metrics, created, covariance FROM models WHERE user_id = ? ORDER BY id",
            (self._user_id(name),),
        ).fetchall()
        models = []
        try:
            for i, m, e, h, p, x, c, v in rows:
                head = PreferenceHead.from_bytes(h)
                covariance = None if v is None else _stored_covariance(head, v)
                models.append(StoredModel(i, name, m, e, head, json.loads(p), json.loads(x), c, covariance))
        except (HeadFormatError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.path}: a stored model of {name!r} is damaged ({exc}); retrain it") from None
        return models

    @_guarded
    def latest_model(self, name: str, method: str | None = None) -> StoredModel:
        models = [m for m in self.models(name) if method is None or m.method == method]
        if not models:
            wanted = f" with method {method!r}" if method else ""
            raise StoreError(f"user {name!r} has no trained model{wanted}; run `ppo-client user train {name}`")
        return models[-1]



def _checked_covariance(head: PreferenceHead, covariance: np.ndarray) -> np.ndarray:
    size = head.dim + 1
    matrix = np.asarray(covariance, dtype="<f4")
    if head.kind != "mlp" or len(head.layers()) != 1 or head.layers()[0][0].shape[1] != 1:
        raise DataError(f"a covariance belongs to a linear head, not a {head.kind} head with {len(head.layers())} layers")
    if matrix.shape != (size, size) or not np.all(np.isfinite(matrix)):
        raise DataError(f"a linear head of {head.dim} weights has a finite [{size}, {size}] covariance, got shape {matrix.shape}")
    return matrix


def _stored_covariance(head: PreferenceHead, blob: bytes) -> np.ndarray:
    size = head.dim + 1
    if len(blob) != 4 * size * size:
        raise ValueError(f"its covariance has {len(blob)} bytes, not a float32 [{size}, {size}] matrix")
    return np.frombuffer(blob, dtype="<f4").reshape(size, size).copy()


def _run_script(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _write_file(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically, through a temporary name no other process uses, and
    sync it before the rename (so a committed row never names a file a power cut left empty)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=_PARTIAL)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (where the platform can open a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


class _FileChanges:
    """The image files one write transaction adds and sets aside, all under the write lock: synced
    before its commit, undone if it fails, the set-aside ones removed once it committed."""

    def __init__(self) -> None:
        self.added: list[Path] = []
        self.aside: list[tuple[Path, Path]] = []

    def add(self, target: Path, data: bytes) -> None:
        self.added.append(target)  # first: a failed write may have left the target behind
        _write_file(target, data)

    def set_aside(self, path: Path) -> None:
        aside = path.with_name(f"{path.name}.{uuid.uuid4().hex}{_SET_ASIDE}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
        self.aside.append((path, aside))

    def sync(self) -> None:
        changed = [p.parent for p in self.added] + [p.parent for p, _ in self.aside]
        for folder in sorted({*changed, *(f.parent for f in changed)}):  # new subfolders are entries too
            _sync_folder(folder)

    def undo(self) -> bool:
        """Put the files back as they were; False if some could not be (the marker then stays, and
        the next sweep finishes the job)."""
        complete = True
        for path in self.added:
            complete &= _quietly(path.unlink, path, missing_ok=True)
        for path, aside in self.aside:
            complete &= _quietly(os.replace, aside, aside, path)
        return complete

    def finish(self) -> bool:
        """After the commit: remove what was set aside; False if some could not be."""
        return all([_quietly(aside.unlink, aside, missing_ok=True) for _, aside in self.aside])


def _quietly(action, path: Path, *args, **kwargs) -> bool:
    """``action(*args, **kwargs)``; an ``OSError`` is logged (naming ``path``) and gives False."""
    try:
        action(*args, **kwargs)
    except OSError as exc:
        logger.warning("cannot tidy up %s (%s); the next write to the store retries", path, exc)
        return False
    return True
