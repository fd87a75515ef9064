"""Users and their absolute ratings."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ppo_client.errors import DataError, StoreError
from ppo_client.images import read_image
from ppo_client.store.backends import retrying
from ppo_client.store.images import Images
from ppo_client.store.records import GENERAL_USER, Rating, RatingRow, UserSummary, check_name, checked_rating

logger = logging.getLogger(__name__)

_SUMMARY = (
    "SELECT u.name, u.created, (SELECT COUNT(*) FROM ratings r WHERE r.user_id = u.id),"
    " (SELECT COUNT(*) FROM models m WHERE m.user_id = u.id),"
    " (SELECT COUNT(*) FROM choices c WHERE c.user_id = u.id),"
    " (SELECT COALESCE(MAX(d.version), 0) FROM descriptions d WHERE d.user_id = u.id) FROM users u"
)


class Users(Images):
    @retrying
    def create_user(self, name: str) -> None:
        check_name(name)
        if name == GENERAL_USER:
            raise StoreError(f"{GENERAL_USER!r} is reserved (`optimize --user {GENERAL_USER}` means the crowd's taste); "
                             "choose another name")
        with self._write() as db:
            if db.execute(sa.text("SELECT 1 FROM users WHERE name = :n"), {"n": name}).first() is not None:
                raise StoreError(f"user {name!r} already exists")
            db.execute(sa.text("INSERT INTO users (name, created) VALUES (:n, :t)"), {"n": name, "t": time.time()})

    @retrying
    def user_id(self, name: str) -> int:
        """The user's row id, for tables that others keep beside the store's own (``transaction``)."""
        with self._read() as db:
            return self._user_id(db, name)

    @retrying
    def has_user(self, name: str) -> bool:
        with self._read() as db:
            return db.execute(sa.text("SELECT 1 FROM users WHERE name = :n"), {"n": name}).first() is not None

    @retrying
    def users(self) -> list[UserSummary]:
        with self._read() as db:
            return [UserSummary(*row) for row in db.execute(sa.text(_SUMMARY + " ORDER BY u.name"))]

    @retrying
    def user(self, name: str) -> UserSummary:
        with self._read() as db:
            return UserSummary(*db.execute(sa.text(_SUMMARY + " WHERE u.id = :u"), {"u": self._user_id(db, name)}).one())

    @retrying
    def delete_user(self, name: str) -> None:
        """The user, their ratings, choices, descriptions and models, and the images no one else
        rated or was shown, all in one transaction."""
        with self._write() as db:
            user_id = self._user_id(db, name)
            for table in ("ratings", "models", "choices", "descriptions", "comparisons"):
                db.execute(sa.text(f"DELETE FROM {table} WHERE user_id = :u"), {"u": user_id})
            db.execute(sa.text("DELETE FROM users WHERE id = :u"), {"u": user_id})
            self._drop_images(db, self._unreferenced(db)[0])

    # --- ratings ---

    @retrying
    def import_ratings(self, name: str, rows: Iterable[RatingRow], *, source: str) -> int:
        """Add ``rows`` to the user's ratings, all or nothing; returns how many were added. Rows are
        checked in order as they come, so the first bad one is the one named (a source read lazily
        can raise its own errors, about its own rows, in the same order)."""
        with self._read() as db:
            user_id = self._user_id(db, name)
            rated = self._rated(db, user_id)
        checked: list[tuple] = []
        seen: dict[str, tuple] = {}
        for row in rows:  # read and decode every image before taking the write lock
            rating = checked_rating(row)
            data, image = read_image(row.path, row.where)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                raise DataError(f"{row.where}: {row.path} is the same image as {seen[digest][0]}")
            if digest in rated:
                raise DataError(f"{row.where}: {row.path} is already rated by {name!r}")
            seen[digest] = (row.where, row.path)
            checked.append((digest, (image.format or "img").lower(), data, image.size, rating))
        if not checked:
            raise DataError(f"{source}: no ratings to import")

        with self._write() as db:
            user_id = self._user_id(db, name)
            already = self._rated(db, user_id)
            for digest, *_ in checked:  # again under the lock: another process may have rated them meanwhile
                if digest in already:
                    where, path = seen[digest]
                    raise DataError(f"{where}: {path} is already rated by {name!r}")
            self._add_images(db, [(d, f, data, size) for d, f, data, size, _ in checked])
            now = time.time()
            db.execute(
                sa.text("INSERT INTO ratings (user_id, image_hash, rating, source, created) VALUES (:u, :h, :r, :s, :t)"),
                [{"u": user_id, "h": d, "r": r, "s": source, "t": now} for d, _, _, _, r in checked],
            )
        logger.info("imported %d ratings for %s from %s", len(checked), name, source)
        return len(checked)

    @staticmethod
    def _rated(db: Connection, user_id: int) -> set[str]:
        return {h for (h,) in db.execute(sa.text("SELECT image_hash FROM ratings WHERE user_id = :u"), {"u": user_id})}

    @retrying
    def rate(self, name: str, image_hash: str, rating: float, *, source: str) -> None:
        """One rating of a stored image, in its own transaction; rating it again replaces it."""
        value = checked_rating(RatingRow(f"image {str(image_hash)[:12]}", Path(), rating))
        with self._write() as db:
            user_id = self._user_id(db, name)
            if db.execute(sa.text("SELECT 1 FROM images WHERE hash = :h"), {"h": image_hash}).first() is None:
                raise DataError(f"image {str(image_hash)[:12]}... is not in the store")
            db.execute(
                sa.text("INSERT INTO ratings (user_id, image_hash, rating, source, created) VALUES (:u, :h, :r, :s, :t)"
                        " ON CONFLICT (user_id, image_hash) DO UPDATE SET rating = excluded.rating,"
                        " source = excluded.source, created = excluded.created"),
                {"u": user_id, "h": image_hash, "r": value, "s": source, "t": time.time()},
            )

    @retrying
    def unrate(self, name: str, image_hash: str) -> bool:
        """Remove one rating (an undo); the image stays. Returns whether there was one."""
        with self._write() as db:
            done = db.execute(sa.text("DELETE FROM ratings WHERE user_id = :u AND image_hash = :h"),
                              {"u": self._user_id(db, name), "h": image_hash})
        return done.rowcount > 0

    @retrying
    def ratings(self, name: str) -> list[Rating]:
        with self._read() as db:
            rows = db.execute(sa.text("SELECT image_hash, rating, source FROM ratings WHERE user_id = :u ORDER BY id"),
                              {"u": self._user_id(db, name)})
            return [Rating(h, float(v), s) for h, v, s in rows]
