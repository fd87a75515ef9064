"""The user store under concurrent processes and damaged files: nothing committed is lost, every
failure is one clear message."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.errors import StoreError
from ppo_client.head import PreferenceHead
from ppo_client.store import RatingRow, UserStore

pytestmark = pytest.mark.faults
FORK = multiprocessing.get_context("fork")


def pictures(folder, count, first=0):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(first, first + count):
        path = folder / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def rows(paths):
    return [RatingRow(f"{p.name}", p, 1 + i % 10) for i, p in enumerate(paths)]


def consistent(store_path):
    """Every image a rating names is in the store with its bytes; no image row is orphaned."""
    with UserStore(store_path) as store:
        missing = store.read("SELECT hash FROM images WHERE data IS NULL")
        dangling = store.read("SELECT COUNT(*) FROM ratings WHERE image_hash NOT IN (SELECT hash FROM images)")[0][0]
        orphans = store.read("SELECT COUNT(*) FROM images WHERE hash NOT IN (SELECT image_hash FROM ratings)")[0][0]
        problems = store.check().problems
    return missing, dangling, orphans, problems


def _import(store_path, user, paths, barrier, fail_on=()):
    """Import ``paths``; with ``fail_on``, the import dies (disk full) after it has written its
    images, inside its transaction."""
    import sqlalchemy as sa

    from ppo_client.store.images import Images

    poison = {p.read_bytes() for p in fail_on}
    if poison:
        real = Images._add_images

        def failing(self, db, items):
            real(self, db, items)
            if any(data in poison for _, _, data, _ in items):
                raise sa.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))

        Images._add_images = failing
    barrier.wait()
    with UserStore(store_path) as store:
        try:
            store.import_ratings(user, rows([*paths, *fail_on]), source="test")
        except StoreError as exc:  # the disk error, as one message
            if not poison or "disk is full" not in str(exc):
                raise


def _delete_and_recreate(store_path, user, paths, barrier):
    barrier.wait()
    with UserStore(store_path) as store:
        store.delete_user(user)
        store.create_user(user)
        store.import_ratings(user, rows(paths[:3]), source="test")


def _train_writes(store_path, user, barrier):
    """What `user train` writes: embeddings and a model, between the imports."""
    barrier.wait()
    with UserStore(store_path) as store:
        hashes = [r.image_hash for r in store.ratings(user)]
        store.put_embeddings({h: np.ones(8, np.float32) for h in hashes}, "enc")
        store.save_model(user, "knn", "enc", PreferenceHead.linear(np.ones(8), 0.0), {}, {})


def run_all(targets):
    processes = [FORK.Process(target=t, args=a) for t, a in targets]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    return [p.exitcode for p in processes]


def test_concurrent_imports_of_the_same_images_lose_nothing_in_ten_trials(tmp_path):
    images = pictures(tmp_path / "photos", 12)
    private = pictures(tmp_path / "private", 2, first=100)
    for trial in range(10):
        path = tmp_path / f"trial{trial}" / "store.sqlite"
        with UserStore(path) as store:
            for user in ("c1", "c2", "c3", "old"):
                store.create_user(user)
            store.import_ratings("old", rows(images[6:]), source="seed")
        barrier = FORK.Barrier(5)
        codes = run_all([
            (_import, (path, "c1", images, barrier)),
            (_import, (path, "c2", images, barrier, private)),  # fails after the shared files and cleans up
            (_import, (path, "c3", images[3:9], barrier)),
            (_delete_and_recreate, (path, "old", images[6:], barrier)),
            (_train_writes, (path, "c3", barrier)),
        ])
        assert codes == [0] * 5, f"trial {trial}: exit codes {codes}"
        with UserStore(path) as store:
            assert store.user("c1").ratings == 12 and store.user("c2").ratings == 0, f"trial {trial}"
            assert store.user("c3").ratings == 6 and store.user("old").ratings == 3, f"trial {trial}"
            for user in ("c1", "c3", "old"):
                assert all(store.image(r.image_hash) for r in store.ratings(user)), f"trial {trial}: {user} lost images"
        assert consistent(path) == ([], 0, 0, []), f"trial {trial}"


def test_a_second_writer_waits_for_the_first_and_gives_up_with_a_message(tmp_path):
    path = tmp_path / "store.sqlite"
    UserStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with UserStore(path, busy_timeout_s=0.3) as store:
            with pytest.raises(StoreError, match=r"store.sqlite is busy: another process kept it locked"):
                store.create_user("late")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with UserStore(path) as store:
        store.create_user("late")


@pytest.fixture()
def damaged(tmp_path):
    """A store with one user whose page 1 (the schema's b-tree) has one flipped byte."""
    path = tmp_path / "store.sqlite"
    with UserStore(path) as store:
        store.create_user("ana")
        store.import_ratings("ana", rows(pictures(tmp_path / "photos", 4)), source="seed")
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # the first b-tree page header, right after the 100-byte file header
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "command",
    [["user", "list"], ["user", "show", "ana"], ["user", "delete", "ana"], ["user", "create", "bob"],
     ["user", "train", "ana", "--url", "127.0.0.1:9"],
     ["optimize", "--user", "ana", "--prompt", "a cat", "--optimizer", "random", "--url", "127.0.0.1:9"]],
)
def test_every_command_refuses_a_damaged_store_with_one_line(damaged, tmp_path, capsys, command):
    before = damaged.read_bytes()
    args = [*command, "--store", str(damaged)]
    if command[0] == "optimize":
        args += ["--run-dir", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "store.sqlite is damaged" in err and "Traceback" not in err, err
    assert damaged.read_bytes() == before, "nothing was written to the damaged store"


def test_an_import_into_a_damaged_store_writes_nothing(damaged, tmp_path, capsys):
    csv = tmp_path / "more" / "r.csv"
    pictures(csv.parent, 2, first=50)
    csv.write_text("50.png,3\n51.png,4\n")
    before = damaged.read_bytes()
    assert main(["user", "import", "ana", "--csv", str(csv), "--store", str(damaged)]) == 2
    assert "store.sqlite is damaged" in capsys.readouterr().err
    assert damaged.read_bytes() == before


def test_a_file_that_is_not_a_store_is_named(tmp_path, capsys):
    path = tmp_path / "notes.sqlite"
    path.write_text("hello " * 200)
    assert main(["user", "list", "--store", str(path)]) == 2
    assert "notes.sqlite is damaged or not a user store" in capsys.readouterr().err
    copy = tmp_path / "copy.sqlite"
    shutil.copy(path, copy)
    with pytest.raises(StoreError):
        UserStore(copy)


def test_the_crowds_name_cannot_be_taken_by_a_user(tmp_path, capsys):
    assert main(["user", "create", "general", "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "'general' is reserved" in capsys.readouterr().err
