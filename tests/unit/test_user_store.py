"""The user store and its imports: all-or-nothing writes, errors that name the row, no lost data;
on both databases where the test takes ``store``."""

import io
import sqlite3

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.errors import DataError, StoreError
from ppo_client.head import PreferenceHead
from ppo_client.piaa.imports import csv_rows, sac_rows
from ppo_client.sac import read_sac
from ppo_client.store import SCHEMA_VERSION, UserStore
from ppo_demo.sac import RatedImage, UserRatings, write_sac


def picture(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def rated(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        picture(folder / f"{i}.png", i)
    csv = folder / "ratings.csv"
    csv.write_text("image,rating\n0.png,7\n1.png,3.5\n\n2.png,10\n")
    return csv


@pytest.fixture()
def store(store_location):
    """A store on each database (SQLite file, PostgreSQL)."""
    with UserStore(store_location) as s:
        s.create_user("alice")
        yield s


def snapshot(store):
    return store.ratings("alice"), store.read("SELECT hash, data FROM images ORDER BY hash")


def test_a_csv_import_copies_images_so_deleting_originals_loses_nothing(store, rated):
    assert store.import_ratings("alice", csv_rows(rated), source="csv") == 3
    for original in rated.parent.glob("*.png"):
        original.unlink()
    ratings = store.ratings("alice")
    assert [r.rating for r in ratings] == [7.0, 3.5, 10.0]
    for r in ratings:
        kept = store.image(r.image_hash)
        assert Image.open(io.BytesIO(kept.data)).size == (16, 16) and (kept.width, kept.height, kept.format) == (16, 16, "png")
    assert store.user("alice").ratings == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("3.png,eleven", "ratings.csv row 6: rating 'eleven' is not a number"),
        ("3.png,11", "ratings.csv row 6: rating 11 is outside 1-10"),
        ("3.png,0", "outside 1-10"),
        ("missing.png,5", "ratings.csv row 6: cannot read image"),
        ("ratings.csv,5", "ratings.csv row 6: .* is not a readable image"),
        ("0.png,5", "ratings.csv row 6: .*0.png is the same image as ratings.csv row 2"),
        ("3.png,5,extra", "ratings.csv row 6: expected 2 columns"),
    ],
)
def test_a_bad_row_names_itself_and_leaves_the_store_unchanged(store, rated, line, message):
    rated.write_text(rated.read_text() + line + "\n")
    before = snapshot(store)
    with pytest.raises(DataError, match=message):
        store.import_ratings("alice", csv_rows(rated), source="csv")
    assert snapshot(store) == before


def test_images_already_rated_are_refused_and_users_are_checked(store, rated):
    store.import_ratings("alice", csv_rows(rated), source="csv")
    with pytest.raises(DataError, match="already rated by 'alice'"):
        store.import_ratings("alice", csv_rows(rated), source="csv")
    with pytest.raises(StoreError, match="unknown user 'bob'"):
        store.import_ratings("bob", csv_rows(rated), source="csv")
    with pytest.raises(StoreError, match="already exists"):
        store.create_user("alice")


@pytest.mark.parametrize("name", ["a/b", "a\\b", "tab\there", "x" * 65, "", ".."])
def test_bad_user_names_are_refused(store, name):
    with pytest.raises(StoreError, match="user name"):
        store.create_user(name)


def test_deleting_a_user_removes_their_ratings_models_and_unshared_images(store, rated):
    store.create_user("bob")
    store.import_ratings("alice", csv_rows(rated), source="csv")
    rows = list(csv_rows(rated))[:1]
    store.import_ratings("bob", rows, source="csv")
    store.save_model("alice", "knn", "enc", PreferenceHead.linear(np.ones(3), 1.0), {"seed": 0}, {"cv_srocc": 0.5})
    store.delete_user("alice")
    assert [u.name for u in store.users()] == ["bob"]
    assert store.read("SELECT hash FROM images") == [(store.ratings("bob")[0].image_hash,)]
    assert store.check().clean


def test_embeddings_and_models_round_trip(store):
    store.put_embeddings({"h1": np.arange(4, dtype=np.float32)}, "enc-a")
    assert list(store.embeddings(["h1", "h2"], "enc-a")) == ["h1"]
    assert store.embeddings(["h1"], "enc-b") == {}
    head = PreferenceHead.linear(np.ones(3), 1.0, method="bayes")
    model_id = store.save_model("alice", "bayes", "enc-a", head, {"seed": 1}, {"cv_srocc": 0.4})
    model = store.latest_model("alice")
    assert (model.id, model.head.digest, model.params, model.metrics) == (model_id, head.digest, {"seed": 1}, {"cv_srocc": 0.4})
    with pytest.raises(StoreError, match="no trained model with method 'knn'"):
        store.latest_model("alice", "knn")


def test_a_store_of_another_schema_version_or_kind_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    UserStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99'")
    with pytest.raises(StoreError, match=f"schema version 99; this program reads up to {SCHEMA_VERSION}"):
        UserStore(path)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE x (a)")
    with pytest.raises(StoreError, match="not a user store"):
        UserStore(other)
    (tmp_path / "text.sqlite").write_text("hello " * 200)
    with pytest.raises(StoreError, match="not a user store"):
        UserStore(tmp_path / "text.sqlite")


@pytest.fixture()
def sac_file(tmp_path):
    (tmp_path / "images").mkdir()
    images = []
    for i in range(1, 4):
        picture(tmp_path / "images" / f"{i}.png", 10 + i)
        images.append(RatedImage(iid=i, gid=i, prompt=f"p{i}", path=f"images/{i}.png"))
    users = [
        UserRatings(sid=5, persona_spec={}, survey=[5] * 20, ratings=[(1, 7), (2, 3), (3, 9)], true_scores=[(1, 6.0), (2, 3.0), (3, 8.0)]),
        UserRatings(sid=6, persona_spec={}, survey=[5] * 20, ratings=[(1, 2)], true_scores=[(1, 2.5)]),
    ]
    return write_sac(tmp_path / "sac.sqlite", images, users, method="test")


def test_the_sac_reader_and_import(store, sac_file):
    sac = read_sac(sac_file)
    assert sac.ratings == {5: {1: 7.0, 2: 3.0, 3: 9.0}, 6: {1: 2.0}} and sac.has_truth
    assert sac.true_scores[5][3] == 8.0
    assert store.import_ratings("alice", sac_rows(sac_file, 5, sac_file.parent), source="sac") == 3
    with pytest.raises(DataError, match="sid=7 has no ratings"):
        sac_rows(sac_file, 7, sac_file.parent)
    (sac_file.parent / "images" / "1.png").unlink()
    store.create_user("carol")
    with pytest.raises(DataError, match="sac.sqlite sid=6 iid=1: cannot read image"):
        store.import_ratings("carol", sac_rows(sac_file, 6, sac_file.parent), source="sac")


def test_files_that_are_not_sac_sets_are_refused(tmp_path):
    (tmp_path / "a.sqlite").write_text("not sqlite " * 100)
    with pytest.raises(DataError, match="not a SQLite database"):
        read_sac(tmp_path / "a.sqlite")
    with sqlite3.connect(tmp_path / "b.sqlite") as db:
        db.execute("CREATE TABLE ratings (sid, iid, rating, verified)")
    with pytest.raises(DataError, match="table 'paths' is missing"):
        read_sac(tmp_path / "b.sqlite")
    with pytest.raises(DataError, match="no such SAC file"):
        read_sac(tmp_path / "none.sqlite")


def test_the_user_commands(tmp_path, rated, capsys):
    store = ["--store", str(tmp_path / "cli" / "store.sqlite")]
    assert main(["user", "create", "dana", *store]) == 0
    assert main(["user", "import", "dana", "--csv", str(rated), *store]) == 0
    assert main(["user", "show", "dana", *store]) == 0
    assert main(["user", "list", *store]) == 0
    assert main(["user", "create", "a/b", *store]) == 2
    assert main(["user", "import", "nobody", "--csv", str(rated), *store]) == 2
    assert main(["user", "delete", "dana", *store]) == 0
    assert main(["user", "show", "dana", *store]) == 2
    err = capsys.readouterr().err
    assert "imported 3 ratings" in err and "unknown user 'nobody'" in err and "dana" in err


def png_bytes(seed: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_pool_images_are_rated_one_at_a_time_undone_and_kept_when_users_go(store_location):
    from ppo_client.store import PoolEntry

    with UserStore(store_location) as store:
        store.create_user("ana")
        hashes = store.add_to_pool([PoolEntry(png_bytes(i), "gallery", f"prompt {i}") for i in range(3)])
        assert store.add_to_pool([PoolEntry(png_bytes(0), "gallery", "again")]) == hashes[:1], "content-addressed"
        assert [p.label for p in store.pool("gallery")] == ["prompt 0", "prompt 1", "prompt 2"]
        store.rate("ana", hashes[0], 7, source="app")
        store.rate("ana", hashes[0], 9, source="app")  # rating again replaces
        assert [(r.image_hash, r.rating) for r in store.ratings("ana")] == [(hashes[0], 9.0)]
        assert store.unrate("ana", hashes[0]) and not store.unrate("ana", hashes[0])
        with pytest.raises(DataError, match="outside 1-10"):
            store.rate("ana", hashes[1], 0, source="app")
        with pytest.raises(DataError, match="not in the store"):
            store.rate("ana", "f" * 64, 5, source="app")
        store.rate("ana", hashes[1], 4, source="app")
        store.add_comparison("ana", hashes[1], hashes[2], "left", context="run:x:pair:0")
        assert store.comparisons("ana")[0].choice == "left"
        with pytest.raises(DataError, match="left, right or same"):
            store.add_comparison("ana", hashes[1], hashes[2], "up", context="x")
        store.delete_user("ana")
        assert all(store.image(p.image_hash) for p in store.pool()), "pool images outlive the users who rated them"
        assert store.image(hashes[2]).data == png_bytes(2) and store.image("../../etc/passwd") is None
