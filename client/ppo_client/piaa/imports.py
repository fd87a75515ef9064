"""Rows to import into the user store: ratings from a CSV file or one rater of a SAC-format set,
choices from a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from ppo_client.errors import DataError
from ppo_client.sac import read_sac
from ppo_client.store import ChoiceRow, RatingRow

_HEADER_NAMES = {"image", "path", "file", "filename", "image_path"}
_CHOICE_HEADER_NAMES = {"shown", "images", "slate"}
NONE_CHOSEN = "none"
"""The ``chosen`` cell of a choice where none of the images shown was picked."""
SHOWN_SEPARATOR = "|"


def _csv_fields(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(row number, fields) of the CSV's non-blank rows, one by one; unreadable input is a ``DataError``
    naming the row it was found in."""
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
        if fields and any(f.strip() for f in fields):
            yield number, fields


def csv_rows(path: Path) -> Iterator[RatingRow]:
    """``image,rating`` rows; image paths are relative to the CSV's folder; a header row is optional.
    Rows come one by one, so an import that checks them in order names the first bad one, whatever
    is wrong with it."""
    path = Path(path)
    for number, fields in _csv_fields(path):
        if len(fields) != 2:
            raise DataError(f"{path.name} row {number}: expected 2 columns (image, rating), got {len(fields)}")
        image, rating = fields[0].strip(), fields[1].strip()
        if number == 1 and image.lower() in _HEADER_NAMES:
            continue
        yield RatingRow(f"{path.name} row {number}", path.parent / image, rating)


def choices_rows(path: Path) -> Iterator[ChoiceRow]:
    """``shown1|shown2|...,chosen`` rows: the images shown (paths relative to the CSV's folder) and
    the one chosen, written as one of the shown paths, or ``none``; a header row is optional. Rows
    come one by one, as ``csv_rows`` gives them (how many images a row shows, and the images
    themselves, are checked by ``UserStore.import_choices``)."""
    path = Path(path)
    for number, fields in _csv_fields(path):
        where = f"{path.name} row {number}"
        if len(fields) != 2:
            raise DataError(f"{where}: expected 2 columns (shown, chosen), got {len(fields)}")
        shown_cell, chosen = fields[0].strip(), fields[1].strip()
        if number == 1 and shown_cell.lower() in _CHOICE_HEADER_NAMES:
            continue
        names = [name.strip() for name in shown_cell.split(SHOWN_SEPARATOR)]
        if not all(names):
            raise DataError(f"{where}: an empty path among the images shown ({shown_cell[:80]!r})")
        shown = tuple(path.parent / name for name in names)
        if chosen.lower() == NONE_CHOSEN:
            index = None
        elif not chosen:
            raise DataError(f"{where}: the chosen cell is empty; write one of the shown paths, or {NONE_CHOSEN}")
        elif path.parent / chosen in shown:
            index = shown.index(path.parent / chosen)
        else:
            raise DataError(f"{where}: chosen {chosen[:80]!r} is not one of the images shown, nor {NONE_CHOSEN}")
        yield ChoiceRow(where, shown, index)


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
