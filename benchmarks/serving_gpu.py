"""The GPU serving benchmark: Stable Diffusion 1.5's (or SDXL's) architecture, served vs. in-process, one GPU.

In one run, on the GPU this process sees:

1. build the ``sd15-random`` pipeline (SD-1.5's UNet, VAE and text encoder, random weights);
2. the baseline: diffusers' ``StableDiffusionPipeline`` in this process, fp16 with PyTorch's SDPA
   attention, sequential batch 1 and its best batch size;
3. export it with ``--target torch-cuda`` and serve it from the embedded Triton server, twice: UNet
   steps run eagerly, then as CUDA graph replays. Each time: UNet latency per batch size (these
   calls also capture the graphs before anything is timed), then end-to-end ``txt2img`` latency and
   throughput over a concurrency sweep with Triton's queue vs. compute split.

Results: ``benchmarks/results/<gpu>/serving_gpu.{json,md}`` and ``summary.json``.

    python benchmarks/serving_gpu.py                 # on a GPU host (see benchmarks/gpu/run.sh)
    python benchmarks/serving_gpu.py --preset sdxl-random --side 1024   # SDXL base's architecture
    python benchmarks/serving_gpu.py --preset tiny --device cpu --side 64   # a dry run of every step
    python benchmarks/serving_gpu.py --preset tiny-sdxl --device cpu --side 64   # the same for the SDXL path
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from serving import RESULTS, Shapes, _requests, inprocess, missing_models, sweep

from ppo_client import contract
from ppo_client.console import sigterm_as_exit
from ppo_client.triton import input_tensor

UNET_ROWS = (2, 4, 8, 16, 32, 64)
"""UNet rows per call: twice the images, guidance on."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def build(preset: str, folder: Path, device: str) -> Path:
    from ppo_server.export.builders import (
        build_sd15_pipeline,
        build_sdxl_pipeline,
        build_tiny_family,
        build_tiny_pipeline,
    )

    if preset == "sd15-random":
        return build_sd15_pipeline(folder, device=device)
    if preset == "sdxl-random":
        return build_sdxl_pipeline(folder, device=device)
    if preset == "tiny-sdxl":
        return build_tiny_family(folder, "sdxl")
    return build_tiny_pipeline(folder)


def set_graphs(repository: Path, batches: tuple[int, ...]) -> None:
    from ppo_client.contract import CudaGraphParameters
    from ppo_server.export.model_config import read_config, write_config

    config = read_config(repository / contract.UNET.name)
    if CudaGraphParameters.PARAMETER in config.parameters:
        del config.parameters[CudaGraphParameters.PARAMETER]
    for key, value in CudaGraphParameters(batches).to_parameters().items():
        config.parameters[key].string_value = value
    write_config(config, repository / contract.UNET.name)


def use_cpu_instance_groups(repository: Path) -> None:
    """Fallback where the server cannot place KIND_GPU instances: python models pick the GPU themselves."""
    from ppo_server.export.model_config import read_config, write_config

    for model_dir in repository.iterdir():
        if (model_dir / "config.pbtxt").exists():
            config = read_config(model_dir)
            for group in config.instance_group:
                group.kind = group.KIND_CPU
            write_config(config, model_dir)


def load_failures(log_file: Path) -> list[str]:
    """The server log's error lines about models (each model's load error, with its cause)."""
    lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    return [line[:1500] for line in lines if line.startswith("E") and "CudaDriverHelper" not in line]


def unet_latency(server, grpc, shapes: Shapes, side: int, repeats: int) -> list[dict]:
    client = grpc.InferenceServerClient(server.grpc_url)
    latent_side = side // 8
    rng = np.random.default_rng(0)
    rows_out = []
    for rows in UNET_ROWS:
        inputs = []
        for spec, array in shapes.unet_inputs(rows, latent_side, rng):
            inputs.append(input_tensor(grpc, spec, array))
        client.infer(contract.UNET.name, inputs)  # first call of a shape captures its graph
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.infer(contract.UNET.name, inputs)
            seconds.append(time.perf_counter() - started)
        rows_out.append({"rows": rows, "median_ms": statistics.median(seconds) * 1000})
        log(f"  unet rows={rows:<3} {rows_out[-1]['median_ms']:7.1f} ms")
    client.close()
    return rows_out


def serve_variant(repository: Path, work: Path, name: str, args, shapes: Shapes, levels: list[int]) -> dict:
    import tritonclient.grpc as grpc

    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
    from ppo_server.errors import EmbeddedServerError

    config = ServerConfig(repository, log_file=work / f"triton-{name}.log", startup_timeout_s=600)
    started = time.perf_counter()
    try:
        server = EmbeddedTritonServer(config).start()
    except EmbeddedServerError:
        failures = load_failures(config.log_file)
        if not any(re.search(r"gpu|GPU|instance group", line) for line in failures):
            raise RuntimeError("\n".join(failures) or "the server did not start") from None
        log("the server refused GPU instance groups; retrying with KIND_CPU groups:\n" + "\n".join(failures))
        use_cpu_instance_groups(repository)
        server = EmbeddedTritonServer(config).start()
    load_s = time.perf_counter() - started
    log(f"{name}: server ready in {load_s:.0f} s")
    try:
        missing = missing_models(server.http_url, ["text_encoder", "unet", "vae_decoder", "txt2img"])
        if missing:
            raise RuntimeError(f"models not ready: {missing}")
        unet = unet_latency(server, grpc, shapes, args.side, args.repeats)
        make = _requests("txt2img", grpc, None, args.steps, shapes, side=args.side)
        e2e = sweep(server, "txt2img", make, levels, args.per_level)
    finally:
        server.stop()
    return {"server_load_s": load_s, "unet": unet, "txt2img": e2e}


def gpu_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine()


def write_results(out: Path, results: dict, args) -> dict:
    baseline = results["baseline"]
    summary: dict = {"device": results["device"], "steps": args.steps, "side": args.side, "guidance_scale": 7.5,
                     "scheduler": args.scheduler, "preset": args.preset,
                     "inprocess_batch1_latency_s": baseline["batch1_latency_s_median"],
                     "inprocess_sequential_images_per_s": baseline["sequential_images_per_s"],
                     "inprocess_best_batch": baseline["best_batch"],
                     "inprocess_best_batch_images_per_s": baseline["best_batch_images_per_s"]}
    for name, variant in results["served"].items():
        if "error" in variant:
            summary[f"{name}_error"] = variant["error"]
            continue
        rows = variant["txt2img"]
        best = max(rows, key=lambda r: r["throughput_per_s"])
        batch1 = next(r for r in rows if r["concurrency"] == 1)
        summary.update({
            f"{name}_batch1_latency_s": batch1["p50_ms"] / 1000,
            f"{name}_best_images_per_s": best["throughput_per_s"],
            f"{name}_best_concurrency": best["concurrency"],
            f"{name}_vs_inprocess_batch1_latency_ratio": batch1["p50_ms"] / 1000 / baseline["batch1_latency_s_median"],
            f"{name}_vs_inprocess_throughput_ratio": best["throughput_per_s"] / baseline["sequential_images_per_s"],
            f"{name}_vs_inprocess_best_batch_throughput_ratio": best["throughput_per_s"] / baseline["best_batch_images_per_s"],
        })
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving_gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"{results['device']}: {args.preset}, {args.side}x{args.side}, {args.steps} steps ({args.scheduler}), "
             "guidance 7.5, fp16 (VAE fp32 when served).", "",
             "In-process diffusers: " + ", ".join(f"batch {b}: {v:.2f} images/s" for b, v in baseline["images_per_s_by_batch"].items())
             + f"; batch-1 latency {baseline['batch1_latency_s_median'] * 1000:.0f} ms.", ""]
    for name, variant in results["served"].items():
        if "error" in variant:
            lines += [f"Served ({name}): failed: {variant['error']}", ""]
            continue
        latencies = ", ".join(f"{r['rows']} rows {r['median_ms']:.1f} ms" for r in variant["unet"])
        lines += [f"Served ({name}), UNet call latency: {latencies}", "",
                  "| concurrency | images/s | p50 ms | p90 ms | p95 ms | p99 ms | queue ms | compute ms | rows/execution |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['concurrency']} | {r['throughput_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['p95_ms']:.0f} | "
                  f"{r['p99_ms']:.0f} | {r['server_queue_ms']:.0f} | {r['server_compute_ms']:.0f} | {r['rows_per_execution']:.1f} |"
                  for r in variant["txt2img"]]
        lines.append("")
    lines += ["| summary | value |", "|---|---:|",
              *(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in summary.items())]
    (out / "serving_gpu.md").write_text("\n".join(lines) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sd15-random", choices=("sd15-random", "sdxl-random", "tiny", "tiny-sdxl"),
                        help="sdxl-random: SDXL base's architecture at 1024 px (pass --side 1024)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scheduler", default="euler", help="one scheduler for both paths (20 steps = 20 UNet calls)")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--per-level", type=int, default=12, help="requests per concurrency level (at least 2x the level)")
    parser.add_argument("--baseline-images", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5, help="timed UNet calls per batch size")
    parser.add_argument("--variants", default="eager,cuda_graphs")
    parser.add_argument("--work", default=None, help="where the pipeline and repository go (default: a temporary folder)")
    parser.add_argument("--results", default=None, help="default: benchmarks/results/<gpu name>")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    from ppo_server.export.options import ExportOptions, Target
    from ppo_server.export.repository import export_pipeline

    work = Path(args.work or tempfile.mkdtemp(prefix="ppo-gpu-bench-"))
    device = gpu_name(args.device)
    out = Path(args.results or RESULTS / re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-"))
    results: dict = {"device": device, "python": sys.version.split()[0], "timings_s": {}}
    log(f"device {device}; work folder {work}")

    started = time.perf_counter()
    pipeline = build(args.preset, work / "pipeline", args.device)
    results["timings_s"]["build"] = time.perf_counter() - started
    shapes = Shapes.of_pipeline(pipeline)
    log(f"built {args.preset} in {results['timings_s']['build']:.0f} s")

    started = time.perf_counter()
    results["baseline"] = inprocess(pipeline, args.steps, args.baseline_images, (2, 4, 8, 16), side=args.side,
                                    device=args.device, scheduler=args.scheduler)
    results["timings_s"]["baseline"] = time.perf_counter() - started
    b = results["baseline"]
    log(f"in-process: batch-1 {b['batch1_latency_s_median'] * 1000:.0f} ms, best batch {b['best_batch']} "
        f"{b['best_batch_images_per_s']:.2f}/s")
    gc.collect()
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()

    started = time.perf_counter()
    repository = work / "repo"
    options = ExportOptions(target=Target.TORCH_CUDA, scheduler=args.scheduler)
    export_pipeline(str(pipeline), repository, options)
    results["timings_s"]["export"] = time.perf_counter() - started
    log(f"exported in {results['timings_s']['export']:.0f} s")

    results["served"] = {}
    for name in args.variants.split(","):
        set_graphs(repository, options.cuda_graph_batches if name == "cuda_graphs" else ())
        try:
            results["served"][name] = serve_variant(repository, work, name, args, shapes, levels)
        except Exception as exc:  # keep what the other variant measured
            log(f"{name} failed: {exc}")
            results["served"][name] = {"error": str(exc)[-2000:]}
        summary = write_results(out, results, args)  # after each variant, so a later failure loses nothing
    print(json.dumps(summary, indent=2), flush=True)
    log(f"wrote {out}")


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
