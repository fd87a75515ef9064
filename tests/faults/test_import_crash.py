"""An import killed with SIGKILL at random points of its write phase: its ratings are all there or
none are, and the next command leaves no trace of it (no unreferenced image copy, no ``*.tmp``)."""

from __future__ import annotations

import hashlib
import multiprocessing
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.errors import StoreError
from ppo_client.store import WRITING_MARKERS, RatingRow, UserStore

pytestmark = pytest.mark.faults
FORK = multiprocessing.get_context("fork")
IMAGES = 40


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory):
    """40 noise images (about 60 KB each, so the write phase takes a while) and a CSV rating them."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    lines = ["image,rating"]
    for i in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (144, 144, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        lines.append(f"{i}.png,{1 + i % 10}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    (folder / "one.csv").write_text("0.png,5\n")
    return folder / "ratings.csv"


def images_dir(store):
    return store.parent / (store.stem + "_images")


def on_disk(store):
    """What a killed import left, read without the store (which would sweep): files in the image
    folders that no image row names, ``*.tmp`` files, writers' markers, and the ratings by user."""
    db = sqlite3.connect(store)  # rolls back a killed transaction's journal, like any reader
    referenced = {f for (f,) in db.execute("SELECT file FROM images")}
    ratings = dict(db.execute(
        "SELECT u.name, COUNT(r.id) FROM users u LEFT JOIN ratings r ON r.user_id = u.id GROUP BY u.id"))
    hashes = dict(db.execute("SELECT file, hash FROM images"))
    db.close()
    folder = images_dir(store)
    files = [p for p in folder.glob("*/*") if p.is_file() and p.parent.name != WRITING_MARKERS]
    unreferenced = sorted(str(p.relative_to(folder)) for p in files if str(p.relative_to(folder)) not in referenced)
    partial = sorted(p.name for p in folder.rglob("*.tmp"))
    markers = sorted(p.name for p in (folder / WRITING_MARKERS).glob("*"))
    damaged = [f for f, h in hashes.items()
               if not (folder / f).exists() or hashlib.sha256((folder / f).read_bytes()).hexdigest() != h]
    return unreferenced, partial, markers, damaged, ratings


def start_import(csv, store, user="ana"):
    command = [sys.executable, "-m", "ppo_client.cli", "user", "import", user, "--csv", str(csv), "--store", str(store)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_writing(process, store, timeout_s=120.0) -> float | None:
    """The time the import left its marker (began writing files); None if it ended first."""
    markers = images_dir(store) / WRITING_MARKERS
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if markers.is_dir() and any(markers.iterdir()):
            return time.monotonic()
        if process.poll() is not None:
            return None
        time.sleep(0.0005)
    raise AssertionError("the import never began writing")


def new_store(folder):
    store = folder / "store.sqlite"
    assert main(["user", "create", "ana", "--store", str(store)]) == 0
    assert main(["user", "create", "bob", "--store", str(store)]) == 0
    return store


def test_an_import_killed_anywhere_in_its_write_phase_leaves_all_or_nothing_and_no_orphans(
        ratings_csv, tmp_path, capsys):
    # how long the write phase lasts here, from an import left to finish
    store = new_store(tmp_path / "whole")
    process = start_import(ratings_csv, store)
    began = wait_for_writing(process, store)
    assert process.wait(120) == 0, process.stderr.read().decode()
    write_phase_s = max(time.monotonic() - began, 0.01)
    assert on_disk(store)[:4] == ([], [], [], [])

    rng = random.Random(1)
    killed_mid_write, trial = 0, 0
    while killed_mid_write < 3:  # kills at random points until three landed among the files being written
        assert trial < 20, f"only {killed_mid_write} of {trial} kills landed while files were being written"
        store = new_store(tmp_path / f"trial{trial}")
        process = start_import(ratings_csv, store)
        if wait_for_writing(process, store) is not None:
            time.sleep(rng.uniform(0, write_phase_s))
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        process.stderr.close()
        unreferenced, partial, _, _, ratings = on_disk(store)
        killed_mid_write += bool(unreferenced or partial)
        assert ratings["ana"] in (0, IMAGES), f"trial {trial}: {ratings['ana']} of {IMAGES} ratings"
        if ratings["ana"] == IMAGES:  # it had finished: aim earlier
            write_phase_s *= 0.7

        # the next command, whichever it is, cleans up: a read-only listing, or another import
        if trial % 2 == 0:
            assert main(["user", "list", "--store", str(store)]) == 0
        else:
            one = ratings_csv.parent / "one.csv"
            assert main(["user", "import", "bob", "--csv", str(one), "--store", str(store)]) == 0
        unreferenced, partial, markers, damaged, after = on_disk(store)
        assert (unreferenced, partial, markers, damaged) == ([], [], [], []), f"trial {trial}"
        assert after["ana"] == ratings["ana"], f"trial {trial}: the clean-up changed the ratings"
        assert main(["store", "check", "--store", str(store)]) == 0, capsys.readouterr().out
        trial += 1


def _import_and_pause(store, paths, written, go_on):
    """Import ``paths`` but stop after the files are written, inside the transaction, until told."""
    import ppo_client.store as store_module

    real = store_module.UserStore._add_images

    def pausing(self, *args):
        real(self, *args)
        written.set()
        go_on.wait(60)

    store_module.UserStore._add_images = pausing
    with UserStore(store) as users:
        users.import_ratings("ana", [RatingRow(p.name, p, 5) for p in paths], source="test")


def test_a_live_imports_files_are_never_taken_for_a_dead_ones(ratings_csv, tmp_path):
    store = new_store(tmp_path)
    paths = sorted(ratings_csv.parent.glob("*.png"))[:6]
    written, go_on = FORK.Event(), FORK.Event()
    importer = FORK.Process(target=_import_and_pause, args=(store, paths, written, go_on))
    importer.start()
    try:
        assert written.wait(60)
        files = sorted(p for p in images_dir(store).glob("*/*.png"))
        assert len(files) == 6
        with UserStore(store, busy_timeout_s=0.2) as other:  # opening sees the marker; the lock is busy: no sweep
            assert all(p.exists() for p in files)
            with pytest.raises(StoreError, match="is busy"):
                other.check(repair=True)
        assert all(p.exists() for p in files)
    finally:
        go_on.set()
        importer.join(60)
    assert importer.exitcode == 0
    unreferenced, partial, markers, damaged, ratings = on_disk(store)
    assert (unreferenced, partial, markers, damaged, ratings["ana"]) == ([], [], [], [], 6)


def _die_at(store, operation, point, photos):
    """In a child: run ``operation`` on the store and SIGKILL this process at ``point``."""
    import os

    import ppo_client.store as store_module

    calls = [0]

    def dying(real):
        def wrapper(*args, **kwargs):
            result = real(*args, **kwargs)
            calls[0] += 1
            if calls[0] == point:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    if operation == "delete-committed":  # dies after the commit, before the set-aside files are removed
        store_module._FileChanges.finish = lambda self: os.kill(os.getpid(), signal.SIGKILL)
    elif operation == "delete":
        store_module._FileChanges.set_aside = dying(store_module._FileChanges.set_aside)
    else:
        store_module._write_file = dying(store_module._write_file)
    with UserStore(store) as users:
        if operation == "import":
            users.import_ratings("bob", [RatingRow(p.name, p, 5) for p in photos], source="test")
        elif operation == "pool":
            users.add_to_pool([store_module.PoolEntry(p.read_bytes(), "folder", p.name) for p in photos])
        else:
            users.delete_user("ana")


@pytest.mark.parametrize(("operation", "point"), [
    ("import", 1), ("import", 4), ("pool", 1), ("pool", 3), ("delete", 1), ("delete", 3), ("delete-committed", 1),
])
def test_a_write_killed_at_a_given_file_is_undone_or_finished_by_the_next_opening(
        ratings_csv, tmp_path, operation, point):
    store = new_store(tmp_path)
    photos = sorted(ratings_csv.parent.glob("*.png"))
    with UserStore(store) as users:  # ana rates 0-5; bob's import and the pool add 6-11
        users.import_ratings("ana", [RatingRow(p.name, p, 5) for p in photos[:6]], source="test")
    child = FORK.Process(target=_die_at, args=(store, operation, point, photos[6:12]))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    UserStore(store).close()  # the next command
    unreferenced, partial, markers, damaged, ratings = on_disk(store)
    set_aside = list(images_dir(store).rglob("*.deleting"))
    assert (unreferenced, partial, markers, damaged, set_aside) == ([], [], [], [], [])
    with UserStore(store) as users:
        names = [u.name for u in users.users()]
        expected_ana = 0 if operation == "delete-committed" else 6
        assert ratings.get("ana", 0) == expected_ana and ratings["bob"] == 0
        assert ("ana" in names) == (operation != "delete-committed")
        assert users.pool() == [] and users.check().clean
