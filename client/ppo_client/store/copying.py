"""``ppo-client store copy``: a whole store from one database to another (SQLite to PostgreSQL and
back), in one read snapshot and one write transaction, checked afterwards row count by row count
and image hash by image hash."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from ppo_client.errors import StoreError
from ppo_client.store import schema
from ppo_client.store.core import UserStore

logger = logging.getLogger(__name__)

_BATCH = 200
_SERIAL = ("users", "ratings", "models", "comparisons", "choices", "descriptions")


@dataclass(frozen=True)
class CopyReport:
    source: str
    destination: str
    rows: dict[str, int]
    """Rows copied per table."""
    image_bytes: int


def copy_store(source: UserStore, destination: UserStore, *, replace: bool = False, progress=None) -> CopyReport:
    """Copy every user, rating, choice, description, model, embedding, pool entry and image. A
    destination that holds users is refused unless ``replace`` (its rows are then deleted first, in
    the same transaction). ``progress(table, rows)`` is called as rows go."""
    if source.location.url == destination.location.url:
        raise StoreError(f"source and destination are the same store ({source.path})")
    if destination.users() and not replace:
        raise StoreError(f"{destination.path} already holds users; copy into an empty store, or pass --replace "
                         "to delete its contents first")
    try:
        counts, size, expected = _copy(source, destination, replace, progress)
        _verify(destination, counts, expected)
    except sa.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise StoreError(f"copying {source.path} to {destination.path} failed, nothing was copied ({reason})") from exc
    logger.info("copied %s to %s: %s", source.path, destination.path, counts)
    return CopyReport(source.path, destination.path, counts, size)


def _copy(source: UserStore, destination: UserStore, replace: bool, progress) -> tuple[dict[str, int], int, tuple]:
    """Copy in one read snapshot of the source and one write transaction; returns the rows copied per
    table, the image bytes, and what the copy must show (image hashes, images without bytes), read
    in the same snapshot."""
    counts: dict[str, int] = {}
    size = 0
    with source._read() as src, destination._write() as dst:
        if replace:
            for name in reversed(schema.USER_TABLES):
                dst.execute(schema.METADATA.tables[name].delete())
        for name in schema.USER_TABLES:
            table = schema.METADATA.tables[name]
            order = list(table.primary_key.columns)
            counts[name] = 0
            for batch in src.execute(sa.select(table).order_by(*order)).mappings().partitions(_BATCH):
                rows = [dict(row) for row in batch]
                if name == "images":
                    size += sum(len(r["data"] or b"") for r in rows)
                dst.execute(table.insert(), rows)
                counts[name] += len(rows)
                if progress:
                    progress(name, len(rows))
        if dst.dialect.name == "postgresql":  # ids were copied as they were: move each sequence past them
            for name in _SERIAL:
                dst.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                    f"COALESCE((SELECT MAX(id) FROM {name}), 0) + 1, false)"))
        expected = ([h for (h,) in src.execute(sa.text("SELECT hash FROM images ORDER BY hash"))],
                    len(src.execute(sa.text("SELECT hash FROM images WHERE data IS NULL")).fetchall()))
    return counts, size, expected


def _verify(destination: UserStore, counts: dict[str, int], expected: tuple[list[str], int]) -> None:
    """Row counts and image hashes of the copy, read back after its commit."""
    with destination._read() as dst:
        found = {name: int(dst.execute(sa.select(sa.func.count()).select_from(schema.METADATA.tables[name])).scalar_one())
                 for name in schema.USER_TABLES}
        hashes = [h for (h,) in dst.execute(sa.text("SELECT hash FROM images ORDER BY hash"))]
        missing, damaged = destination._verify_images(dst)
    expected_hashes, lost_before = expected
    if found != counts:
        wrong = {name: (counts[name], found[name]) for name in counts if counts[name] != found[name]}
        raise StoreError(f"the copy in {destination.path} does not match: rows (copied, found) {wrong}")
    if hashes != expected_hashes or damaged or len(missing) != lost_before:
        raise StoreError(f"the images copied to {destination.path} do not match the source's "
                         f"({len(damaged)} damaged, {len(missing)} without bytes)")
