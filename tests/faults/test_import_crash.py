"""An import killed with SIGKILL at random points: its ratings and images are all there or none are,
on both databases, and the store stays clean for the next command."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.store import UserStore

pytestmark = pytest.mark.faults
IMAGES = 40


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory):
    """40 noise images (about 60 KB each, so the write takes a while) and a CSV rating them."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    lines = ["image,rating"]
    for i in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (144, 144, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        lines.append(f"{i}.png,{1 + i % 10}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    (folder / "one.csv").write_text("0.png,5\n")
    return folder / "ratings.csv"


def start_import(csv, store, user="ana"):
    command = [sys.executable, "-m", "ppo_client.cli", "user", "import", user, "--csv", str(csv), "--store", store]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def state(store: str) -> tuple[int, int]:
    """(ana's ratings, images held)."""
    with UserStore(store) as users:
        return len(users.ratings("ana")), users.read("SELECT COUNT(*) FROM images")[0][0]


def test_an_import_killed_anywhere_leaves_all_or_nothing(ratings_csv, store_location, tmp_path, capsys):
    stores = iter([store_location] + [str(tmp_path / f"s{i}.sqlite") for i in range(1, 10)]) \
        if store_location.endswith(".sqlite") else None

    def fresh(trial: int) -> str:
        if stores is not None:
            store = next(stores)
        else:  # PostgreSQL: empty the one database between trials
            store = store_location
            if trial:
                with UserStore(store) as users:
                    for name in ("ana", "bob"):
                        users.delete_user(name)
        assert main(["user", "create", "ana", "--store", store]) == 0
        assert main(["user", "create", "bob", "--store", store]) == 0
        return store

    store = fresh(0)
    started = time.monotonic()
    process = start_import(ratings_csv, store)
    _, err = process.communicate(timeout=120)  # communicate closes the pipe
    assert process.returncode == 0, err.decode()
    whole_s = time.monotonic() - started
    assert state(store) == (IMAGES, IMAGES)

    rng = random.Random(1)
    outcomes = set()
    for trial in range(1, 6):
        store = fresh(trial)
        process = start_import(ratings_csv, store)
        time.sleep(rng.uniform(0.3, 1.0) * whole_s)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        process.stderr.close()
        ratings, images = state(store)
        assert (ratings, images) in ((0, 0), (IMAGES, IMAGES)), f"trial {trial}: {ratings} ratings, {images} images"
        outcomes.add(ratings)
        one = ratings_csv.parent / "one.csv"
        assert main(["user", "import", "bob", "--csv", str(one), "--store", store]) == 0
        assert main(["store", "check", "--store", store]) == 0, capsys.readouterr().out
    assert outcomes, "no trial ran"
