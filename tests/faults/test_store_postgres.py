"""A PostgreSQL store shared by concurrent processes: nothing lost, duplicated or orphaned; and bad
store addresses through the CLI: one line, exit code 2, no password shown, nothing written."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppo_client.store import PoolEntry, RatingRow, UserStore

pytestmark = pytest.mark.faults
SPAWN = multiprocessing.get_context("spawn")
JOB_TIMEOUT_S = 240


def png_bytes(seed: int, side: int = 8) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def pictures(folder: Path, seeds) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = folder / f"{seed}.png"
        path.write_bytes(png_bytes(seed, 16))
        paths.append(path)
    return paths


def rating_of(seed: int) -> float:
    return float(1 + seed % 10)


def rows(paths: list[Path]) -> list[RatingRow]:
    return [RatingRow(path.name, path, rating_of(int(path.stem))) for path in paths]


def _job(target, barrier, results, index, args) -> None:
    try:
        results.put((index, None, target(barrier, *args)))
    except BaseException:  # reported to the test, which fails with the child's traceback
        results.put((index, traceback.format_exc(), None))


def run_together(jobs: list[tuple]) -> list:
    """Each ``(target, args)`` as ``target(barrier, *args)`` in its own spawned process, sharing one
    barrier so that they start (and may meet again) together; their return values, in order. A
    child's exception fails the test with the child's traceback; no child outlives the call."""
    barrier = SPAWN.Barrier(len(jobs), timeout=JOB_TIMEOUT_S)
    results = SPAWN.Queue()
    processes = [SPAWN.Process(target=_job, args=(target, barrier, results, i, args))
                 for i, (target, args) in enumerate(jobs)]
    try:
        for process in processes:
            process.start()
        found = {index: (error, value) for index, error, value in (results.get(timeout=JOB_TIMEOUT_S) for _ in jobs)}
        for process in processes:
            process.join(timeout=30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    errors = [error for error, _ in found.values() if error]
    assert not errors, "a process failed:\n" + "\n".join(errors)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return [found[i][1] for i in range(len(jobs))]


def hashes_of(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def image_rows(store: UserStore) -> tuple[int, int]:
    return store.read("SELECT COUNT(*), COUNT(DISTINCT hash) FROM images")[0]


def assert_clean(store: UserStore) -> None:
    found = store.check()
    assert (found.integrity, found.missing, found.damaged, found.unreferenced) == ((), (), (), ())
    assert found.clean


# --- many writers, one user ---

WRITERS, RATINGS_EACH, SHARED = 8, 200, 20
"""Each process rates ``RATINGS_EACH - SHARED`` pool images of its own and the ``SHARED`` images
every process rates (the same value for an image, whoever writes it)."""


def _rate(barrier, url: str, writer: int, own: list[str], shared: list[str]) -> int:
    with UserStore(url) as store:
        barrier.wait()
        order = own[: len(own) // 2] + shared + own[len(own) // 2 :]
        for h in order:
            store.rate("alice", h, rating_of(int(h, 16) % 1000), source=f"writer{writer}")
    return len(order)


def test_eight_processes_rating_one_user_lose_and_duplicate_nothing(postgres_url):
    with UserStore(postgres_url) as store:
        store.create_user("alice")
        pool = [PoolEntry(png_bytes(i), "gallery", f"image {i}") for i in range(WRITERS * RATINGS_EACH)]
        hashes = store.add_to_pool(pool)
    own_each = RATINGS_EACH - SHARED
    shared = hashes[-SHARED:]
    jobs = [(postgres_url, w, hashes[w * own_each : (w + 1) * own_each], shared) for w in range(WRITERS)]

    written = run_together([(_rate, job) for job in jobs])

    assert written == [RATINGS_EACH] * WRITERS
    with UserStore(postgres_url) as store:
        ratings = store.ratings("alice")
        expected = {h: rating_of(int(h, 16) % 1000) for h in hashes[: WRITERS * own_each] + shared}
        assert len(ratings) == len(expected) == WRITERS * own_each + SHARED
        assert {r.image_hash: r.rating for r in ratings} == expected
        for w, (_, _, own, _) in enumerate(jobs):
            assert {r.source for r in ratings if r.image_hash in set(own)} == {f"writer{w}"}
        assert {r.source for r in ratings if r.image_hash in set(shared)} <= {f"writer{w}" for w in range(WRITERS)}
        assert store.user("alice").ratings == len(expected)
        assert store.read("SELECT COUNT(*) FROM ratings")[0][0] == len(expected)
        assert image_rows(store) == (len(hashes), len(hashes))
        assert_clean(store)


# --- two users importing the same files ---


def _import(barrier, url: str, user: str, batches: list[list[Path]]) -> int:
    added = 0
    with UserStore(url) as store:
        for batch in batches:
            barrier.wait()
            added += store.import_ratings(user, rows(batch), source="csv:test")
    return added


def test_two_users_importing_the_same_images_at_once_keep_each_image_once(postgres_url, tmp_path):
    paths = pictures(tmp_path / "photos", range(150))
    batches = [paths[i : i + 50] for i in range(0, len(paths), 50)]
    with UserStore(postgres_url) as store:
        store.create_user("alice")
        store.create_user("bob")

    added = run_together([(_import, (postgres_url, "alice", batches)), (_import, (postgres_url, "bob", batches))])

    assert added == [150, 150]

    expected = {h: rating_of(int(p.stem)) for p, h in zip(paths, hashes_of(paths), strict=True)}
    with UserStore(postgres_url) as store:
        for user in ("alice", "bob"):
            assert {r.image_hash: r.rating for r in store.ratings(user)} == expected
        assert image_rows(store) == (150, 150)
        assert sorted(h for (h,) in store.read("SELECT hash FROM images")) == sorted(expected)
        assert all(store.image(h).data == p.read_bytes() for p, h in zip(paths, hashes_of(paths), strict=True))
        assert_clean(store)


# --- an import and a delete of another user who shares its images ---

ROUNDS = 4


def _import_rounds(barrier, url: str, rounds: list[list[Path]]) -> int:
    added = 0
    with UserStore(url) as store:
        for r, paths in enumerate(rounds):
            barrier.wait()
            added += store.import_ratings(f"alice{r}", rows(paths), source="csv:test")
    return added


def _delete_rounds(barrier, url: str, count: int) -> int:
    with UserStore(url) as store:
        for r in range(count):
            barrier.wait()
            store.delete_user(f"bob{r}")
    return count


def test_an_import_beside_a_delete_of_a_user_sharing_its_images_orphans_and_loses_nothing(postgres_url, tmp_path):
    """Each round: bob rated images S and B; alice imports S and A while bob is deleted. Whichever
    goes first, S and A remain (alice rated them), B goes (nobody else did), no rating lacks its image."""
    alice_rounds, kept, gone = [], set(), set()
    with UserStore(postgres_url) as store:
        for r in range(ROUNDS):
            base = 1000 * (r + 1)
            shared = pictures(tmp_path / f"round{r}", range(base, base + 40))
            only_bob = pictures(tmp_path / f"round{r}", range(base + 40, base + 60))
            only_alice = pictures(tmp_path / f"round{r}", range(base + 60, base + 80))
            store.create_user(f"bob{r}")
            store.create_user(f"alice{r}")
            store.import_ratings(f"bob{r}", rows(shared + only_bob), source="csv:bob")
            alice_rounds.append(shared + only_alice)
            kept.update(hashes_of(shared + only_alice))
            gone.update(hashes_of(only_bob))

    done = run_together([(_import_rounds, (postgres_url, alice_rounds)), (_delete_rounds, (postgres_url, ROUNDS))])

    assert done == [ROUNDS * 60, ROUNDS]
    with UserStore(postgres_url) as store:
        assert [u.name for u in store.users()] == [f"alice{r}" for r in range(ROUNDS)]
        for r, paths in enumerate(alice_rounds):
            assert {x.image_hash: x.rating for x in store.ratings(f"alice{r}")} == {
                h: rating_of(int(p.stem)) for p, h in zip(paths, hashes_of(paths), strict=True)}
        present = {h for (h,) in store.read("SELECT hash FROM images")}
        assert present == kept and not present & gone
        assert store.present(sorted(kept)) == kept, "every image a rating names has its bytes"
        assert store.read("SELECT COUNT(*) FROM ratings WHERE image_hash NOT IN (SELECT hash FROM images)") == [(0,)]
        assert_clean(store)


# --- bad store addresses through the CLI ---

WRONG_PASSWORD = "not-the-password-42"


def run_cli(store: str, via: str, folder: Path) -> subprocess.CompletedProcess:
    """``ppo-client user create bob`` (a write) against ``store``, given by ``--store`` or
    ``$PPO_STORE``, in an empty working folder with a home of its own."""
    cwd, home = folder / "cwd", folder / "home"
    cwd.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PPO_STORE"}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
               XDG_CONFIG_HOME=str(home / "config"))
    command = [sys.executable, "-m", "ppo_client.cli", "user", "create", "bob"]
    if via == "--store":
        command += ["--store", store]
    else:
        env["PPO_STORE"] = store
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bad_store(case: str, server) -> tuple[str, str | None]:
    """The address to give, and the database behind it whose contents must not change (None: none)."""
    secret, host = server.password, f"127.0.0.1:{server.port}"
    if case == "unreachable":
        return f"postgresql://ppo:{secret}@127.0.0.1:{closed_port()}/ppo", None
    if case == "malformed port":
        return f"postgresql://ppo:{secret}@127.0.0.1:port/ppo", None
    if case == "malformed scheme separator":  # one slash: a mistyped URL, not a file name
        return f"postgresql:/ppo:{secret}@{host}/ppo", None
    if case == "unsupported scheme":
        return f"mysql://ppo:{secret}@127.0.0.1:3306/ppo", None
    url = server.new_database()
    database = url.rsplit("/", 1)[1]
    if case == "wrong password":
        return url.replace(secret, WRONG_PASSWORD), database
    if case == "another application's database":
        server.sql("CREATE TABLE orders (id integer PRIMARY KEY, total numeric)", database)
        return url, database
    assert case == "newer schema"
    with UserStore(url) as made:
        made.create_user("alice")
    server.sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'", database)
    return url, database


def contents(server, database: str) -> dict[str, list[tuple]]:
    """Every public table's rows."""
    listed = server.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", database)
    names = [name for (name,) in listed]
    return {name: sorted(map(repr, server.sql(f"SELECT * FROM {name}", database))) for name in names}


@pytest.mark.parametrize("via", ["--store", "$PPO_STORE"], ids=["flag", "env"])
@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param(case, message, id=case.replace(" ", "-").replace("'", ""))
        for case, message in [
            ("unreachable", "cannot reach or use the database server"),
            ("wrong password", "refused the user or password"),
            ("another application's database", "holds tables (orders) but is not a user store"),
            ("newer schema", "has schema version 99; this program reads up to"),
            ("malformed port", "does not parse"),
            ("malformed scheme separator", "write postgresql://user@host:port/db"),
            ("unsupported scheme", "scheme 'mysql' is not supported"),
        ]
    ],
)
def test_a_bad_store_address_is_one_line_exit_2_and_writes_nothing(postgres_server, tmp_path, case, message, via):
    store, database = bad_store(case, postgres_server)
    before = contents(postgres_server, database) if database else None

    done = run_cli(store, via, tmp_path)

    shown = done.stdout + done.stderr
    assert done.returncode == 2, shown
    assert done.stderr.startswith("error: ") and len(done.stderr.removesuffix("\n").splitlines()) == 1, done.stderr
    assert message in done.stderr
    assert postgres_server.password not in shown and WRONG_PASSWORD not in shown
    assert list((tmp_path / "cwd").iterdir()) == [], "nothing made in the working folder"
    assert not (tmp_path / "home" / "data").exists(), "no default store made"
    if database:
        assert contents(postgres_server, database) == before, "nothing written to the database"
