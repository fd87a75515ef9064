"""Two machines, one PostgreSQL store: each a process with its own home, caches, data and working
folder, sharing nothing but the store's URL and the Triton server's. Machine A imports alice's
ratings and trains her while machine B rates pool images for her as the app does; B then optimizes
for her while A imports more. Afterwards the store checks clean and holds every rating of both."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppo_client.store import UserStore

pytestmark = pytest.mark.integration
COMMAND_TIMEOUT_S = 120

RATER = """
import json, sys, time
from pathlib import Path
from ppo_client.store import PoolEntry, UserStore

store = UserStore()  # $PPO_STORE: the shared one
deadline = time.monotonic() + 60
while not store.has_user("alice"):
    if time.monotonic() > deadline:
        sys.exit("alice never appeared")
    time.sleep(0.05)
hashes = store.add_to_pool([PoolEntry(p.read_bytes(), "folder", p.name) for p in sorted(Path("pool").glob("*.png"))])
written, passes = {}, 0
while passes < 2 or not store.models("alice"):  # the app's rating clicks until A's model is saved
    if time.monotonic() > deadline:
        sys.exit("alice's model never appeared")
    for i, h in enumerate(hashes):
        written[h] = float(1 + (i + passes) % 10)
        store.rate("alice", h, written[h], source="app")
    passes += 1
print(json.dumps({"ratings": written, "passes": passes}))
"""
"""Machine B's rating loop, through the SDK as the app's rating endpoint calls it."""


@dataclass(frozen=True)
class Machine:
    root: Path
    env: dict[str, str]

    @classmethod
    def make(cls, root: Path, store_url: str) -> Machine:
        home = root / "home"
        for folder in (home, root / "work"):
            folder.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PPO_", "XDG_"))}
        env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local" / "share"),
                   XDG_CONFIG_HOME=str(home / ".config"), PPO_STORE=store_url, OMP_NUM_THREADS="1")
        return cls(root, env)

    @property
    def work(self) -> Path:
        return self.root / "work"

    def run(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, *args], cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, f"{' '.join(args[:4])} ... exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("-m", "ppo_client.cli", *args)


def pictures(folder: Path, seeds) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = folder / f"{seed}.png"
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ratings_csv(path: Path, images: list[Path]) -> dict[str, float]:
    values = {image.name: float(1 + int(image.stem) % 10) for image in images}
    path.write_text("image,rating\n" + "".join(f"{name},{value:g}\n" for name, value in values.items()))
    return values


def in_parallel(*work) -> list:
    """Each callable in its own thread (each drives its own machine's processes); their results."""
    results, errors = [None] * len(work), []

    def run(i, job):
        try:
            results[i] = job()
        except BaseException as exc:  # re-raised below, in the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=4 * COMMAND_TIMEOUT_S)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a machine did not finish"
    return results


def test_two_machines_share_one_postgres_store(triton_server, postgres_url, tmp_path):
    a = Machine.make(tmp_path / "a", postgres_url)
    b = Machine.make(tmp_path / "b", postgres_url)
    photos = pictures(a.work / "photos", range(24))
    first = ratings_csv(a.work / "photos" / "first.csv", photos[:16])
    later = ratings_csv(a.work / "photos" / "later.csv", photos[16:])
    pictures(b.work / "pool", range(1000, 1030))
    url = ["--url", triton_server.grpc_url]

    def machine_a() -> None:
        a.cli("user", "create", "alice")
        a.cli("user", "import", "alice", "--csv", "photos/first.csv")
        a.cli("user", "train", "alice", "--method", "knn", *url)
        a.cli("user", "import", "alice", "--csv", "photos/later.csv")

    def machine_b() -> dict:
        rated = json.loads(b.run("-c", RATER).stdout)
        b.cli("optimize", "--user", "alice", "--prompt", "a red cat", "--optimizer", "random", "--iterations", "1",
              "--n-prompts", "2", "--seeds", "1", "--steps", "2", "--subject-guard", "0", "--run-dir", "run", *url)
        return rated

    _, rated = in_parallel(machine_a, machine_b)

    assert rated["passes"] >= 2 and len(rated["ratings"]) == 30
    records = (b.work / "run" / "iterations.jsonl").read_text().splitlines()
    assert len(records) == 2 and json.loads(records[0])["prompts"]
    check = subprocess.run([sys.executable, "-m", "ppo_client.cli", "store", "check", "--store", postgres_url],
                           env=a.env, cwd=a.work, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert check.returncode == 0, check.stdout + check.stderr
    with UserStore(postgres_url) as store:
        values = {**first, **later}
        expected = {sha256(p): (values[p.name], f"csv:{'first' if p.name in first else 'later'}.csv") for p in photos}
        expected.update({h: (v, "app") for h, v in rated["ratings"].items()})
        assert {r.image_hash: (r.rating, r.source) for r in store.ratings("alice")} == expected
        model = store.latest_model("alice")
        assert model.method == "knn" and model.params["ratings"] >= len(first)
    for machine in (a, b):  # the store lives in PostgreSQL only: no machine made a local one
        assert not (Path(machine.env["XDG_DATA_HOME"]) / "ppo").exists()
