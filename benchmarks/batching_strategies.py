"""Which way of sharing UNet batches between txt2img requests serves best on this machine?

Exports the tiny preset once, then for each txt2img scheduling variant rewrites its config, starts
the embedded server, and measures throughput with N requests in flight and the latency of a lone
request. Results go to benchmarks/results/<device>/batching_strategies.{json,md}.

    python benchmarks/batching_strategies.py --steps 20 --concurrency 16
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

from ppo_client.generation import GenerationRequest
from ppo_client.txt2img import AsyncTxt2ImgClient
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.model_config import read_config, write_config
from ppo_server.export.presets import build_tiny_pipeline
from ppo_server.export.repository import export_pipeline

# (label, txt2img instances, txt2img batching window in microseconds)
VARIANTS = (
    ("1 loop, requests merged into it", 1, 5000),
    ("2 loops, requests merged into them", 2, 5000),
    ("4 loops, no merging wait (UNet batcher only)", 4, 0),
    ("8 loops, no merging wait (UNet batcher only)", 8, 0),
)


def configure(repository: Path, instances: int, delay_us: int) -> None:
    config = read_config(repository / "txt2img")
    config.instance_group[0].count = instances
    config.dynamic_batching.max_queue_delay_microseconds = delay_us
    write_config(config, repository / "txt2img")


async def measure(url: str, steps: int, concurrency: int, rounds: int) -> dict:
    async with AsyncTxt2ImgClient(url) as client:
        request = GenerationRequest("a lighthouse at dusk", steps=steps, height=64, width=64)
        await client.generate(request)  # warm-up
        lone = []
        for i in range(5):
            started = time.perf_counter()
            await client.generate(request, seed=i)
            lone.append(time.perf_counter() - started)
        started = time.perf_counter()
        for r in range(rounds):
            await asyncio.gather(*(client.generate(request, seed=r * concurrency + i) for i in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "lone_latency_s_median": statistics.median(lone),
        "throughput_images_per_s": rounds * concurrency / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=str(Path(__file__).parent / "results" / "cpu"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ppo-bench-"))
    repository = work / "repo"
    export_pipeline(str(build_tiny_pipeline(work / "tiny")), repository)
    rows = []
    for label, instances, delay in VARIANTS:
        configure(repository, instances, delay)
        with EmbeddedTritonServer(ServerConfig(repository)) as server:
            result = asyncio.run(measure(server.grpc_url, args.steps, args.concurrency, args.rounds))
            unet = httpx.get(f"{server.http_url}/v2/models/unet/stats").json()["model_stats"][0]
            result["unet_rows_per_execution"] = unet["inference_count"] / max(unet["execution_count"], 1)
        rows.append({"variant": label, "instances": instances, "queue_delay_us": delay, **result})
        print(f"{label}: {result}")

    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"steps": args.steps, "concurrency": args.concurrency, "rounds": args.rounds, "machine": platform.processor() or platform.machine()}
    (out / "batching_strategies.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"Tiny pipeline, 64x64, {args.steps} steps, guidance on; {args.concurrency} requests in flight.",
        "",
        "| txt2img scheduling | lone request latency (s) | throughput (images/s) | UNet rows per execution |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['lone_latency_s_median']:.3f} | {r['throughput_images_per_s']:.1f} "
            f"| {r['unet_rows_per_execution']:.1f} |"
        )
    (out / "batching_strategies.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
