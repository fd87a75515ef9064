"""How many demo images per second does the served scorer (image encoder + preference head) score,
for one user and with 20 users' requests interleaved?

Exports the demo CLIP's scoring models, starts the embedded server, and scores the same procedural
64x64 demo scenes in requests of --batch images with --in-flight requests outstanding; each request
first embeds its images, then scores them with its user's head. Results go to
benchmarks/results/<device>/scoring_throughput.{json,md}.

    python benchmarks/scoring_throughput.py --images 2048 --batch 64 --in-flight 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from ppo_client.console import sigterm_as_exit
from ppo_client.head import PreferenceHead
from ppo_client.scoring import AsyncScoringClient
from ppo_demo.preset import demo_clip_dir
from ppo_demo.scenes import example
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.model_config import ServingOptions
from ppo_server.export.options import ExportOptions
from ppo_server.export.scoring import export_scoring


def heads(count: int, dim: int) -> list[PreferenceHead]:
    rng = np.random.default_rng(0)
    return [PreferenceHead.linear(rng.normal(size=dim), 5.5, user=f"u{i}") for i in range(count)]


async def score_all(url: str, chunks: list[np.ndarray], users: list[PreferenceHead], in_flight: int) -> float:
    """Seconds to score every chunk, chunk i under user i mod len(users)."""
    async with AsyncScoringClient(url) as client:
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int, chunk: np.ndarray):
            async with gate:
                embeddings = await client.embed(list(chunk))
                return await client.score(embeddings, users[i % len(users)])

        await one(0, chunks[0])  # warm-up
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks)))
        seconds = time.perf_counter() - started
    assert sum(len(r) for r in results) == sum(len(c) for c in chunks)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=str(Path(__file__).parent / "results" / "cpu"))
    args = parser.parse_args()

    repository = Path(tempfile.mkdtemp(prefix="ppo-bench-")) / "repo"
    # no txt2img_score (nothing generates here); requests in flight merge within a 2 ms window
    options = ExportOptions(component_serving=ServingOptions(max_queue_delay_us=2000))
    export_scoring(str(demo_clip_dir()), repository, options)
    scenes = np.stack([example(seed)[0] for seed in range(args.images)])
    chunks = [scenes[i : i + args.batch] for i in range(0, len(scenes), args.batch)]
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        dim = len(asyncio.run(_dim(server.grpc_url)))
        population = heads(args.users, dim)
        timings = {"1 user": [], f"{args.users} users interleaved": []}
        for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both alike
            timings["1 user"].append(asyncio.run(score_all(server.grpc_url, chunks, population[:1], args.in_flight)))
            timings[f"{args.users} users interleaved"].append(
                asyncio.run(score_all(server.grpc_url, chunks, population, args.in_flight))
            )
        stats = httpx.get(f"{server.http_url}/v2/models/stats").json()["model_stats"]
    rows = []
    for label, seconds in timings.items():
        best = min(seconds)
        rows.append({"variant": label, "seconds": seconds, "images_per_s": args.images / best,
                     "images_per_s_median": args.images / statistics.median(seconds)})
    ratio = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    executions = {s["name"]: {"inferences": s["inference_count"], "executions": s["execution_count"]} for s in stats}
    meta = {"images": args.images, "batch": args.batch, "in_flight": args.in_flight, "rounds": args.rounds,
            "machine": platform.processor() or platform.machine(), "embedding_dim": dim}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": rows, "interleaved_vs_single_throughput_ratio": ratio, "triton": executions}
    (out / "scoring_throughput.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"Demo CLIP image encoder + linear preference heads, {args.images} procedural 64x64 scenes, "
        f"{args.batch} images per request, {args.in_flight} requests in flight, best of {args.rounds}.",
        "",
        "| users | images/s (best) | images/s (median) |",
        "|---|---:|---:|",
        *(f"| {r['variant']} | {r['images_per_s']:.0f} | {r['images_per_s_median']:.0f} |" for r in rows),
        "",
        f"Interleaved / single-user throughput: {ratio:.2f}",
    ]
    (out / "scoring_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


async def _dim(url: str) -> np.ndarray:
    async with AsyncScoringClient(url) as client:
        return (await client.embed([example(0)[0]]))[0]


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
