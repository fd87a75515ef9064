"""What else a person says about their taste: choices among 2-4 shown images (the app's blind
pairwise comparisons are written as choices too) and a versioned free-text description."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ppo_client.errors import DataError
from ppo_client.images import read_image
from ppo_client.store import schema
from ppo_client.store.backends import retrying
from ppo_client.store.base import new_id
from ppo_client.store.images import Images
from ppo_client.store.records import Choice, ChoiceRow, Comparison, Description, checked_choice, checked_description

logger = logging.getLogger(__name__)


def insert_choice(db: Connection, user_id: int, shown: Sequence[str], chosen: str | None, outcome: str, source: str,
                  created: float) -> int:
    made = db.execute(schema.choices.insert().values(user_id=user_id, chosen=chosen, outcome=outcome, source=source,
                                                     created=created))
    choice_id = new_id(made)
    db.execute(schema.choice_images.insert(), [{"choice_id": choice_id, "position": i, "image_hash": h}
                                               for i, h in enumerate(shown)])
    return choice_id


class Taste(Images):
    @retrying
    def add_comparison(self, name: str, left_hash: str, right_hash: str, choice: str, *, context: str) -> None:
        """A blind pairwise choice (``left``, ``right`` or ``same``), kept as training data."""
        if choice not in ("left", "right", "same"):
            raise DataError(f"choice must be left, right or same, got {choice!r}")
        with self._write() as db:
            user_id, now = self._user_id(db, name), time.time()
            db.execute(schema.comparisons.insert().values(user_id=user_id, left_hash=left_hash, right_hash=right_hash,
                                                          choice=choice, context=context, created=now))
            if left_hash != right_hash:  # also a choice (compare:<context>), in the same transaction
                chosen = {"left": left_hash, "right": right_hash}.get(choice)
                insert_choice(db, user_id, (left_hash, right_hash), chosen, "chosen" if chosen else "same",
                              f"compare:{context}", now)

    @retrying
    def comparisons(self, name: str) -> list[Comparison]:
        with self._read() as db:
            rows = db.execute(sa.text("SELECT left_hash, right_hash, choice, context FROM comparisons WHERE user_id = :u"
                                      " ORDER BY id"), {"u": self._user_id(db, name)})
            return [Comparison(*row) for row in rows]

    @retrying
    def add_choice(self, name: str, shown: Sequence[str], chosen: str | None, *, outcome: str | None = None,
                   source: str) -> int:
        """One choice among 2-4 distinct stored images (content hashes, in the order shown), in its
        own transaction; ``chosen`` is one of them, or None for "none of them" (``outcome`` ``none``,
        the default then) or "no preference" (``same``). Returns its id."""
        where = f"choice from {source}"
        outcome = checked_choice(where, shown, chosen, outcome)
        shown = tuple(shown)
        if len(set(shown)) != len(shown):
            raise DataError(f"{where}: an image is shown twice")
        with self._write() as db:
            user_id = self._user_id(db, name)
            stored = {h for (h,) in db.execute(
                sa.text("SELECT hash FROM images WHERE hash IN :h").bindparams(sa.bindparam("h", expanding=True)),
                {"h": list(shown)})}
            for digest in shown:
                if digest not in stored:
                    raise DataError(f"{where}: image {str(digest)[:12]}... is not in the store")
            return insert_choice(db, user_id, shown, chosen, outcome, source, time.time())

    @retrying
    def remove_choice(self, name: str, choice_id: int) -> bool:
        """Remove one of the user's choices (an undo); its images stay. Returns whether there was one."""
        with self._write() as db:
            done = db.execute(sa.text("DELETE FROM choices WHERE id = :c AND user_id = :u"),
                              {"c": choice_id, "u": self._user_id(db, name)})
        return done.rowcount > 0

    @retrying
    def choices(self, name: str) -> list[Choice]:
        """The user's choices, oldest first."""
        with self._read() as db:
            user_id = self._user_id(db, name)
            shown: dict[int, list[str]] = {}
            for choice_id, digest in db.execute(sa.text(
                    "SELECT s.choice_id, s.image_hash FROM choice_images s JOIN choices c ON c.id = s.choice_id"
                    " WHERE c.user_id = :u ORDER BY s.choice_id, s.position"), {"u": user_id}):
                shown.setdefault(choice_id, []).append(digest)
            rows = db.execute(sa.text("SELECT id, chosen, outcome, source, created FROM choices WHERE user_id = :u"
                                      " ORDER BY id"), {"u": user_id}).fetchall()
        return [Choice(i, tuple(shown.get(i, ())), chosen, outcome, source, created)
                for i, chosen, outcome, source, created in rows]

    @retrying
    def import_choices(self, name: str, rows: Iterable[ChoiceRow], *, source: str) -> int:
        """Add ``rows`` to the user's choices, all or nothing, keeping their images in the store as
        ``import_ratings`` does; returns how many were added. Rows are checked in order as they come,
        so the first bad one is the one named."""
        with self._read() as db:
            self._user_id(db, name)
        images: dict[str, tuple[str, str, bytes, tuple[int, int]]] = {}
        read: dict[Path, str] = {}  # an image shown in many rows is read once
        checked = []
        for row in rows:  # read and decode every image before taking the write lock
            checked_choice(row.where, row.shown, row.chosen, None, by_index=True)
            hashes: list[str] = []
            first: dict[str, Path] = {}
            for path in row.shown:
                digest = read.get(path)
                if digest is None:
                    data, image = read_image(path, row.where)
                    digest = read[path] = hashlib.sha256(data).hexdigest()
                    images.setdefault(digest, (digest, (image.format or "img").lower(), data, image.size))
                if digest in first:
                    again = "is shown twice" if path == first[digest] else f"is the same image as {first[digest]}"
                    raise DataError(f"{row.where}: {path} {again}")
                first[digest] = path
                hashes.append(digest)
            chosen = None if row.chosen is None else hashes[row.chosen]
            checked.append((tuple(hashes), chosen, "none" if chosen is None else "chosen"))
        if not checked:
            raise DataError(f"{source}: no choices to import")

        with self._write() as db:
            user_id = self._user_id(db, name)
            self._add_images(db, list(images.values()))
            now = time.time()
            for shown, chosen, outcome in checked:
                insert_choice(db, user_id, shown, chosen, outcome, source, now)
        logger.info("imported %d choices for %s from %s", len(checked), name, source)
        return len(checked)

    @retrying
    def describe(self, name: str, description: str) -> int:
        """Keep a new version of the user's description of their taste (1 to 1000 characters, no
        control or format characters; surrounding space dropped); returns its version, from 1 up."""
        description = checked_description(description)
        with self._write() as db:
            user_id = self._user_id(db, name)
            latest = int(db.execute(sa.text("SELECT COALESCE(MAX(version), 0) FROM descriptions WHERE user_id = :u"),
                                    {"u": user_id}).scalar_one())
            db.execute(sa.text("INSERT INTO descriptions (user_id, version, text, created) VALUES (:u, :v, :x, :t)"),
                       {"u": user_id, "v": latest + 1, "x": description, "t": time.time()})
        return latest + 1

    @retrying
    def descriptions(self, name: str) -> list[Description]:
        """Every version of the user's description, oldest first."""
        with self._read() as db:
            rows = db.execute(sa.text("SELECT version, text, created FROM descriptions WHERE user_id = :u ORDER BY version"),
                              {"u": self._user_id(db, name)})
            return [Description(*row) for row in rows]

    @retrying
    def description(self, name: str) -> Description | None:
        """The user's latest description (None: they have not written one)."""
        with self._read() as db:
            row = db.execute(sa.text("SELECT version, text, created FROM descriptions WHERE user_id = :u"
                                     " ORDER BY version DESC LIMIT 1"), {"u": self._user_id(db, name)}).first()
        return Description(*row) if row else None
