"""The serving benchmark (``make bench``): served vs. in-process, per-model latency, scale-out.

With the demo models (64x64, 20 steps, guidance 7.5 unless told otherwise), in one run:

1. the baseline: diffusers' ``StableDiffusionPipeline`` in this process with the same weights,
   sequential batch 1 and its best batch size;
2. one embedded Triton server: per-model latency (text encoder, one UNet step with guidance,
   VAE decoder, image encoder) and end-to-end ``txt2img`` / ``txt2img_score`` latency and throughput
   over a concurrency sweep, perf_analyzer-style (p50/p90/p95/p99, images/s), with Triton's own
   queue vs. compute time per request;
3. scale-out: one server pinned to one core vs. two servers pinned to one core each, same total
   concurrency;
4. the optimization loop's overhead: the share of an iteration's wall time outside the server.

Results: ``benchmarks/results/<device>/serving.{json,md,svg}`` and ``summary.json`` with the ratios.

    python benchmarks/serving.py                      # everything, starts and stops its own servers
    python benchmarks/serving.py --url host:8001      # sweep an existing server (checks its models)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from ppo_client import contract
from ppo_client.contract import TensorSpec
from ppo_client.generation import GenerationRequest
from ppo_client.plots import line_chart
from ppo_client.triton import Endpoint, input_tensor, txt2img_inputs

RESULTS = Path(__file__).parent / "results"
PROMPT = "a red circle on a blue background"
E2E_MODELS = (contract.TXT2IMG.name, contract.TXT2IMG_SCORE.name)


def device_name() -> str:
    return "cpu"


# --- the in-process baseline ---


def inprocess(pipeline_dir: Path, steps: int, images: int, batches: tuple[int, ...], *, side: int = 64,
              device: str = "cpu", scheduler: str = "") -> dict:
    """diffusers in this process: fp32 on the CPU, fp16 with PyTorch's SDPA attention on a GPU."""
    import torch
    from diffusers import DiffusionPipeline

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = DiffusionPipeline.from_pretrained(pipeline_dir, dtype=dtype)  # SD 1.x/2.x or SDXL, as the folder says
    if scheduler:
        from ppo_server.backends.schedulers import build_scheduler

        pipe.scheduler = build_scheduler(scheduler, pipe.scheduler.config)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    def run(batch: int, seed: int) -> float:
        started = time.perf_counter()
        pipe([PROMPT] * batch, num_inference_steps=steps, guidance_scale=7.5, height=side, width=side,
             generator=[torch.Generator().manual_seed(seed + i) for i in range(batch)], output_type="np")
        return time.perf_counter() - started  # output_type="np" waits for the GPU

    run(1, 0)  # warm-up
    single = [run(1, i) for i in range(images)]
    by_batch = {}
    for batch in batches:
        seconds = [run(batch, 100 + r) for r in range(max(1, images // batch))]
        by_batch[batch] = batch / statistics.median(seconds)
    best = max(by_batch, key=by_batch.get)
    return {
        "batch1_latency_s_median": statistics.median(single),
        "batch1_latency_s_p90": float(np.percentile(single, 90)),
        "sequential_images_per_s": 1 / statistics.mean(single),
        "images_per_s_by_batch": {str(b): v for b, v in by_batch.items()},
        "best_batch": best,
        "best_batch_images_per_s": by_batch[best],
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
    }


# --- load generation against a server ---


@dataclass(frozen=True)
class Shapes:
    """Tensor sizes of a pipeline (and CLIP), read from their saved configs."""

    sequence: int
    hidden: int
    """What the UNet's cross-attention takes (SDXL: both text encoders' states side by side)."""
    latent_channels: int
    latent_side: int
    embedding_dim: int
    text_embeds: int = 0
    """SDXL: the pooled text embedding's size (0: an SD 1.x/2.x pipeline)."""

    @classmethod
    def of_pipeline(cls, pipeline: Path, clip: Path | None = None) -> Shapes:
        unet = json.loads((pipeline / "unet" / "config.json").read_text())
        text = json.loads((pipeline / "text_encoder" / "config.json").read_text())
        second = pipeline / "text_encoder_2" / "config.json"
        text_embeds = int(json.loads(second.read_text())["projection_dim"]) if second.exists() else 0
        embedding = json.loads((clip / "config.json").read_text())["projection_dim"] if clip else 0
        return cls(int(text["max_position_embeddings"]), int(unet["cross_attention_dim"]), int(unet["in_channels"]),
                   int(unet["sample_size"]), int(embedding), text_embeds)

    def unet_inputs(self, rows: int, latent_side: int, rng) -> list[tuple[TensorSpec, np.ndarray]]:
        """One UNet call's inputs for ``rows`` rows (the conditioning SDXL adds included)."""
        unet = contract.UNET_XL
        inputs = [
            (unet.SAMPLE, rng.normal(size=(rows, self.latent_channels, latent_side, latent_side))),
            (unet.TIMESTEP, np.full((rows, 1), 500.0)),
            (unet.ENCODER_HIDDEN_STATES, rng.normal(size=(rows, self.sequence, self.hidden))),
        ]
        if self.text_embeds:
            side = 8 * latent_side
            inputs += [(unet.TEXT_EMBEDS, rng.normal(size=(rows, self.text_embeds))),
                       (unet.TIME_IDS, np.array([[side, side, 0, 0, side, side]] * rows))]
        return inputs


def _requests(model: str, grpc, head_bytes: bytes | None, steps: int, shapes: Shapes, side: int = 64):
    """A function making one request's inputs for ``model`` (each call a fresh seed)."""
    counter = iter(range(10**9))
    rng = np.random.default_rng(0)

    if model in E2E_MODELS:
        def make():
            rows = [GenerationRequest(PROMPT, seed=next(counter), steps=steps, height=side, width=side)]
            inputs = txt2img_inputs(grpc, rows)
            if model == contract.TXT2IMG_SCORE.name:
                inputs.append(input_tensor(grpc, contract.TXT2IMG_SCORE.USER_MODEL, np.array([[head_bytes]], dtype=object)))
            return inputs
        return make
    latent = (shapes.latent_channels, shapes.latent_side, shapes.latent_side)
    fixed = {
        contract.TEXT_ENCODER.name: lambda: [
            input_tensor(grpc, contract.TEXT_ENCODER.INPUT_IDS, rng.integers(0, 1000, (1, shapes.sequence)))
        ],
        contract.UNET.name: lambda: [  # one denoising step of one image with guidance: 2 rows
            input_tensor(grpc, spec, array) for spec, array in shapes.unet_inputs(2, shapes.latent_side, rng)
        ],
        contract.VAE_DECODER.name: lambda: [input_tensor(grpc, contract.VAE_DECODER.LATENT, rng.normal(size=(1, *latent)))],
        contract.IMAGE_ENCODER.name: lambda: [
            input_tensor(grpc, contract.IMAGE_ENCODER.IMAGE, rng.integers(0, 256, (1, 64, 64, 3)))
        ],
    }
    return fixed[model]


def _stats(http_url: str, model: str) -> dict:
    stats = httpx.get(f"{http_url}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    s = stats["inference_stats"]
    return {"count": int(s["success"]["count"]), "queue_ns": int(s["queue"]["ns"]),
            "compute_ns": sum(int(s[k]["ns"]) for k in ("compute_input", "compute_infer", "compute_output")),
            "executions": int(stats["execution_count"])}


async def sweep_level(urls: list[str], model: str, make, concurrency: int, requests: int) -> dict:
    import tritonclient.grpc.aio as grpcaio

    clients = [grpcaio.InferenceServerClient(Endpoint.parse(u).address) for u in urls]
    latencies: list[float] = []
    queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(index: int):
        client = clients[index % len(clients)]  # each worker keeps to one server: equal shares
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            await client.infer(model, make())
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    for client in clients:
        await client.close()
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency, "requests": requests, "throughput_per_s": requests / seconds,
        **{f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 95, 99)},
    }


def sweep(server, model: str, make, levels: list[int], per_level: int) -> list[dict]:
    asyncio.run(sweep_level([server.grpc_url], model, make, 1, 2))  # warm-up
    rows = []
    for c in levels:
        before = _stats(server.http_url, model)
        row = asyncio.run(sweep_level([server.grpc_url], model, make, c, max(per_level, 2 * c)))
        after = _stats(server.http_url, model)
        count = max(after["count"] - before["count"], 1)
        row["server_queue_ms"] = (after["queue_ns"] - before["queue_ns"]) / count / 1e6
        row["server_compute_ms"] = (after["compute_ns"] - before["compute_ns"]) / count / 1e6
        row["rows_per_execution"] = count / max(after["executions"] - before["executions"], 1)
        rows.append(row)
        print(f"  {model:<14} c={c:<3} {row['throughput_per_s']:7.1f}/s  p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms", flush=True)
    return rows


def missing_models(http_url: str, needed) -> list[str]:
    index = httpx.post(f"{http_url}/v2/repository/index", json={"ready": True}, timeout=10).json()
    ready = {m["name"] for m in index}
    return [m for m in needed if m not in ready]


def optimization_overhead(url: str, head, steps: int) -> dict:
    """A short run of the random optimizer (no LLM): share of wall time spent outside the server."""
    from ppo_client.optimize.config import RunConfig
    from ppo_client.optimize.folder import RunInfo, create_run
    from ppo_client.optimize.loop import run_iterations
    from ppo_client.optimize.proposers import RandomProposer
    from ppo_client.optimize.renderer import Renderer
    from ppo_client.scoring import ScoringClient

    with ScoringClient(url) as client, tempfile.TemporaryDirectory() as folder:
        config = RunConfig("bench", PROMPT, iterations=3, n_prompts=4, seeds=2, optimizer="random", steps=steps)
        state = create_run(Path(folder) / "run", config, head, RunInfo(), (np.zeros((0, head.dim), np.float32), np.zeros(0)))
        renderer = Renderer(client, config, head)
        started = time.perf_counter()
        try:
            run_iterations(state, RandomProposer(), renderer, lambda prompts: list(prompts))
        finally:
            renderer.close()
            state.close()
        wall = time.perf_counter() - started
        server = sum(r.timings.server_s for r in state.records)
    return {"iterations": len(state.records), "wall_s": wall, "server_s": server, "outside_server_share": (wall - server) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--per-level", type=int, default=16, help="requests per concurrency level (at least 2x the level)")
    parser.add_argument("--baseline-images", type=int, default=8)
    parser.add_argument("--url", help="sweep this server's models instead (gRPC host:port; no baseline, no scale-out)")
    parser.add_argument("--http-url", help="with --url: the same server's HTTP address, for its statistics")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    import tritonclient.grpc as grpc

    from ppo_client.piaa.head import PreferenceHead
    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
    from ppo_server.export.presets import demo_clip_dir, demo_pipeline_dir
    from ppo_server.export.repository import export_pipeline

    out = Path(args.results or RESULTS / device_name())
    out.mkdir(parents=True, exist_ok=True)
    shapes = Shapes.of_pipeline(demo_pipeline_dir(), demo_clip_dir())
    head = PreferenceHead.linear(np.random.default_rng(0).normal(size=shapes.embedding_dim), 5.0)
    components = ("text_encoder", "unet", "vae_decoder", "image_encoder")
    if args.url:
        if not args.http_url:
            sys.exit("--url needs --http-url too (the same server's HTTP address, for its statistics)")
        server = argparse.Namespace(grpc_url=args.url, http_url=args.http_url.rstrip("/"))
        missing = missing_models(server.http_url, [*components, *E2E_MODELS])
        if missing:
            sys.exit(f"the server at {server.http_url} does not serve {', '.join(missing)}; "
                     "export the demo models with `ppo-export --preset demo` and serve that repository")
        sweeps = {m: sweep(server, m, _requests(m, grpc, head.to_bytes(), args.steps, shapes), levels, args.per_level)
                  for m in (*components, *E2E_MODELS)}
        (out / "serving_external.json").write_text(json.dumps({"server": args.url, "models": sweeps}, indent=2) + "\n")
        print(f"wrote {out / 'serving_external.json'}")
        return

    repository = Path(tempfile.mkdtemp(prefix="ppo-bench-")) / "repo"
    print("exporting the demo models ...", flush=True)
    export_pipeline(str(demo_pipeline_dir()), repository, clip=str(demo_clip_dir()))

    print("in-process baseline ...", flush=True)
    baseline = inprocess(demo_pipeline_dir(), args.steps, args.baseline_images, (2, 4, 8, 16))
    print(f"  batch-1 {baseline['batch1_latency_s_median'] * 1000:.0f} ms, sequential {baseline['sequential_images_per_s']:.2f}/s, "
          f"best batch {baseline['best_batch']}: {baseline['best_batch_images_per_s']:.2f}/s", flush=True)

    results: dict = {"baseline": baseline, "models": {}}
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        missing = missing_models(server.http_url, [*components, *E2E_MODELS])
        assert not missing, missing
        for model in components:
            results["models"][model] = sweep(server, model, _requests(model, grpc, None, args.steps, shapes), levels, args.per_level)
        for model in E2E_MODELS:
            results["models"][model] = sweep(server, model, _requests(model, grpc, head.to_bytes(), args.steps, shapes), levels, args.per_level)
        results["optimization_loop"] = optimization_overhead(server.grpc_url, head, args.steps)

    print("scale-out: one server on one core vs two servers on one core each ...", flush=True)
    cores = sorted(os.sched_getaffinity(0))[:2]
    total = max(levels[-1] // 2, 4)
    make = _requests("txt2img", grpc, None, args.steps, shapes)
    with EmbeddedTritonServer(ServerConfig(repository, cpus=(cores[0],))) as one:
        asyncio.run(sweep_level([one.grpc_url], "txt2img", make, 2, 4))
        single = asyncio.run(sweep_level([one.grpc_url], "txt2img", make, total, 4 * total))
    with EmbeddedTritonServer(ServerConfig(repository, cpus=(cores[0],))) as a, \
            EmbeddedTritonServer(ServerConfig(repository, cpus=(cores[-1],))) as b:
        asyncio.run(sweep_level([a.grpc_url, b.grpc_url], "txt2img", make, 4, 8))
        double = asyncio.run(sweep_level([a.grpc_url, b.grpc_url], "txt2img", make, total, 4 * total))
    results["scale_out"] = {"cores": cores, "concurrency": total, "one_server": single, "two_servers": double}

    e2e = results["models"]["txt2img"]
    best = max(e2e, key=lambda r: r["throughput_per_s"])
    batch1 = next(r for r in e2e if r["concurrency"] == 1)
    summary = {
        "device": device_name(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "steps": args.steps,
        "served_best_images_per_s": best["throughput_per_s"],
        "served_best_concurrency": best["concurrency"],
        "inprocess_sequential_images_per_s": baseline["sequential_images_per_s"],
        "served_vs_inprocess_throughput_ratio": best["throughput_per_s"] / baseline["sequential_images_per_s"],
        "served_vs_inprocess_best_batch_throughput_ratio": best["throughput_per_s"] / baseline["best_batch_images_per_s"],
        "served_batch1_latency_s": batch1["p50_ms"] / 1000,
        "inprocess_batch1_latency_s": baseline["batch1_latency_s_median"],
        "served_vs_inprocess_batch1_latency_ratio": batch1["p50_ms"] / 1000 / baseline["batch1_latency_s_median"],
        "two_servers_vs_one_throughput_ratio": double["throughput_per_s"] / single["throughput_per_s"],
        "optimization_loop_outside_server_share": results["optimization_loop"]["outside_server_share"],
    }
    (out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    chart = line_chart({m: [r["throughput_per_s"] for r in results["models"][m]] for m in E2E_MODELS},
                       x_label="concurrency", x_values=levels)
    (out / "serving.svg").write_text(chart)
    lines = [f"Demo models, 64x64, {args.steps} steps, guidance 7.5; {os.cpu_count()} CPU cores.", "",
             "| model | concurrency | per s | p50 ms | p90 ms | p95 ms | p99 ms | queue ms | compute ms | rows/execution |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, rows in results["models"].items():
        for r in rows:
            lines.append(f"| {model} | {r['concurrency']} | {r['throughput_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
                         f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_queue_ms']:.1f} | {r['server_compute_ms']:.1f} | {r['rows_per_execution']:.1f} |")
    lines += ["", "| summary | value |", "|---|---:|", *(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in summary.items())]
    (out / "serving.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(summary) - 2:]))


if __name__ == "__main__":
    main()
