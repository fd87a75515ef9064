"""Where a store lives and how to talk to it: an SQLite file (a path, the embedded default) or a
PostgreSQL database (``postgresql://user@host:port/db``), both through SQLAlchemy Core.

Writes are serialised per store, as SQLite does it: an SQLite write transaction takes the file's
write lock at its first statement (``BEGIN IMMEDIATE``), a PostgreSQL one takes a transaction-scoped
advisory lock. Every write of the SDK is short (one rating, one import), and holding one lock makes
the rules the same on both databases: imports are all or nothing, a delete never races an import of
the same image, and nothing can fail for a serialisation conflict. Should one still come (a server
configured for serializable isolation, a deadlock with another application's session), the store
method is run again from the start (``retrying``)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from ppo_client.errors import StoreError

logger = logging.getLogger(__name__)

STORE_ENV = "PPO_STORE"
BUSY_TIMEOUT_S = 60.0
"""How long a write waits for another process's write to finish before giving up."""
WRITE_LOCK = 0x50504F5354  # the advisory lock every PostgreSQL write holds ("PPOST")
RETRIES = 5
_RETRIED = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MISTYPED_URL = re.compile(r"^(postgres|postgresql|sqlite|mysql|mariadb|oracle|mssql)(\+\w+)?:(?!//)", re.IGNORECASE)


@dataclass(frozen=True)
class Location:
    """A store's address: ``url`` for SQLAlchemy, ``shown`` for messages (never a password)."""

    url: sa.URL
    shown: str
    path: Path | None
    """The SQLite file; None for a database server."""

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()


def default_location() -> str:
    from platformdirs import user_data_dir

    return os.environ.get(STORE_ENV) or str(Path(user_data_dir("ppo")) / "store.sqlite")


def locate(store: str | Path | None) -> Location:
    """``store``: a path to an SQLite file, ``sqlite:///path``, or ``postgresql://user[:password]@host[:port]/db``;
    None: ``$PPO_STORE`` or the default file under the user's data directory."""
    if store is None or store == "":
        store = default_location()
    if isinstance(store, str) and _MISTYPED_URL.match(store):
        raise StoreError(f"store {_without_password(store)[:80]!r} looks like a database URL without '//' after the scheme; "
                         "write postgresql://user@host:port/db (or give a file path)")
    if isinstance(store, Path) or not _URL.match(store):
        path = Path(store).expanduser()
        return Location(sa.URL.create("sqlite", database=str(path)), str(path), path)
    try:
        url = sa.make_url(store)
    except Exception as exc:  # ArgumentError, ValueError: a URL that does not parse
        raise StoreError(f"store URL {_without_password(store)!r} does not parse ({exc})") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise StoreError("an SQLite store URL names a file: sqlite:///path/to/store.sqlite")
        path = Path(url.database).expanduser()
        return Location(sa.URL.create("sqlite", database=str(path)), str(path), path)
    if backend in ("postgresql", "postgres"):
        if url.get_driver_name() not in ("", "psycopg", "postgresql"):
            raise StoreError(f"PostgreSQL stores use the psycopg driver, not {url.get_driver_name()!r}: write postgresql://...")
        if not url.database:
            raise StoreError(f"store URL {url.render_as_string(hide_password=True)} names no database (postgresql://user@host:port/DB)")
        url = url.set(drivername="postgresql+psycopg")
        shown = url.set(drivername="postgresql").render_as_string(hide_password=True)
        return Location(url, shown, None)
    raise StoreError(f"store URL scheme {url.drivername!r} is not supported; give a file path (SQLite) or postgresql://user@host:port/db")


def _without_password(text: str) -> str:
    """``scheme://user:***@host...``, for any text that may hold a password before an ``@``."""
    userinfo, at, rest = text.rpartition("@")
    head, colon, secret = userinfo.rpartition(":")
    if not at or not colon or "/" in secret:
        return text
    return f"{head}:***@{rest}"


_ENGINES: dict[tuple, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine(location: Location, busy_timeout_s: float) -> Engine:
    """An SQLite file gets an engine of its own per opening (disposed by ``UserStore.close``): its
    connections are cheap, and one kept open would not notice a file replaced or damaged behind it.
    A database server's engine (and connection pool) is shared per URL, timeout and process: the web
    app opens the store for each request, connecting costs a round trip and a password check, and a
    pool must not cross a fork."""
    if location.path is not None:
        return _sqlite(location, busy_timeout_s)
    key = (location.url.render_as_string(hide_password=False), busy_timeout_s, os.getpid())
    with _ENGINES_LOCK:
        found = _ENGINES.get(key)
        if found is None:
            found = _ENGINES[key] = _postgres(location, busy_timeout_s)
        return found


def _sqlite(location: Location, busy_timeout_s: float) -> Engine:
    # a small pool for this opening: a connection per call would cost more than the call (reading one image)
    made = sa.create_engine(location.url, pool_size=1, max_overflow=16, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(made, "connect")
    def connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        dbapi_connection.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(made, "begin")
    def begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get("ppo_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return made


def _postgres(location: Location, busy_timeout_s: float) -> Engine:
    try:
        import psycopg  # noqa: F401  (the driver SQLAlchemy loads; checked here for a clear message)
    except ImportError:
        raise StoreError("a PostgreSQL store needs psycopg 3: pip install 'ppo-t2i[postgres]'") from None
    return sa.create_engine(
        location.url, pool_pre_ping=True, pool_size=4, max_overflow=32, isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": max(1, int(min(busy_timeout_s, 10))), "application_name": "ppo-client"},
    )


@contextlib.contextmanager
def reading(made: Engine) -> Iterator[Connection]:
    """A read transaction, rolled back at the end: one consistent view of the store (SQLite's
    deferred transaction; on PostgreSQL a read-only repeatable-read snapshot, so a method that reads
    several tables, or a ``store copy``, never sees half of another process's write)."""
    with made.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield connection


@contextlib.contextmanager
def writing(made: Engine, busy_timeout_s: float) -> Iterator[Connection]:
    """A write transaction holding the store's write lock from its first statement on."""
    with made.connect() as connection:
        connection.execution_options(ppo_write=True)
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(busy_timeout_s * 1000)}")
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
            yield connection


def sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def failure(location: Location, exc: sa.exc.SQLAlchemyError, busy_timeout_s: float) -> StoreError:
    """A database error as one line naming the store."""
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
    lowered = reason.lower()
    if "locked" in lowered or "busy" in lowered or sqlstate(exc) == "55P03":
        return StoreError(
            f"{location.shown} is busy: another process kept it locked for more than {busy_timeout_s:g} s ({reason})"
        )
    if location.path is None and isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        if "password" in lowered or "authentication" in lowered:
            why = "the database refused the user or password"
        elif "does not exist" in lowered:
            why = "no such database or role"
        else:
            why = "cannot reach or use the database server"
        return StoreError(f"cannot open the store {location.shown}: {why} ({reason})")
    return StoreError(
        f"{location.shown} is damaged or not a user store ({reason}); restore it from a backup, or use another store "
        "(--store or $PPO_STORE)"
    )


def retrying(method):
    """A store method, run again from the start when the database cancelled its transaction for a
    serialisation conflict or a deadlock; any other database error becomes one ``StoreError``."""

    @functools.wraps(method)
    def retried(self, *args, **kwargs):
        for attempt in range(RETRIES + 1):
            try:
                return method(self, *args, **kwargs)
            except sa.exc.DBAPIError as exc:
                if sqlstate(exc) in _RETRIED and attempt < RETRIES:
                    logger.info("%s: %s, trying again", self.location.shown, type(exc.orig).__name__)
                    time.sleep(0.01 * 2**attempt)
                    continue
                raise failure(self.location, exc, self.busy_timeout_s) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise failure(self.location, exc, self.busy_timeout_s) from exc

    return retried
