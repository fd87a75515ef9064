"""What each serving setting buys: the shipped configuration against variants that undo one setting.

Exports the demo pipeline once; for each variant, rewrites the configs it names, starts the embedded
server, and measures the latency of a lone request and the throughput with N requests in flight,
plus how many UNet rows each UNet execution carried. Results go to
benchmarks/results/<device>/tuning.{json,md}.

    python benchmarks/tuning.py --steps 20 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ppo_client import contract
from ppo_client.console import sigterm_as_exit
from ppo_client.contract import ComponentParameters
from ppo_client.generation import GenerationRequest
from ppo_client.txt2img import AsyncTxt2ImgClient
from ppo_demo.preset import demo_pipeline_dir
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.model_config import read_config, write_config
from ppo_server.export.options import ExportOptions
from ppo_server.export.repository import export_pipeline

COMPONENTS = tuple(model.name for model in contract.COMPONENTS)
SHIPPED = ExportOptions()
"""What ``ppo-export`` writes by default: the configuration every variant departs from."""


@dataclass(frozen=True)
class Variant:
    label: str
    txt2img_instances: int = SHIPPED.txt2img_serving.instance_count
    txt2img_delay_us: int = SHIPPED.txt2img_serving.max_queue_delay_us
    component_batching: bool = True
    """False removes the components' dynamic batchers: every BLS call runs alone."""
    component_delay_us: int = SHIPPED.component_serving.max_queue_delay_us
    parameters: dict = field(default_factory=dict)
    """Component backend parameters (``ComponentParameters``)."""
    unet_instances: int = 1
    unet_parameters: dict = field(default_factory=dict)
    """The UNet's own parameters, over ``parameters``."""


VARIANTS = (
    Variant("shipped: 2 pipeline loops, 5 ms merge window, components batch what queued (no wait), onnxruntime threads = "
            "cores, spinning in the UNet"),
    Variant("1 pipeline loop", txt2img_instances=1),
    Variant("no merge window in txt2img (UNet batcher only)", txt2img_delay_us=0),
    Variant("4 loops, no merge window (UNet batcher only)", txt2img_instances=4, txt2img_delay_us=0),
    Variant("no component dynamic batching", component_batching=False),
    Variant("components wait 2 ms for more rows (the previous default)", component_delay_us=2000),
    Variant("onnxruntime 1 thread per component", parameters=ComponentParameters(intra_op_threads=1).to_parameters()),
    Variant("no onnxruntime threads spin (the previous default)", parameters=ComponentParameters(0).to_parameters()),
    Variant("onnxruntime threads spin in every component", parameters=ComponentParameters(0, spin=True).to_parameters()),
    Variant("2 UNet instances, 1 thread each", unet_instances=2, unet_parameters=ComponentParameters(1, spin=True).to_parameters()),
    Variant("2 UNet instances, threads = cores each", unet_instances=2),
)


def configure(repository: Path, variant: Variant, shipped: dict) -> None:
    for name, text in shipped.items():  # back to the exported configs first
        (repository / name / "config.pbtxt").write_text(text)
    config = read_config(repository / contract.TXT2IMG.name)
    config.instance_group[0].count = variant.txt2img_instances
    config.dynamic_batching.max_queue_delay_microseconds = variant.txt2img_delay_us
    write_config(config, repository / contract.TXT2IMG.name)
    for name in COMPONENTS:
        config = read_config(repository / name)
        if variant.component_batching:
            config.dynamic_batching.max_queue_delay_microseconds = variant.component_delay_us
        else:
            config.ClearField("dynamic_batching")
        own = variant.unet_parameters if name == contract.UNET.name else {}
        for key, value in {**variant.parameters, **own}.items():
            config.parameters[key].string_value = value
        if name == contract.UNET.name:
            config.instance_group[0].count = variant.unet_instances
        write_config(config, repository / name)


async def measure(url: str, steps: int, concurrency: int, rounds: int) -> dict:
    async with AsyncTxt2ImgClient(url) as client:
        request = GenerationRequest("a red circle on a blue background", steps=steps, height=64, width=64)
        await client.generate(request)  # warm-up
        lone = []
        for i in range(12):
            started = time.perf_counter()
            await client.generate(request, seed=i)
            lone.append(time.perf_counter() - started)
        await asyncio.gather(*(client.generate(request, seed=100 + i) for i in range(concurrency)))  # warm-up
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
    parser.add_argument("--only", default="", help="comma-separated variant numbers (0 = shipped) to run")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results" / "cpu"))
    args = parser.parse_args()
    try:
        variants = [VARIANTS[int(i)] for i in args.only.split(",")] if args.only else list(VARIANTS)
    except (ValueError, IndexError):
        parser.error(f"--only takes variant numbers 0-{len(VARIANTS) - 1}, got {args.only!r}")

    work = Path(tempfile.mkdtemp(prefix="ppo-bench-"))
    repository = work / "repo"
    export_pipeline(str(demo_pipeline_dir()), repository)
    shipped = {name: (repository / name / "config.pbtxt").read_text() for name in (contract.TXT2IMG.name, *COMPONENTS)}
    rows = []
    for variant in variants:
        configure(repository, variant, shipped)
        with EmbeddedTritonServer(ServerConfig(repository, log_file=work / "triton.log")) as server:
            result = asyncio.run(measure(server.grpc_url, args.steps, args.concurrency, args.rounds))
            unet = httpx.get(f"{server.http_url}/v2/models/unet/stats").json()["model_stats"][0]
            result["unet_rows_per_execution"] = unet["inference_count"] / max(unet["execution_count"], 1)
        rows.append({"variant": variant.label, **result})
        print(f"{variant.label}: {result}", flush=True)

    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": "demo", "steps": args.steps, "concurrency": args.concurrency, "rounds": args.rounds,
            "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    (out / "tuning.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    base = rows[0]
    lines = [
        f"Demo pipeline, 64x64, {args.steps} steps, guidance 7.5; {args.concurrency} requests in flight; "
        f"{os.cpu_count()} CPU cores. Change = this variant against the shipped configuration, same run.",
        "",
        "| configuration | lone request latency (s) | throughput (images/s) | throughput vs shipped | UNet rows per execution |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['lone_latency_s_median']:.3f} | {r['throughput_images_per_s']:.2f} "
            f"| {r['throughput_images_per_s'] / base['throughput_images_per_s']:.2f}x | {r['unet_rows_per_execution']:.1f} |"
        )
    (out / "tuning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
