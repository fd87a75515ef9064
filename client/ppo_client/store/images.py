"""Images, content-addressed and deduplicated in the database itself (``images.data``), so every
machine that can reach the store sees them; and the pool of images kept for rating."""

from __future__ import annotations

import hashlib
import time
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ppo_client.images import decode_image
from ppo_client.store.backends import retrying
from ppo_client.store.base import StoreBase
from ppo_client.store.records import IMAGE_HASH, PoolEntry, PoolImage, StoredImage

_REFERENCED = (
    "hash NOT IN (SELECT image_hash FROM ratings) AND hash NOT IN (SELECT image_hash FROM pool)"
    " AND hash NOT IN (SELECT image_hash FROM choice_images) AND hash NOT IN (SELECT left_hash FROM comparisons)"
    " AND hash NOT IN (SELECT right_hash FROM comparisons)"
)
_CHUNK = 500


class Images(StoreBase):
    def _add_images(self, db: Connection, items: Sequence[tuple[str, str, bytes, tuple[int, int]]]) -> None:
        """Keep images (hash, format, bytes, size) inside a write transaction; one already there
        keeps its row (and gets its bytes back if a migration found them lost)."""
        now = time.time()
        db.execute(
            sa.text("INSERT INTO images (hash, file, width, height, created, data) VALUES (:h, :f, :w, :v, :t, :d)"
                    " ON CONFLICT (hash) DO UPDATE SET data = excluded.data WHERE images.data IS NULL"),
            [{"h": d, "f": f"{d[:2]}/{d}.{fmt}", "w": size[0], "v": size[1], "t": now, "d": data}
             for d, fmt, data, size in items],
        )

    @retrying
    def add_to_pool(self, entries: Sequence[PoolEntry]) -> list[str]:
        """Keep images for rating (decoded and checked first); returns their hashes, in order."""
        items, hashes = {}, []
        for entry in entries:
            image = decode_image(entry.data, entry.label)
            digest = hashlib.sha256(entry.data).hexdigest()
            items[digest] = (digest, (image.format or "img").lower(), entry.data, image.size, entry)
            hashes.append(digest)
        with self._write() as db:
            self._add_images(db, [item[:4] for item in items.values()])
            first = int(db.execute(sa.text("SELECT COALESCE(MAX(seq), 0) FROM pool")).scalar_one()) + 1
            now = time.time()
            db.execute(
                sa.text("INSERT INTO pool (image_hash, origin, label, created, seq) VALUES (:h, :o, :l, :t, :s)"
                        " ON CONFLICT (image_hash) DO NOTHING"),
                [{"h": d, "o": e.origin, "l": e.label, "t": now, "s": first + i}
                 for i, (d, _, _, _, e) in enumerate(items.values())],
            )
        return hashes

    @retrying
    def pool(self, origin: str | None = None) -> list[PoolImage]:
        with self._read() as db:
            rows = db.execute(
                sa.text("SELECT image_hash, origin, label FROM pool" + (" WHERE origin = :o" if origin else "")
                        + " ORDER BY seq, image_hash"),
                {"o": origin} if origin else {},
            )
            return [PoolImage(*row) for row in rows]

    @retrying
    def image(self, image_hash: str) -> StoredImage | None:
        """An image by its content hash, as it was imported (None: not in the store, or its bytes lost)."""
        if not isinstance(image_hash, str) or not IMAGE_HASH.fullmatch(image_hash):
            return None
        with self._read() as db:
            row = db.execute(sa.text("SELECT file, width, height, data FROM images WHERE hash = :h"),
                             {"h": image_hash}).first()
        if row is None or row[3] is None:
            return None
        file, width, height, data = row
        return StoredImage(image_hash, bytes(data), file.rsplit(".", 1)[-1], int(width), int(height))

    @retrying
    def present(self, hashes: Sequence[str]) -> set[str]:
        """Which of these images the store holds, bytes and all."""
        query = sa.text("SELECT hash FROM images WHERE data IS NOT NULL AND hash IN :h").bindparams(
            sa.bindparam("h", expanding=True))
        hashes, found = list(hashes), set[str]()
        with self._read() as db:
            for start in range(0, len(hashes), _CHUNK):
                found.update(h for (h,) in db.execute(query, {"h": hashes[start : start + _CHUNK]}))
        return found

    def _unreferenced(self, db: Connection) -> tuple[list[str], int]:
        rows = db.execute(sa.text(f"SELECT hash, COALESCE(LENGTH(data), 0) FROM images WHERE {_REFERENCED} ORDER BY hash"))
        found = rows.fetchall()
        return [h for h, _ in found], sum(int(n) for _, n in found)

    def _drop_images(self, db: Connection, hashes: Sequence[str]) -> None:
        for start in range(0, len(hashes), _CHUNK):
            chunk = {"h": list(hashes[start : start + _CHUNK])}
            db.execute(sa.text("DELETE FROM embeddings WHERE image_hash IN :h").bindparams(sa.bindparam("h", expanding=True)), chunk)
            db.execute(sa.text("DELETE FROM images WHERE hash IN :h").bindparams(sa.bindparam("h", expanding=True)), chunk)

    def _verify_images(self, db: Connection) -> tuple[list[str], list[str]]:
        """Images with no bytes, and images whose bytes do not hash to their name, read a chunk at a time."""
        missing = [h for (h,) in db.execute(sa.text("SELECT hash FROM images WHERE data IS NULL ORDER BY hash"))]
        damaged: list[str] = []
        after = ""
        while True:
            rows = db.execute(sa.text("SELECT hash, data FROM images WHERE data IS NOT NULL AND hash > :a"
                                      " ORDER BY hash LIMIT 64"), {"a": after}).fetchall()
            if not rows:
                return missing, damaged
            damaged += [h for h, data in rows if hashlib.sha256(bytes(data)).hexdigest() != h]
            after = rows[-1][0]
