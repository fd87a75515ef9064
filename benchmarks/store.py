"""The user store's operations per second, SQLite file vs PostgreSQL, at 1, 8 and 32 concurrent
clients (processes, each with its own ``UserStore``, as separate app workers or machines would be):

1. ``rate``: single ratings written, each its own transaction under the store's write lock (the
   app's rating click); every client rates images of its own, so afterwards the writer's ratings
   must be exactly the writes, value for value;
2. ``training_read``: a user's ratings and their cached embeddings read for training
   (``ratings()`` then ``embeddings(hashes, encoder)``: 200 rated images, 512-d vectors);
3. ``latest_model``: the model a run scores with (``latest_model``), from a user who trained 5
   times (linear 512-d heads with their posterior covariance, as ``bayes`` keeps them).

A fixed number of operations per row, split evenly over the clients, which all start at one
moment; ops/s = operations / (last client's end - start). Each database and concurrency gets a
fresh store. PostgreSQL runs on loopback, started here as ``tests/postgres.py`` starts it but with
its default durability (fsync on), like SQLite's (rollback journal, synchronous FULL); both on the
same file system. Run it alone: other busy processes on the cores change every number.

    python benchmarks/store.py                          # writes benchmarks/results/store/store.{json,md}
    python benchmarks/store.py --quick --results DIR    # a few operations: checks that every cell runs
    python benchmarks/store.py --report-only             # store.md again from store.json
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import multiprocessing
import os
import platform
import pwd
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppo_client.console import sigterm_as_exit

RESULTS = Path(__file__).parent / "results" / "store"
CONCURRENCY = (1, 8, 32)
OPERATIONS = ("rate", "training_read", "latest_model")
DATABASES = ("sqlite", "postgresql")
ENCODER = "bench-encoder-512"
DIM = 512
TRAINING_IMAGES = 200
MODELS = 5
START_DELAY_S = 0.05
"""The clients start together this long after the last has opened the store."""
TIMEOUT_S = 1800
FULL = {"rate": 3200, "training_read": 640, "latest_model": 640}
QUICK = {"rate": 64, "training_read": 32, "latest_model": 32}


# --- a PostgreSQL server of our own (the start logic of tests/postgres.py, trimmed) ---


class LocalPostgres:
    """``initdb`` and ``pg_ctl`` in a temporary folder on a free loopback port, trust authentication,
    as the ``postgres`` user where this runs as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        initdb = found[-1] if found else shutil.which("initdb")
        if not initdb:
            sys.exit("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
        self.bin = Path(initdb).parent
        self.folder = Path(tempfile.mkdtemp(prefix="ppo-bench-pg-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = "postgres" if _has_user("postgres") else "nobody"
            shutil.chown(self.folder, owner)
            os.chmod(self.folder, 0o700)
            self._as = ["runuser", "-u", owner, "--"]

    def _run(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self._as, *args], capture_output=True, text=True, check=check, timeout=120)

    def __enter__(self) -> LocalPostgres:
        data = str(self.folder / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-A", "trust", "-U", "ppo")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        return self

    def __exit__(self, *exc_info) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def sql(self, statement: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="ppo", dbname="postgres", autocommit=True) as db:
            cursor = db.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        name = "bench_" + uuid.uuid4().hex[:10]
        self.sql(f"CREATE DATABASE {name}")
        return f"postgresql://ppo@127.0.0.1:{self.port}/{name}"


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --- the clients ---


@dataclass(frozen=True)
class Task:
    operation: str
    location: str
    items: tuple
    """``rate``: (image hash, rating) pairs; the reads: one entry per operation."""
    expected: object
    """What a read must return: the number of ratings (``training_read``), the model's id (``latest_model``)."""


def _one(store, task: Task, item) -> None:
    if task.operation == "rate":
        store.rate("writer", item[0], item[1], source="bench")
    elif task.operation == "training_read":
        ratings = store.ratings("reader")
        vectors = store.embeddings([r.image_hash for r in ratings], ENCODER)
        shapes = {v.shape for v in vectors.values()}
        if len(ratings) != task.expected or len(vectors) != task.expected or shapes != {(DIM,)}:
            raise AssertionError(f"read {len(ratings)} ratings and {len(vectors)} embeddings, not {task.expected}")
    else:
        model = store.latest_model("reader")
        if model.id != task.expected or model.covariance is None:
            raise AssertionError(f"read model {model.id}, not {task.expected}")


def run_task(store, task: Task, start_at: float) -> dict:
    time.sleep(max(0.0, start_at - time.monotonic()))
    latencies, errors, first_error = [], 0, ""
    for item in task.items:
        began = time.monotonic()
        try:
            _one(store, task, item)
        except Exception as exc:  # counted, and the first one kept for the report
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        latencies.append(time.monotonic() - began)
    return {"ops": len(task.items), "errors": errors, "first_error": first_error, "end": time.monotonic(),
            "latencies": latencies}


def client(orders, ready, results) -> None:
    """A client process. For each task it is sent: open the store (and a pooled connection), say it
    is ready, wait for the start time, run the task; it stops when sent None."""
    from ppo_client.store import UserStore  # imported before any clock runs

    while (task := orders.get()) is not None:
        try:
            store = UserStore(task.location)
            store.has_user("reader")
            opened = ""
        except Exception:  # reported as a failed cell, not a hung benchmark
            store, opened = None, traceback.format_exc()[-600:]
        ready.put(True)
        start_at = orders.get()
        if store is None:
            results.put({"ops": len(task.items), "errors": len(task.items), "first_error": opened,
                         "end": time.monotonic(), "latencies": []})
        else:
            results.put(run_task(store, task, start_at))


class Clients:
    """``count`` client processes, spawned once and reused for every cell."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.orders = [context.Queue() for _ in range(count)]
        self.ready, self.results = context.Queue(), context.Queue()
        self.processes = [context.Process(target=client, args=(q, self.ready, self.results), daemon=True)
                          for q in self.orders]
        for process in self.processes:
            process.start()

    def run(self, operation: str, location: str, items: list, expected, clients: int) -> dict:
        """The operations in ``items``, split over ``clients`` clients that start together once all
        have opened the store."""
        for i in range(clients):
            self.orders[i].put(Task(operation, location, tuple(items[i::clients]), expected))
        for _ in range(clients):
            self.ready.get(timeout=TIMEOUT_S)
        start_at = time.monotonic() + START_DELAY_S
        for i in range(clients):
            self.orders[i].put(start_at)
        done = [self.results.get(timeout=TIMEOUT_S) for _ in range(clients)]
        ops = sum(d["ops"] for d in done)
        seconds = max(d["end"] for d in done) - start_at
        latencies = sorted(x for d in done for x in d["latencies"])
        return {
            "operations": ops, "seconds": round(seconds, 4), "ops_per_s": round(ops / seconds, 2),
            "p50_ms": round(1000 * statistics.median(latencies), 3) if latencies else None,
            "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
            "errors": sum(d["errors"] for d in done),
            "first_error": next((d["first_error"] for d in done if d["first_error"]), ""),
        }

    def close(self) -> None:
        for queue in self.orders:
            queue.put(None)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()


# --- one store per database and concurrency ---


def png_bytes(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Prepared:
    writes: list[tuple[str, float]]
    """(image hash, rating) for every ``rate`` operation; no image twice."""
    model_id: int


def prepare(location: str, images: list[bytes], writes: int) -> Prepared:
    """A writer with nothing rated; a reader with ``TRAINING_IMAGES`` ratings, their embeddings and
    ``MODELS`` trained models; the pool holding every image either rates."""
    from ppo_client.head import PreferenceHead
    from ppo_client.store import PoolEntry, UserStore

    rng = np.random.default_rng(0)
    with UserStore(location) as store:
        store.create_user("writer")
        store.create_user("reader")
        hashes = store.add_to_pool([PoolEntry(data, "gallery", f"image {i}") for i, data in enumerate(images)])
        read = hashes[writes:]
        for i, h in enumerate(read):
            store.rate("reader", h, float(1 + i % 10), source="bench")
        store.put_embeddings({h: rng.normal(size=DIM).astype(np.float32) for h in read}, ENCODER)
        for _ in range(MODELS):
            head = PreferenceHead.linear(rng.normal(size=DIM), 5.5, method="bayes")
            model_id = store.save_model("reader", "bayes", ENCODER, head, {"ratings": len(read)}, {},
                                        covariance=np.eye(DIM + 1, dtype=np.float32) * 0.1)
    return Prepared([(h, float(1 + i % 10)) for i, h in enumerate(hashes[:writes])], model_id)


def lost_writes(location: str, writes: list[tuple[str, float]]) -> dict:
    """The writer's ratings against the writes: lost, extra or changed values."""
    from ppo_client.store import UserStore

    with UserStore(location) as store:
        found = {r.image_hash: r.rating for r in store.ratings("writer")}
        rows = store.read("SELECT COUNT(*) FROM ratings WHERE user_id = :u", {"u": store.user_id("writer")})[0][0]
    expected = dict(writes)
    return {"writes": len(writes), "ratings_found": int(rows), "lost": len(set(expected) - set(found)),
            "extra": int(rows) - len(set(found) & set(expected)),
            "wrong_value": sum(1 for h, v in expected.items() if h in found and found[h] != v)}


def measure(database: str, location: str, clients: Clients, concurrency: int, counts: dict,
            images: list[bytes]) -> dict:
    prepared = prepare(location, images, counts["rate"])
    cells = {}
    for operation in OPERATIONS:
        if operation == "rate":
            items, expected = prepared.writes, None
        else:
            items = [None] * counts[operation]
            expected = TRAINING_IMAGES if operation == "training_read" else prepared.model_id
        cell = clients.run(operation, location, items, expected, concurrency)
        if operation == "rate":
            cell.update(lost_writes(location, prepared.writes))
        cells[operation] = cell
        print(f"  {database:10s} {concurrency:2d} clients  {operation:13s} {cell['ops_per_s']:9.1f} ops/s  "
              f"p50 {cell['p50_ms']} ms  errors {cell['errors']}"
              + (f"  lost {cell['lost']}" if "lost" in cell else ""),
              flush=True)
    return cells


# --- the report ---


def machine() -> dict:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": len(os.sched_getaffinity(0)), "cpu_model": model or platform.processor() or platform.machine(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def versions(postgres: LocalPostgres) -> dict:
    import psycopg
    import sqlalchemy

    return {"sqlite": sqlite3.sqlite_version, "postgresql": postgres.sql("SHOW server_version")[0][0],
            "sqlalchemy": sqlalchemy.__version__, "psycopg": psycopg.__version__}


def report(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    lines = [
        "# User store: operations per second, SQLite vs PostgreSQL",
        "",
        f"Measured {results['date']} on {m['cores']} cores ({m['cpu_model']}), {m['system']}, Python {m['python']}; "
        f"SQLite {v['sqlite']} (a file), PostgreSQL {v['postgresql']} on loopback (fsync on), SQLAlchemy "
        f"{v['sqlalchemy']}, psycopg {v['psycopg']}. Load average (1 min) {results['load_before']:.2f} at the start, "
        f"{results['load_after']:.2f} at the end (the benchmark's own {max(results['concurrency'])} clients included).",
        "",
        "Clients are processes with a `UserStore` each, all starting at one moment; every row is "
        f"{results['counts']['rate']} ratings written (`rate`, one transaction each), "
        f"{results['counts']['training_read']} training reads (`ratings()` + `embeddings()` of {TRAINING_IMAGES} "
        f"images, {DIM}-d) or {results['counts']['latest_model']} model reads (`latest_model`, a user with "
        f"{MODELS} models of {DIM}-d with covariance), split evenly over the clients.",
        "",
        "| operation | clients | SQLite ops/s | PostgreSQL ops/s | PostgreSQL / SQLite | p50 ms SQLite / PostgreSQL "
        "| errors | lost writes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for operation in OPERATIONS:
        for concurrency in results["concurrency"]:
            s = results["cells"]["sqlite"][str(concurrency)][operation]
            p = results["cells"]["postgresql"][str(concurrency)][operation]
            lost = f"{s['lost']} / {p['lost']}" if "lost" in s else "-"
            lines.append(f"| {operation} | {concurrency} | {s['ops_per_s']:.1f} | {p['ops_per_s']:.1f} | "
                         f"{p['ops_per_s'] / s['ops_per_s']:.2f}x | {s['p50_ms']:.2f} / {p['p50_ms']:.2f} | "
                         f"{s['errors'] + p['errors']} | {lost} |")
    rated = [results["cells"][d][str(c)]["rate"] for d in DATABASES for c in results["concurrency"]]
    lines += [
        "",
        f"Every rating written was found with its value: "
        f"{'yes' if all(r['lost'] == r['extra'] == r['wrong_value'] == 0 for r in rated) else 'NO'} "
        f"(ratings found = writes in every `rate` row); errors in all: {results['errors']}.",
        "",
        "Every write on either database holds the store's one write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a "
        "transaction-scoped advisory lock), so more writing clients add waiting, not writes per second. "
        f"`latest_model` reads the newest of the user's {MODELS} models alone (a {DIM}-d head and its "
        f"{DIM + 1}x{DIM + 1} float32 covariance, about {(DIM + 1) ** 2 * 4 / 1e6:.1f} MB). On PostgreSQL every "
        "call also crosses the loopback network and its reads run in a repeatable-read snapshot.",
        "",
        f"Reproduce: `{results['command']}` (alone on the machine).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few operations per row: checks that every cell runs "
                                                              "(numbers mean nothing); needs --results")
    parser.add_argument("--results", default=None, help=f"output folder (default {RESULTS})")
    parser.add_argument("--report-only", action="store_true", help="rewrite store.md from the folder's store.json")
    args = parser.parse_args()
    if args.report_only:
        out = Path(args.results or RESULTS)
        (out / "store.md").write_text(report(json.loads((out / "store.json").read_text())))
        return
    if args.quick and not args.results:
        sys.exit("--quick needs --results DIR (its numbers must not replace the committed ones)")
    counts = QUICK if args.quick else FULL
    out = Path(args.results or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ppo-bench-store-"))
    images = [png_bytes(seed) for seed in range(counts["rate"] + TRAINING_IMAGES)]
    command = "python benchmarks/store.py" + (" --quick --results DIR" if args.quick else "")
    results: dict = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
                     "command": command, "quick": args.quick, "concurrency": list(CONCURRENCY), "counts": counts,
                     "operations": list(OPERATIONS), "training_images": TRAINING_IMAGES, "dim": DIM, "models": MODELS,
                     "load_before": os.getloadavg()[0], "cells": {d: {} for d in DATABASES}}
    clients = Clients(max(CONCURRENCY))
    try:
        with LocalPostgres() as postgres:
            results["versions"] = versions(postgres)
            for concurrency in CONCURRENCY:
                for database in DATABASES:
                    if database == "sqlite":
                        location = str(work / f"store-{concurrency}.sqlite")
                    else:
                        location = postgres.new_database()
                    results["cells"][database][str(concurrency)] = measure(database, location, clients, concurrency,
                                                                           counts, images)
    finally:
        clients.close()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    cells = [c for d in DATABASES for by_op in results["cells"][d].values() for c in by_op.values()]
    results["errors"] = sum(c["errors"] for c in cells)
    results["lost_writes"] = sum(c.get("lost", 0) + c.get("extra", 0) + c.get("wrong_value", 0) for c in cells)
    (out / "store.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (out / "store.md").write_text(text)
    print(text)
    if results["errors"] or results["lost_writes"]:
        sys.exit(f"{results['errors']} errors, {results['lost_writes']} writes lost or changed: "
                 f"see {out / 'store.json'}")


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
