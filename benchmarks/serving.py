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
4. the optimization loop's overhead: the share of an iteration's wall time outside the server;
5. the peers people pick instead (``peers/``): ``optimum-onnx``'s ONNX Runtime pipeline and
   ``optimum-intel``'s OpenVINO pipeline (at OpenVINO's default precision for this CPU and at fp32),
   in process with the same weights, size, steps, scheduler and guidance, at batch 1 and their best
   batch, each in its own pinned virtualenv made on first use;
6. the machine's limit: sustained GEMM FLOP/s (fp32, and bf16 where the CPU has it) and the UNet's
   FLOPs per row (counted from its ONNX graph), giving the fraction of peak the served UNet and each
   peer reach;
7. our exported ONNX components in ONNX Runtime (as the server runs them) vs. OpenVINO Runtime
   (when ``openvino`` is installed: the ``bench`` extra), the measurement that decides whether an
   OpenVINO export target would pay.

Results: ``benchmarks/results/<device>/serving.{json,md,svg}`` and ``summary.json`` with the ratios.

    python benchmarks/serving.py                      # everything, starts and stops its own servers
    python benchmarks/serving.py --url host:8001      # sweep an existing server (checks its models)
    python benchmarks/serving.py --quick --results DIR  # tiny pipeline, 2 steps: every stage runs once
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import numpy as np
from peers import environments as peer_environments
from peers import machine

from ppo_client import contract
from ppo_client.console import sigterm_as_exit
from ppo_client.contract import ComponentParameters, TensorSpec
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
              device: str = "cpu", scheduler: str = "", image_path: Path | None = None) -> dict:
    """diffusers in this process: fp32 on the CPU, fp16 with PyTorch's SDPA attention on a GPU.
    ``image_path``: where to save the batch-1 image of seed 0 (uint8 ``.npy``), to compare peers with."""
    import torch
    from diffusers import DiffusionPipeline

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = DiffusionPipeline.from_pretrained(pipeline_dir, dtype=dtype)  # SD 1.x/2.x or SDXL, as the folder says
    if scheduler:
        from ppo_server.backends.schedulers import build_scheduler

        pipe.scheduler = build_scheduler(scheduler, pipe.scheduler.config)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    def run(batch: int, seed: int, keep: Path | None = None) -> float:
        started = time.perf_counter()
        images = pipe([PROMPT] * batch, num_inference_steps=steps, guidance_scale=7.5, height=side, width=side,
                      generator=[torch.Generator().manual_seed(seed + i) for i in range(batch)], output_type="np").images
        seconds = time.perf_counter() - started  # output_type="np" waits for the GPU
        if keep is not None:
            np.save(keep, (np.asarray(images[0]) * 255).round().astype(np.uint8))
        return seconds

    run(1, 0, image_path)  # warm-up
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


# --- the peers, in their own environments ---


@dataclass(frozen=True)
class PeerRun:
    """One measured configuration of a peer runtime."""

    key: str
    runtime: str
    precision: str = ""
    """OpenVINO's inference precision hint; empty: the runtime's default for this CPU."""

    @property
    def label(self) -> str:
        base = peer_environments.peer(self.runtime).label
        return f"{base}, {self.precision}" if self.precision else base


PEER_RUNS = {r.key: r for r in (PeerRun("onnxruntime", "onnxruntime"), PeerRun("openvino", "openvino"),
                                PeerRun("openvino-f32", "openvino", "f32"))}


def peer_runs(names: str) -> list[PeerRun]:
    """``--peers``: comma-separated keys of ``PEER_RUNS``, or ``none``."""
    if names == "none":
        return []
    unknown = [k for k in names.split(",") if k not in PEER_RUNS]
    if unknown:
        raise SystemExit(f"--peers: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(PEER_RUNS)} or 'none'")
    return [PEER_RUNS[k] for k in names.split(",")]


def run_peer(run: PeerRun, pipeline_dir: Path, work: Path, steps: int, images: int, batches: tuple[int, ...],
             *, reference: Path | None = None, timeout_s: float = 3600) -> dict:
    """``peers/pipelines.py`` in the peer's environment (made first if needed). A peer that cannot be
    had returns ``{"skipped": reason}`` and the rest of the benchmark goes on. ``reference``: diffusers'
    image of the same seed, to report the largest pixel difference of the peer's."""
    import subprocess

    try:
        python = peer_environments.ensure(peer_environments.peer(run.runtime))
    except peer_environments.PeerUnavailable as exc:
        return {"skipped": f"{run.label}: its environment could not be made: {exc}"}
    out = work / f"{run.key}.json"
    command = [str(python), str(Path(__file__).parent / "peers" / "pipelines.py"), "--runtime", run.runtime,
               "--pipeline", str(pipeline_dir), "--work", str(work), "--out", str(out), "--steps", str(steps),
               "--images", str(images), "--batches", ",".join(map(str, batches)), "--image", str(work / f"{run.key}.npy")]
    if run.precision:
        command += ["--precision", run.precision]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"skipped": f"{run.label}: took over {timeout_s:.0f} s"}
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        return {"skipped": f"{run.label}: failed (exit {done.returncode}):\n{tail}"}
    result = {"label": run.label, **json.loads(out.read_text())}
    if reference is not None:
        diff = np.abs(np.load(work / f"{run.key}.npy").astype(int) - np.load(reference).astype(int))
        result["max_pixel_diff_vs_diffusers"] = int(diff.max())
    return result


# --- our exported components: ONNX Runtime (as served) vs. OpenVINO Runtime ---


def component_runtimes(repository: Path, shapes: Shapes, repeats: int = 10) -> dict:
    """Median milliseconds of one call of each exported component graph in onnxruntime, configured as
    the server configures it, and in OpenVINO Runtime (fp32, and bf16 where the CPU has it; latency
    hint; the same thread count). ``{"skipped": reason}`` without ``openvino``."""
    try:
        import openvino as ov
    except ImportError:
        return {"skipped": "openvino is not installed (pip install -e '.[bench]')"}
    import onnxruntime as ort

    from ppo_server.export.model_config import read_config

    threads = len(os.sched_getaffinity(0))

    def session(model: str):
        config = read_config(repository / model)
        spin = ComponentParameters.from_parameters({k: v.string_value for k, v in config.parameters.items()}).spin
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
        options.intra_op_num_threads = threads
        return ort.InferenceSession(str(repository / model / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])

    core = ov.Core()
    precisions = ["f32"] + (["bf16"] if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else [])
    rng = np.random.default_rng(0)
    latent = (shapes.latent_channels, shapes.latent_side, shapes.latent_side)
    cases = {
        contract.TEXT_ENCODER.name: (1, 16),
        contract.UNET.name: (2, 16, 32),
        contract.VAE_DECODER.name: (1, 8),
    }

    def feed(model: str, rows: int) -> dict[str, np.ndarray]:
        if model == contract.UNET.name:
            unet = shapes.unet_inputs(rows, shapes.latent_side, rng)
            return {spec.name: array.astype(spec.dtype.numpy) for spec, array in unet}
        if model == contract.TEXT_ENCODER.name:
            ids = rng.integers(0, min(1000, shapes.vocab), (rows, shapes.sequence))
            return {contract.TEXT_ENCODER.INPUT_IDS.name: ids.astype(np.int64)}
        return {contract.VAE_DECODER.LATENT.name: rng.normal(size=(rows, *latent)).astype(np.float32)}

    def median_ms(call) -> float:
        call()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
        return statistics.median(seconds) * 1000

    result: dict = {"threads": threads, "openvino": ov.__version__, "onnxruntime": ort.__version__,
                    "openvino_precisions": precisions, "models": {}}
    for model, row_counts in cases.items():
        path = repository / model / "1" / "model.onnx"
        runtime = session(model)
        compiled = {p: core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": p})
                    for p in precisions}
        rows_out = []
        for rows in row_counts:
            inputs = feed(model, rows)
            expected = runtime.run(None, inputs)[0]
            row = {"rows": rows, "onnxruntime_ms": median_ms(partial(runtime.run, None, inputs))}
            for precision, model_ov in compiled.items():
                request = model_ov.create_infer_request()
                got = request.infer(inputs)[0]
                row[f"openvino_{precision}_ms"] = median_ms(partial(request.infer, inputs))
                row[f"openvino_{precision}_max_abs_diff"] = float(np.abs(got - expected).max())
            rows_out.append(row)
            print(f"  {model:<12} rows {rows:<3} onnxruntime {row['onnxruntime_ms']:7.1f} ms  " + "  ".join(
                f"openvino {p} {row[f'openvino_{p}_ms']:7.1f} ms" for p in precisions), flush=True)
        result["models"][model] = rows_out
    return result


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
    vocab: int = 49408
    """Token ids the text encoder accepts (random requests draw below this)."""

    @classmethod
    def of_pipeline(cls, pipeline: Path, clip: Path | None = None) -> Shapes:
        unet = json.loads((pipeline / "unet" / "config.json").read_text())
        text = json.loads((pipeline / "text_encoder" / "config.json").read_text())
        second = pipeline / "text_encoder_2" / "config.json"
        text_embeds = int(json.loads(second.read_text())["projection_dim"]) if second.exists() else 0
        embedding = json.loads((clip / "config.json").read_text())["projection_dim"] if clip else 0
        return cls(int(text["max_position_embeddings"]), int(unet["cross_attention_dim"]), int(unet["in_channels"]),
                   int(unet["sample_size"]), int(embedding), text_embeds, int(text["vocab_size"]))

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
            input_tensor(grpc, contract.TEXT_ENCODER.INPUT_IDS, rng.integers(0, min(1000, shapes.vocab), (1, shapes.sequence)))
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
        print(f"  {model:<14} c={c:<3} {row['throughput_per_s']:7.1f}/s  p50 {row['p50_ms']:8.1f} ms  "
              f"p99 {row['p99_ms']:8.1f} ms", flush=True)
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


def machine_limit(repository: Path, shapes: Shapes, *, gemm_seconds: float) -> dict:
    """The cores' GEMM peak and the served UNet graph's FLOPs per row at the benchmark's latent size."""
    unet = repository / contract.UNET.name / "1" / "model.onnx"

    def inputs(rows: int) -> dict[str, tuple[int, ...]]:
        unet_inputs = shapes.unet_inputs(rows, shapes.latent_side, np.random.default_rng(0))
        return {spec.name: array.shape for spec, array in unet_inputs}

    return {"gemm": machine.gemm_peak(seconds=gemm_seconds), "unet": machine.unet_flops_per_row(unet, inputs)}


def peer_summary(results: dict, best_served: dict, batch1_served: dict, steps: int) -> dict:
    """The served pipeline's ratios against each peer, and every fraction of the GEMM peak."""
    limit = results["machine_limit"]
    per_row, gemm = limit["unet"]["flops_per_row"], limit["gemm"]

    def fractions(images_per_s: float) -> dict:
        return machine.fraction_of_peak(machine.rows_rate(images_per_s, steps) * per_row, gemm)

    unet_rows = results["models"][contract.UNET.name]
    best_unet = max(unet_rows, key=lambda r: r["throughput_per_s"])
    summary: dict = {
        "gemm_fp32_gflops": gemm["fp32"]["flops_per_s"] / 1e9,
        "gemm_bf16_gflops": gemm["bf16"]["flops_per_s"] / 1e9 if "bf16" in gemm else None,
        "unet_gflops_per_row": per_row / 1e9,
        # the UNet model alone, at the concurrency where it served most rows (2 rows a request)
        "served_unet_best_concurrency": best_unet["concurrency"],
        "served_unet_requests_per_execution": best_unet["rows_per_execution"],
        "served_unet_fraction_of_fp32_peak": 2 * best_unet["throughput_per_s"] * per_row / gemm["fp32"]["flops_per_s"],
        # whole pipelines: UNet FLOPs per image over wall time (text encoder and VAE time included)
        "served_pipeline_unet_fraction_of_fp32_peak": fractions(best_served["throughput_per_s"])["fp32"],
        "inprocess_pipeline_unet_fraction_of_fp32_peak": fractions(results["baseline"]["best_batch_images_per_s"])["fp32"],
    }
    measured = {k: v for k, v in results["peers"].items() if "skipped" not in v}
    for key, peer in measured.items():
        name = key.replace("-", "_")
        summary[f"{name}_best_batch"] = peer["best_batch"]
        summary[f"{name}_best_batch_images_per_s"] = peer["best_batch_images_per_s"]
        summary[f"{name}_batch1_latency_s"] = peer["batch1_latency_s_median"]
        summary[f"{name}_precision"] = peer["precision"]
        summary[f"{name}_max_pixel_diff_vs_diffusers"] = peer.get("max_pixel_diff_vs_diffusers")
        summary[f"served_vs_{name}_best_batch_throughput_ratio"] = best_served["throughput_per_s"] / peer["best_batch_images_per_s"]
        summary[f"served_vs_{name}_batch1_latency_ratio"] = batch1_served["p50_ms"] / 1000 / peer["batch1_latency_s_median"]
        summary[f"{name}_pipeline_unet_fraction_of_fp32_peak"] = fractions(peer["best_batch_images_per_s"])["fp32"]
        if peer["precision"] == "bf16" and "bf16" in gemm:
            summary[f"{name}_pipeline_unet_fraction_of_bf16_peak"] = fractions(peer["best_batch_images_per_s"])["bf16"]
    if measured:
        best = max(measured, key=lambda k: measured[k]["best_batch_images_per_s"])
        fastest = min(measured, key=lambda k: measured[k]["batch1_latency_s_median"])
        summary["best_peer"] = best
        summary["served_vs_best_peer_throughput_ratio"] = best_served["throughput_per_s"] / measured[best]["best_batch_images_per_s"]
        summary["fastest_peer_batch1"] = fastest
        summary["served_vs_fastest_peer_batch1_latency_ratio"] = (
            batch1_served["p50_ms"] / 1000 / measured[fastest]["batch1_latency_s_median"])
    return summary


def peer_table(results: dict, best_served: dict, batch1_served: dict, steps: int) -> list[str]:
    """Markdown rows: the served pipeline, in-process diffusers and each peer, side by side."""
    limit = results["machine_limit"]
    per_row, gemm = limit["unet"]["flops_per_row"], limit["gemm"]

    def fraction(images_per_s: float, precision: str) -> str:
        dtype = "bf16" if precision == "bf16" and "bf16" in gemm else "fp32"
        return f"{machine.fraction_of_peak(machine.rows_rate(images_per_s, steps) * per_row, gemm)[dtype]:.1%} of {dtype}"

    lines = ["| pipeline | precision | best batch | images/s at best | batch-1 latency s | served throughput ratio | "
             "served batch-1 latency ratio | UNet FLOP/s as share of the GEMM peak at its precision | "
             "largest pixel difference from diffusers |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    served = best_served["throughput_per_s"]
    lines.append(f"| served (Triton, ONNX Runtime) | fp32 | concurrency {best_served['concurrency']} | {served:.2f} | "
                 f"{batch1_served['p50_ms'] / 1000:.3f} | 1.00x | 1.00x | {fraction(served, 'fp32')} | "
                 "<= 3/255 (tested) |")
    entries = [("diffusers (PyTorch eager)", "fp32", {**results["baseline"], "max_pixel_diff_vs_diffusers": 0})]
    entries += [(v["label"], v["precision"], v) for v in results["peers"].values() if "skipped" not in v]
    for label, precision, row in entries:
        lines.append(f"| {label} | {precision} | {row['best_batch']} | {row['best_batch_images_per_s']:.2f} | "
                     f"{row['batch1_latency_s_median']:.3f} | {served / row['best_batch_images_per_s']:.2f}x | "
                     f"{batch1_served['p50_ms'] / 1000 / row['batch1_latency_s_median']:.2f}x | "
                     f"{fraction(row['best_batch_images_per_s'], precision)} | {row['max_pixel_diff_vs_diffusers']}/255 |")
    lines += [f"| skipped: {v['skipped'].splitlines()[0]} | | | | | | | | |" for v in results["peers"].values() if "skipped" in v]
    return lines


def machine_line(limit: dict, summary: dict) -> str:
    gemm = limit["gemm"]
    peaks = ", ".join(f"{d} {gemm[d]['flops_per_s'] / 1e9:.0f} GFLOP/s ({gemm[d]['library']}, n={gemm[d]['size']})"
                      for d in ("fp32", "bf16") if d in gemm)
    return (f"GEMM peak on {gemm['threads']} threads: {peaks}. The UNet: {limit['unet']['flops_per_row'] / 1e9:.3f} GFLOP per "
            f"row (Conv, MatMul, Gemm of its ONNX graph). The served UNet model alone at concurrency "
            f"{summary['served_unet_best_concurrency']} "
            f"({summary['served_unet_requests_per_execution']:.1f} two-row requests per execution) "
            f"reaches {summary['served_unet_fraction_of_fp32_peak']:.1%} of the fp32 peak.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--per-level", type=int, default=16, help="requests per concurrency level (at least 2x the level)")
    parser.add_argument("--baseline-images", type=int, default=8)
    parser.add_argument("--peers", default=",".join(PEER_RUNS), help=f"peer runs, any of {', '.join(PEER_RUNS)}; 'none' for none")
    parser.add_argument("--quick", action="store_true",
                        help="the tiny pipeline, 2 steps, a short sweep, no scale-out or optimization loop: "
                             "checks that every stage runs (numbers mean nothing); needs --results")
    parser.add_argument("--url", help="sweep this server's models instead (gRPC host:port; no baseline, no scale-out)")
    parser.add_argument("--http-url", help="with --url: the same server's HTTP address, for its statistics")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    if args.quick:
        if not args.results:
            sys.exit("--quick needs --results DIR (its numbers must not replace the committed ones)")
        args.steps, args.concurrency, args.per_level, args.baseline_images = 2, "1,2", 2, 2
    levels = [int(c) for c in args.concurrency.split(",")]
    chosen_peers = peer_runs(args.peers)
    batches = (2,) if args.quick else (2, 4, 8, 16, 32)

    import tritonclient.grpc as grpc

    from ppo_client.head import PreferenceHead
    from ppo_demo.preset import demo_clip_dir, demo_pipeline_dir
    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
    from ppo_server.export.builders import build_tiny_clip, build_tiny_pipeline
    from ppo_server.export.repository import export_pipeline

    out = Path(args.results or RESULTS / device_name())
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ppo-bench-"))
    if args.quick:
        pipeline_dir = build_tiny_pipeline(work / "tiny")
        clip_dir = build_tiny_clip(work / "tiny_clip")
    else:
        pipeline_dir, clip_dir = demo_pipeline_dir(), demo_clip_dir()
    shapes = Shapes.of_pipeline(pipeline_dir, clip_dir)
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

    repository = work / "repo"
    print("exporting the pipeline ...", flush=True)
    export_pipeline(str(pipeline_dir), repository, clip=str(clip_dir))

    print("the machine's limit: GEMM peak, UNet FLOPs ...", flush=True)
    results: dict = {"machine_limit": machine_limit(repository, shapes, gemm_seconds=0.5 if args.quick else 12.0)}
    gemm = results["machine_limit"]["gemm"]
    print("  " + ", ".join(f"{d} {gemm[d]['flops_per_s'] / 1e9:.0f} GFLOP/s" for d in ("fp32", "bf16") if d in gemm)
          + f"; UNet {results['machine_limit']['unet']['flops_per_row'] / 1e9:.3f} GFLOP per row", flush=True)

    print("in-process baseline ...", flush=True)
    (work / "peers").mkdir()
    reference = work / "peers" / "diffusers.npy"
    baseline = inprocess(pipeline_dir, args.steps, args.baseline_images, batches, image_path=reference)
    print(f"  batch-1 {baseline['batch1_latency_s_median'] * 1000:.0f} ms, sequential {baseline['sequential_images_per_s']:.2f}/s, "
          f"best batch {baseline['best_batch']}: {baseline['best_batch_images_per_s']:.2f}/s", flush=True)
    results["baseline"] = baseline

    results["peers"] = {}
    for run in chosen_peers:
        print(f"peer: {run.label} ...", flush=True)
        row = results["peers"][run.key] = run_peer(run, pipeline_dir, work / "peers", args.steps, args.baseline_images, batches,
                                                          reference=reference)
        if "skipped" in row:
            print(f"  skipped: {row['skipped']}", flush=True)
        else:
            print(f"  {row['precision']}: batch-1 {row['batch1_latency_s_median'] * 1000:.0f} ms, best batch {row['best_batch']}: "
                  f"{row['best_batch_images_per_s']:.2f}/s (converted in {row['convert_s']:.0f} s; largest pixel difference "
                  f"from diffusers {row['max_pixel_diff_vs_diffusers']}/255)", flush=True)

    print("our exported components: ONNX Runtime vs. OpenVINO Runtime ...", flush=True)
    results["component_runtimes"] = component_runtimes(repository, shapes, repeats=3 if args.quick else 20)
    if "skipped" in results["component_runtimes"]:
        print(f"  skipped: {results['component_runtimes']['skipped']}", flush=True)

    results["models"] = {}
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        missing = missing_models(server.http_url, [*components, *E2E_MODELS])
        assert not missing, missing
        for model in components:
            results["models"][model] = sweep(server, model, _requests(model, grpc, None, args.steps, shapes), levels, args.per_level)
        for model in E2E_MODELS:
            requests = _requests(model, grpc, head.to_bytes(), args.steps, shapes)
            results["models"][model] = sweep(server, model, requests, levels, args.per_level)
        if not args.quick:
            results["optimization_loop"] = optimization_overhead(server.grpc_url, head, args.steps)

    if not args.quick:
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
        "pipeline": "tiny" if args.quick else "demo",
        "steps": args.steps,
        "served_best_images_per_s": best["throughput_per_s"],
        "served_best_concurrency": best["concurrency"],
        "inprocess_sequential_images_per_s": baseline["sequential_images_per_s"],
        "served_vs_inprocess_throughput_ratio": best["throughput_per_s"] / baseline["sequential_images_per_s"],
        "served_vs_inprocess_best_batch_throughput_ratio": best["throughput_per_s"] / baseline["best_batch_images_per_s"],
        "served_batch1_latency_s": batch1["p50_ms"] / 1000,
        "inprocess_batch1_latency_s": baseline["batch1_latency_s_median"],
        "served_vs_inprocess_batch1_latency_ratio": batch1["p50_ms"] / 1000 / baseline["batch1_latency_s_median"],
    }
    if "scale_out" in results:
        summary["two_servers_vs_one_throughput_ratio"] = (
            results["scale_out"]["two_servers"]["throughput_per_s"] / results["scale_out"]["one_server"]["throughput_per_s"])
    if "optimization_loop" in results:
        summary["optimization_loop_outside_server_share"] = results["optimization_loop"]["outside_server_share"]
    summary.update(peer_summary(results, best, batch1, args.steps))
    (out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    chart = line_chart({m: [r["throughput_per_s"] for r in results["models"][m]] for m in E2E_MODELS},
                       x_label="concurrency", x_values=levels)
    (out / "serving.svg").write_text(chart)
    lines = [f"{summary['pipeline'].capitalize()} models, 64x64, {args.steps} steps, guidance 7.5; {os.cpu_count()} CPU cores.", "",
             "| model | concurrency | per s | p50 ms | p90 ms | p95 ms | p99 ms | queue ms | compute ms | rows/execution |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, rows in results["models"].items():
        for r in rows:
            lines.append(f"| {model} | {r['concurrency']} | {r['throughput_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
                         f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_queue_ms']:.1f} | {r['server_compute_ms']:.1f} | "
                         f"{r['rows_per_execution']:.1f} |")
    lines += ["", "Peers in process, same weights, size, steps, scheduler and guidance (ratios: served / peer; "
              "the share of peak counts the UNet's FLOPs per image over the whole pipeline's wall time):", "",
              *peer_table(results, best, batch1, args.steps), "",
              machine_line(results["machine_limit"], summary)]
    runtimes = results["component_runtimes"]
    if "skipped" not in runtimes:
        precisions = runtimes["openvino_precisions"]
        lines += ["", f"Our exported ONNX graphs, one call, median ms ({runtimes['threads']} threads; OpenVINO latency hint):", "",
                  "| model | rows | ONNX Runtime | " + " | ".join(f"OpenVINO {p} | max abs diff {p}" for p in precisions) + " |",
                  "|---|---:|---:|" + "---:|---:|" * len(precisions)]
        for model, rows in runtimes["models"].items():
            for r in rows:
                lines.append(f"| {model} | {r['rows']} | {r['onnxruntime_ms']:.1f} | " + " | ".join(
                    f"{r[f'openvino_{p}_ms']:.1f} | {r[f'openvino_{p}_max_abs_diff']:.1e}" for p in precisions) + " |")
    lines += ["", "| summary | value |", "|---|---:|",
              *(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in summary.items())]
    (out / "serving.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[lines.index("| summary | value |"):]))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
