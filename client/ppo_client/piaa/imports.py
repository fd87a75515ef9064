"""Rows to import into the user store, from a CSV file or one rater of a SAC-format set."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from ppo_client.errors import DataError
from ppo_client.sac import read_sac
from ppo_client.store import RatingRow

_HEADER_NAMES = {"image", "path", "file", "filename", "image_path"}


def csv_rows(path: Path) -> Iterator[RatingRow]:
    """``image,rating`` rows; image paths are relative to the CSV's folder; a header row is optional.
    Rows come one by one, so an import that checks them in order names the first bad one, whatever
    is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    reader = csv.reader(text.splitlines())
    number = 0
    while True:
        number += 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over the csv module's size limit, ...
            raise DataError(f"{path.name} row {number}: {exc}") from None
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != 2:
            raise DataError(f"{path.name} row {number}: expected 2 columns (image, rating), got {len(fields)}")
        image, rating = fields[0].strip(), fields[1].strip()
        if number == 1 and image.lower() in _HEADER_NAMES:
            continue
        yield RatingRow(f"{path.name} row {number}", path.parent / image, rating)


def sac_rows(db: Path, sid: int, images_root: Path) -> list[RatingRow]:
    """One rater's rows to import."""
    sac = read_sac(db, sid=sid)
    ratings = sac.ratings.get(sid)
    if not ratings:
        raise DataError(f"{db}: rater sid={sid} has no ratings")
    rows = []
    for iid, rating in sorted(ratings.items()):
        if iid not in sac.paths:
            raise DataError(f"{db}: sid={sid} rated image {iid}, which has no row in 'paths'")
        rows.append(RatingRow(f"{Path(db).name} sid={sid} iid={iid}", Path(images_root) / sac.paths[iid], rating))
    return rows
