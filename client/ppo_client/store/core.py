"""``UserStore``: one person-facing store over either database (see ``backends``), assembled from
one part per concern (users and ratings, images and the pool, choices and descriptions, models)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ppo_client.errors import StoreError
from ppo_client.store import backends, schema
from ppo_client.store.backends import BUSY_TIMEOUT_S, retrying
from ppo_client.store.models import Models
from ppo_client.store.records import StoreCheck
from ppo_client.store.taste import Taste
from ppo_client.store.users import Users

logger = logging.getLogger(__name__)


class UserStore(Users, Taste, Models):
    def __init__(self, store: Path | str | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S,
                 check: bool = True) -> None:
        """``store``: an SQLite file's path or a ``postgresql://`` URL (None: ``$PPO_STORE`` or the
        default file). ``check=False`` skips the integrity check, for a process that checked this
        store when it started and opens it again for each request (the web app)."""
        self.location = backends.locate(store)
        self.busy_timeout_s = busy_timeout_s
        if self.location.path is not None:
            try:
                self.location.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of {self.location.shown} ({exc.strerror or exc})") from None
        self._engine = backends.engine(self.location, busy_timeout_s)
        self._open(check)

    @retrying
    def _open(self, check: bool) -> None:
        if check and self.location.path is not None:
            with self._read() as db:
                problems = [row[0] for row in db.exec_driver_sql("PRAGMA quick_check")]
            if problems != ["ok"]:
                found = " ".join(" ".join(problems[:3]).split())[:300]
                raise StoreError(f"{self.location.shown} is damaged (integrity check: {found}); restore it from a "
                                 "backup, or use another store (--store or $PPO_STORE)")
        with self._read() as db:  # the common case, without the write lock: nothing to do
            if self._current(db):
                return
        with self._write() as db:
            schema.prepare(db, self.location.shown, self._former_images_dir())

    def _current(self, db: Connection) -> bool:
        found = schema.version(db, self.location.shown)
        if found is not None and found > schema.SCHEMA_VERSION:
            raise StoreError(f"{self.location.shown} has schema version {found}; this program reads up to "
                             f"{schema.SCHEMA_VERSION}: upgrade ppo-t2i")
        return found == schema.SCHEMA_VERSION

    def _former_images_dir(self) -> Path | None:
        """Where stores before schema version 5 kept their images (``<file>_images`` beside it)."""
        path = self.location.path
        return None if path is None else path.parent / (path.stem + "_images")

    @property
    def address(self) -> str:
        """What opens this store again (``UserStore(store.address)``), password included: for
        processes and threads that reopen it, never for messages."""
        if self.location.path is not None:
            return str(self.location.path)
        return self.location.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def close(self) -> None:
        """Close an SQLite store's connections (a database server's stay in the process's pool)."""
        if self.location.path is not None:
            self._engine.dispose()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @retrying
    def schema_version(self) -> int:
        with self._read() as db:
            return int(schema.version(db, self.location.shown) or 0)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (a SQLAlchemy connection) for code that keeps its own tables in the
        store (the demo world's persona links): their rows then live and die with the store's users
        (``REFERENCES users(id) ON DELETE CASCADE``), under the same lock."""
        try:
            with self._write() as db:
                yield db
        except sa.exc.SQLAlchemyError as exc:
            raise backends.failure(self.location, exc, self.busy_timeout_s) from exc

    @retrying
    def read(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        """Rows of a read-only query with named parameters (``:name``; see ``transaction``)."""
        with self._read() as db:
            return [tuple(row) for row in db.execute(sa.text(sql), parameters or {})]

    @retrying
    def has_table(self, name: str) -> bool:
        with self._read() as db:
            return sa.inspect(db).has_table(name)

    @retrying
    def check(self, *, repair: bool = False) -> StoreCheck:
        """The database's integrity, images referred to whose bytes are missing or damaged, and
        images nothing refers to; ``repair`` removes the last (the others cannot be repaired)."""
        with self._write() as db:
            integrity: list[str] = []
            if db.dialect.name == "sqlite":
                integrity = [row[0] for row in db.exec_driver_sql("PRAGMA quick_check")]
                integrity = [] if integrity == ["ok"] else integrity
                integrity += [f"{table} row {rowid} refers to a missing {parent} row"
                              for table, rowid, parent, _ in db.exec_driver_sql("PRAGMA foreign_key_check")]
            missing, damaged = self._verify_images(db)
            unreferenced, size = self._unreferenced(db)
            if repair and unreferenced:
                self._drop_images(db, unreferenced)
                logger.warning("%s: removed %d images nothing refers to (%.1f MB)", self.path, len(unreferenced), size / 1e6)
            version = int(schema.version(db, self.location.shown) or 0)
        return StoreCheck(self.path, version, tuple(integrity), tuple(missing), tuple(damaged), tuple(unreferenced),
                          size, repair)
