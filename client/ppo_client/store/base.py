"""What every part of the store relies on: its location, its engine, transactions and user ids.
``core.UserStore`` opens the database; the parts (``users``, ``images``, ``taste``, ``models``)
build on this."""

from __future__ import annotations

from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ppo_client.errors import StoreError
from ppo_client.store import backends
from ppo_client.store.backends import Location
from ppo_client.store.records import check_name


def new_id(result: sa.CursorResult) -> int:
    """The id of the one row an ``insert()`` made."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise StoreError("the database did not return the new row's id")
    return int(key[0])


class StoreBase:
    location: Location
    busy_timeout_s: float
    _engine: Engine

    @property
    def path(self) -> str:
        """The store as people name it: the SQLite file, or the URL without its password."""
        return self.location.shown

    def _read(self) -> AbstractContextManager[Connection]:
        return backends.reading(self._engine)

    def _write(self) -> AbstractContextManager[Connection]:
        return backends.writing(self._engine, self.busy_timeout_s)

    def _user_id(self, db: Connection, name: str) -> int:
        found = db.execute(sa.text("SELECT id FROM users WHERE name = :n"), {"n": check_name(name)}).scalar()
        if found is None:
            raise StoreError(f"unknown user {name!r}; create it with `ppo-client user create {name}`")
        return int(found)
