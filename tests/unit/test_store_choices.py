"""Choices among 2-4 images, descriptions and model covariances in the user store (schema version 4)."""

import csv
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ppo_client.errors import DataError, StoreError
from ppo_client.head import PreferenceHead
from ppo_client.piaa.imports import choices_rows
from ppo_client.store import Choice, ChoiceRow, PoolEntry, UserStore
from tests.unit.test_user_store import picture, png_bytes


@pytest.fixture()
def store(store_location):
    with UserStore(store_location) as s:
        s.create_user("alice")
        yield s


@pytest.fixture()
def pooled(store):
    """Five stored images (pool entries nobody rated)."""
    return store.add_to_pool([PoolEntry(png_bytes(i), "gallery", f"prompt {i}") for i in range(5)])


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        picture(folder / f"{i}.png", i)
    shutil.copy(folder / "0.png", folder / "copy.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def stored_files(store):
    """The hashes of the images the store holds."""
    return [h for (h,) in store.read("SELECT hash FROM images ORDER BY hash")]


def snapshot(store, name="alice"):
    return store.choices(name), stored_files(store)


# --- add_choice ---


def test_a_choice_is_kept_with_its_images_in_order_and_can_be_undone(store, pooled):
    first = store.add_choice("alice", pooled[:4], pooled[2], source="app:pick")
    second = store.add_choice("alice", [pooled[4], pooled[0]], None, source="app:pick")
    third = store.add_choice("alice", pooled[1:3], None, outcome="same", source="app:pair")
    choices = store.choices("alice")
    assert [c.id for c in choices] == [first, second, third]
    assert choices[0] == Choice(first, tuple(pooled[:4]), pooled[2], "chosen", "app:pick", choices[0].created)
    assert (choices[1].shown, choices[1].chosen, choices[1].outcome) == ((pooled[4], pooled[0]), None, "none")
    assert choices[2].outcome == "same" and choices[2].chosen is None
    assert store.user("alice").choices == 3
    assert store.remove_choice("alice", second) and not store.remove_choice("alice", second)
    assert [c.id for c in store.choices("alice")] == [first, third]
    store.create_user("bob")
    assert not store.remove_choice("bob", first), "one user cannot undo another's choice"


@pytest.mark.parametrize(
    ("shown", "chosen", "outcome", "message"),
    [
        ([0], 0, None, "shows 2 to 4 images, got 1 images"),
        ([0, 1, 2, 3, 4], 0, None, "shows 2 to 4 images, got 5 images"),
        ([0, 0], 0, None, "an image is shown twice"),
        ([0, 1], 2, None, "the image chosen, .* is not one of those shown"),
        ([0, 1], None, "maybe", "outcome must be one of chosen, none, same"),
        ([0, 1], None, "chosen", "outcome 'chosen' needs the image chosen"),
        ([0, 1], 0, "same", "outcome 'same' has no image chosen"),
        ([0, "f" * 64], 0, None, r"image ffffffffffff\.\.\. is not in the store"),
    ],
)
def test_a_bad_choice_is_refused_saying_what_is_wrong(store, pooled, shown, chosen, outcome, message):
    hashes = [pooled[i] if isinstance(i, int) else i for i in shown]
    with pytest.raises(DataError, match=message):
        store.add_choice("alice", hashes, None if chosen is None else pooled[chosen], outcome=outcome, source="app")
    assert store.choices("alice") == []


def test_a_choice_needs_a_known_user_and_a_list_of_hashes(store, pooled):
    with pytest.raises(StoreError, match="unknown user 'nobody'"):
        store.add_choice("nobody", pooled[:2], pooled[0], source="app")
    with pytest.raises(DataError, match="got text"):
        store.add_choice("alice", pooled[0], None, source="app")


def test_a_comparison_is_also_a_choice_written_in_the_same_transaction(store, pooled):
    store.add_comparison("alice", pooled[0], pooled[1], "right", context="run:x:pair:0")
    store.add_comparison("alice", pooled[2], pooled[3], "same", context="run:x:pair:1")
    choices = store.choices("alice")
    assert [(c.shown, c.chosen, c.outcome, c.source) for c in choices] == [
        ((pooled[0], pooled[1]), pooled[1], "chosen", "compare:run:x:pair:0"),
        ((pooled[2], pooled[3]), None, "same", "compare:run:x:pair:1"),
    ]
    with pytest.raises(StoreError):  # an image not in the store: neither row is written
        store.add_comparison("alice", pooled[0], "e" * 64, "left", context="x")
    assert len(store.comparisons("alice")) == 2 and len(store.choices("alice")) == 2


# --- the migration and deleting users ---


def test_deleting_a_user_keeps_the_images_another_users_choice_shows(store, photos):
    store.create_user("bob")
    (photos / "a.csv").write_text("0.png|1.png,1.png\n2.png|3.png,none\n")
    (photos / "b.csv").write_text("1.png|4.png,4.png\n")
    store.import_choices("alice", choices_rows(photos / "a.csv"), source="csv:a")
    store.import_choices("bob", choices_rows(photos / "b.csv"), source="csv:b")
    store.describe("alice", "blue")
    assert len(stored_files(store)) == 5
    store.delete_user("alice")
    names = stored_files(store)
    kept = {store.choices("bob")[0].shown[0], store.choices("bob")[0].shown[1]}
    assert set(names) == kept, "only the images bob's choice shows are left"
    assert store.check().clean
    with pytest.raises(StoreError, match="unknown user 'alice'"):
        store.choices("alice")
    assert store.read("SELECT COUNT(*) FROM choices")[0][0] == 1
    assert store.read("SELECT COUNT(*) FROM choice_images")[0][0] == 2
    assert store.read("SELECT COUNT(*) FROM descriptions")[0][0] == 0


# --- descriptions ---


def test_descriptions_are_versioned_per_user(store):
    assert store.description("alice") is None and store.descriptions("alice") == []
    assert store.describe("alice", "  I like dark, moody blue scenes; no yellow  ") == 1
    assert store.describe("alice", "bright\nand clean") == 2
    store.create_user("bob")
    assert store.describe("bob", "anything") == 1
    assert store.description("alice").text == "bright\nand clean"
    assert [(d.version, d.text) for d in store.descriptions("alice")] == [
        (1, "I like dark, moody blue scenes; no yellow"), (2, "bright\nand clean")]
    assert store.user("alice").description_version == 2 and store.user("bob").description_version == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "1 to 1000 characters, got 0"), ("   ", "got 0"), ("x" * 1001, "got 1001"),
     ("blue\x1b[31m", "control or format"), ("blue\u200bsky", "control or format"), (None, "is text")],
)
def test_a_bad_description_is_refused(store, text, message):
    with pytest.raises(DataError, match=message):
        store.describe("alice", text)
    assert store.descriptions("alice") == []


# --- covariances ---


def test_a_model_keeps_its_covariance_as_float32(store):
    head = PreferenceHead.linear(np.arange(3.0), 1.0)
    covariance = np.diag([1.0, 2.0, 3.0, 4.0]) + 0.25
    plain = store.save_model("alice", "ridge", "enc", head, {}, {})
    bayes = store.save_model("alice", "bayes", "enc", head, {}, {}, covariance=covariance)
    models = {m.id: m for m in store.models("alice")}
    assert models[plain].covariance is None
    assert models[bayes].covariance.dtype == np.float32
    np.testing.assert_array_equal(models[bayes].covariance, covariance.astype(np.float32))
    with pytest.raises(DataError, match=r"finite \[4, 4\] covariance"):
        store.save_model("alice", "bayes", "enc", head, {}, {}, covariance=np.eye(3))
    with pytest.raises(DataError, match="linear head"):
        store.save_model("alice", "knn", "enc", PreferenceHead.knn(np.eye(3), np.ones(3), 2), {}, {}, covariance=np.eye(4))
    assert len(store.models("alice")) == 2


# --- importing choices ---


def test_a_choices_csv_import_copies_images_so_deleting_originals_loses_nothing(store, photos):
    csv_file = photos / "choices.csv"
    csv_file.write_text("shown,chosen\n0.png|1.png|2.png|3.png,2.png\n\n3.png|4.png,none\n./4.png|0.png,4.png\n")
    assert store.import_choices("alice", choices_rows(csv_file), source="csv:choices.csv") == 3
    for original in photos.glob("*.png"):
        original.unlink()
    choices = store.choices("alice")
    assert [len(c.shown) for c in choices] == [4, 2, 2]
    assert [c.outcome for c in choices] == ["chosen", "none", "chosen"]
    assert choices[0].chosen == choices[0].shown[2] and choices[2].chosen == choices[2].shown[0]
    assert choices[1].shown[0] == choices[0].shown[3], "one image, one hash, wherever it is shown"
    for digest in {h for c in choices for h in c.shown}:
        assert Image.open(io.BytesIO(store.image(digest).data)).size == (16, 16)
    assert len(stored_files(store)) == 5 and {c.source for c in choices} == {"csv:choices.csv"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0.png,0.png", "row 3: a choice shows 2 to 4 images, got 1 images"),
        ("0.png|1.png|2.png|3.png|4.png,none", "row 3: a choice shows 2 to 4 images, got 5 images"),
        ("0.png|1.png,2.png", "row 3: chosen '2.png' is not one of the images shown, nor none"),
        ("0.png|1.png,", "row 3: the chosen cell is empty"),
        ("0.png||1.png,none", "row 3: an empty path among the images shown"),
        ("0.png|1.png", "row 3: expected 2 columns"),
        ("0.png|1.png,none,extra", "row 3: expected 2 columns"),
        ("0.png|copy.png,none", "row 3: .*copy.png is the same image as .*0.png"),
        ("0.png|0.png,none", "row 3: .*0.png is shown twice"),
        ("0.png|gone.png,none", "row 3: cannot read image .*gone.png"),
        ("0.png|notes.txt,0.png", "row 3: .*notes.txt"),
        ('"0.png|1.png\0,none', "row 3"),
    ],
)
def test_a_bad_choice_row_names_itself_and_leaves_the_store_unchanged(store, photos, line, message):
    csv_file = photos / "choices.csv"
    csv_file.write_text(f"1.png|2.png,1.png\n3.png|4.png,none\n{line}\n4.png|0.png,none\n")
    before = snapshot(store)
    with pytest.raises(DataError, match=message) as caught:
        store.import_choices("alice", choices_rows(csv_file), source="csv")
    assert str(caught.value).startswith("choices.csv row 3"), caught.value
    assert snapshot(store) == before


def test_rows_not_from_a_csv_are_checked_too(store, photos):
    rows = [ChoiceRow("mine 1", (photos / "0.png", photos / "1.png"), 2)]
    with pytest.raises(DataError, match="mine 1: chosen '2' is not the index of one of the 2 images shown"):
        store.import_choices("alice", rows, source="mine")
    with pytest.raises(DataError, match="mine: no choices to import"):
        store.import_choices("alice", [], source="mine")
    with pytest.raises(StoreError, match="unknown user 'nobody'"):
        store.import_choices("nobody", [ChoiceRow("mine 1", (photos / "0.png", photos / "1.png"), 0)], source="mine")
    assert snapshot(store) == ([], [])


def test_a_choices_import_that_fails_while_writing_leaves_no_files(store, photos, monkeypatch):
    import sqlalchemy as sa

    import ppo_client.store.taste as store_module

    csv_file = photos / "choices.csv"
    csv_file.write_text("0.png|1.png,0.png\n2.png|3.png,none\n")
    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) == 2:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
        return original(*args)

    original = store_module.insert_choice
    monkeypatch.setattr(store_module, "insert_choice", failing)
    with pytest.raises(StoreError, match="disk I/O error"):
        store.import_choices("alice", choices_rows(csv_file), source="csv")
    monkeypatch.undo()
    assert snapshot(store) == ([], [])
    assert store.check().clean


# --- any CSV: all imported, or the first bad row named and nothing written ---

_NAMES = ["0.png", "1.png", "2.png", "3.png", "4.png", "copy.png", "notes.txt", "gone.png"]
_GOOD = {"0.png", "1.png", "2.png", "3.png", "4.png", "copy.png"}
_CONTENT = {name: name for name in _GOOD} | {"copy.png": "0.png"}

_rows = st.lists(
    st.one_of(
        st.tuples(
            st.lists(st.sampled_from(_NAMES), min_size=1, max_size=5),
            st.one_of(st.just("none"), st.sampled_from(_NAMES), st.just("")),
        ),
        st.just(("0.png", "1.png", "extra")),
    ),
    max_size=6,
)


def _first_bad(rows) -> int | None:
    """The (0-based) index of the first row an import must refuse, by the rules as documented."""
    for index, row in enumerate(rows):
        if len(row) != 2:
            return index
        shown, chosen = row
        contents = [_CONTENT.get(name) for name in shown]
        if (not 2 <= len(shown) <= 4 or (chosen != "none" and chosen not in shown) or None in contents
                or len(set(contents)) != len(contents)):
            return index
    return None


@pytest.fixture(scope="module")
def shared_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(5):
        picture(folder / f"{i}.png", i)
    shutil.copy(folder / "0.png", folder / "copy.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows)
def test_any_choices_csv_is_imported_whole_or_refused_at_its_first_bad_row(shared_photos, rows):
    with tempfile.TemporaryDirectory() as tmp:
        csv_file = Path(tmp) / "choices.csv"
        with open(csv_file, "w", newline="") as out:
            writer = csv.writer(out)
            for row in rows:
                writer.writerow(row if len(row) != 2 else ("|".join(str(shared_photos / n) for n in row[0]),
                                                           row[1] if row[1] in ("none", "") else str(shared_photos / row[1])))
        with UserStore(Path(tmp) / "store.sqlite") as store:
            store.create_user("u")
            bad = _first_bad(rows)
            if rows and bad is None:
                assert store.import_choices("u", choices_rows(csv_file), source="csv") == len(rows)
                assert [len(c.shown) for c in store.choices("u")] == [len(r[0]) for r in rows]
                assert [c.outcome for c in store.choices("u")] == ["none" if r[1] == "none" else "chosen" for r in rows]
            else:
                with pytest.raises(DataError) as caught:
                    store.import_choices("u", choices_rows(csv_file), source="csv")
                expected = "csv: no choices" if bad is None else f"choices.csv row {bad + 1}:"
                assert str(caught.value).startswith(expected), (str(caught.value), rows)
                assert snapshot(store, "u") == ([], [])
