"""Property tests of the rating CSV that `ppo-client user import --csv` reads (``csv_rows``, then
``UserStore.import_ratings``): whatever the file holds, the import takes every row or refuses with
a ``DataError`` that names the first bad row, and the store is left as it was. Never another
exception."""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from ppo_client.errors import DataError
from ppo_client.piaa.imports import csv_rows
from ppo_client.store import UserStore

pytestmark = pytest.mark.faults
IMAGES = 4
HEADER_NAMES = {"image", "path", "file", "filename", "image_path"}
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""What ``str.splitlines`` breaks a line at: kept out of generated fields, so rows are lines."""
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``photos/0..3.png``, a text file, a sub-folder, and an image outside ``photos`` (``../outside.png``)."""
    root = tmp_path_factory.mktemp("csv")
    photos = root / "photos"
    photos.mkdir()
    for i in range(IMAGES):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / "outside.png")
    (photos / "notes.txt").write_text("not an image")
    (photos / "sub").mkdir()
    return photos


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()


IMAGE_FIELDS = st.one_of(
    st.sampled_from([f"{i}.png" for i in range(IMAGES)] + [" 0.png ", "../outside.png", "../photos/1.png",
                                                            "./2.png", "sub/../3.png"]),
    st.sampled_from(["missing.png", "notes.txt", "sub", "", "..", "../../../../etc/passwd", "/", "0.png\x00",
                     "\x00", "x" * 300, "../" * 40 + "0.png", "IMAGE", "Path", "image_path"]),
    st.text(alphabet=st.characters(blacklist_characters=LINE_BREAKS, blacklist_categories=("Cs",)), max_size=12),
)
RATING_FIELDS = st.one_of(
    st.integers(1, 10).map(str),
    st.floats(1, 10).map(repr),
    st.sampled_from(["1" + "0" * 400, "1e400", "-1e400", "1e-400", "10" + "0" * 5000, "nan", "NaN", "inf", "-inf",
                     "Infinity", "", " ", "0", "11", "10.000001", "0.9999", "+5", " 7 ", "1_0", "0x5", "５", "5\x00",
                     "\x00", '"', "eleven", "None", "[5]"]),
    st.text(alphabet=st.characters(blacklist_characters=LINE_BREAKS, blacklist_categories=("Cs",)), max_size=8),
)


@st.composite
def rows(draw):
    """Rows of fields: mostly image and rating, sometimes fewer or more fields, sometimes empty."""
    count = draw(st.integers(0, 6))
    out = []
    for _ in range(count):
        shape = draw(st.sampled_from(["pair"] * 6 + ["empty", "one", "three", "blank"]))
        if shape == "pair":
            out.append([draw(IMAGE_FIELDS), draw(RATING_FIELDS)])
        elif shape == "empty":
            out.append([])
        elif shape == "blank":
            out.append([" ", ""])
        elif shape == "one":
            out.append([draw(IMAGE_FIELDS)])
        else:
            out.append([draw(IMAGE_FIELDS), draw(RATING_FIELDS), draw(RATING_FIELDS)])
    return out


def _quote(field: str) -> str:
    return '"' + field.replace('"', '""') + '"' if any(c in field for c in ',"') or field != field.strip() else field


def csv_text(table: list[list[str]]) -> str:
    return "".join(",".join(_quote(f) for f in fields) + "\n" for fields in table)


def expected(table: list[list[str]], folder: Path) -> tuple[int | None, int]:
    """(the first bad row's number, 0 for a file without ratings, or None for a good file; how many
    ratings a good file holds), by the CSV format's rules: a row is an image path (relative to the
    CSV's folder) and a rating from 1 to 10; empty rows are skipped; a first row naming an image
    column is a header; an image comes once."""
    good = {_digest(path) for path in [*(folder / f"{i}.png" for i in range(IMAGES)), folder.parent / "outside.png"]}
    seen, count = set(), 0
    for number, fields in enumerate(table, start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != 2:
            return number, 0
        image, rating = fields[0].strip(), fields[1].strip()
        if number == 1 and image.lower() in HEADER_NAMES:
            continue
        try:
            value = float(rating)
        except (ValueError, OverflowError):
            return number, 0
        if not math.isfinite(value) or not 1 <= value <= 10:
            return number, 0
        try:
            digest = _digest(folder / image)
        except (OSError, ValueError):
            return number, 0
        if digest not in good or digest in seen:
            return number, 0
        seen.add(digest)
        count += 1
    return (None, count) if count else (0, 0)


def import_file(data: bytes, folder: Path):
    """Import ``data`` as ``folder/ratings.csv`` into a new store, as `user import --csv` does;
    (count or DataError, ratings stored, image files stored)."""
    csv = folder / "ratings.csv"
    csv.write_bytes(data)
    with tempfile.TemporaryDirectory() as tmp, UserStore(Path(tmp) / "store.sqlite") as store:
        store.create_user("ana")
        try:
            outcome = store.import_ratings("ana", csv_rows(csv), source=f"csv:{csv.name}")
        except DataError as exc:
            outcome = exc
        files = sorted(h for (h,) in store.read("SELECT hash FROM images"))
        return outcome, len(store.ratings("ana")), files


@SETTINGS
@given(table=rows())
@example(table=[["image", "rating"], ["0.png", "7"], ["1.png", "1" + "0" * 400]])
@example(table=[["0.png", "5"], ["1.png", "nan"], ["2.png", "inf"]])
@example(table=[["0.png\x00", "5"]])
@example(table=[["../outside.png", "5"], ["../photos/0.png", "6"]])
@example(table=[["0.png", "eleven"], ["1.png", "5", "extra"]])
def test_a_csv_import_takes_every_row_or_names_the_first_bad_one(folder, table):
    first_bad, count = expected(table, folder)
    outcome, stored, files = import_file(csv_text(table).encode("utf-8"), folder)
    if first_bad is None:
        assert outcome == count and stored == count, outcome
        return
    assert isinstance(outcome, DataError), outcome
    assert (stored, files) == (0, []), "a refused import writes nothing"
    if not first_bad:
        assert "ratings.csv: no ratings to import" in str(outcome)
        return
    assert f"ratings.csv row {first_bad}:" in str(outcome), (first_bad, str(outcome))


def test_a_bad_rating_is_named_before_a_later_row_with_the_wrong_number_of_columns(folder):
    outcome, _, _ = import_file(b"0.png,eleven\n1.png,5,extra\n", folder)
    assert "ratings.csv row 1:" in str(outcome), str(outcome)


@SETTINGS
@given(data=st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from([b"0.png", b"1.png", b",", b"7", b"\n", b"\r", b'"', b"\x00", b"\xff", b"\xef\xbb\xbf",
                              b"\xc3", b"1e400", b"nan", b" ", b"../", b"\x0c", b"\xe2\x80\xa8"]),
             max_size=40).map(b"".join),
))
@example(data=b'"0.png\n",5\n')
@example(data=b'0.png,"5\n1.png,6\n')
@example(data=b"\xef\xbb\xbfimage,rating\r\n0.png,5\r\n")
@example(data=b"0.png,5\n\xff\xfe,6\n")
def test_any_bytes_are_imported_whole_or_refused_with_a_data_error(folder, data):
    outcome, stored, files = import_file(data, folder)
    if isinstance(outcome, DataError):
        assert (stored, files) == (0, []), "a refused import writes nothing"
        assert "ratings.csv" in str(outcome), str(outcome)
    else:
        assert outcome == stored and len(files) == stored


def test_a_field_larger_than_the_csv_modules_limit_is_a_data_error(folder):
    outcome, stored, _ = import_file(b"0.png,5\n" + b'"' + b"x" * 200_000 + b'",5\n', folder)
    assert isinstance(outcome, DataError) and "ratings.csv row 2" in str(outcome) and stored == 0
