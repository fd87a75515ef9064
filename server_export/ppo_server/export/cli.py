"""``ppo-export``: a diffusers pipeline (folder, hub id or preset) to a Triton model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppo_client import contract
from ppo_client.console import console, run_cli, setup_logging, status
from ppo_client.contract import CudaGraphParameters
from ppo_server.cache import cache_dir
from ppo_server.errors import ExportError
from ppo_server.export import checkpoint, presets
from ppo_server.export.builders import (
    build_sd15_pipeline,
    build_sdxl_pipeline,
    build_tiny_clip,
    build_tiny_family,
    build_tiny_pipeline,
)
from ppo_server.export.model_config import ServingOptions
from ppo_server.export.options import ExportOptions, Precision, Target


def default_pipeline_dir(preset: str) -> Path:
    return cache_dir("pipelines", preset)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _export(args: argparse.Namespace) -> int:
    if args.model:  # a missing folder or an unreachable hub id is refused before torch loads
        checkpoint.precheck(args.model)
    if args.clip:
        checkpoint.precheck(args.clip, wanted=checkpoint.CLIP_FOLDER)
    # deferred: the exporter needs torch (the server extra); a missing folder is refused before torch loads
    from ppo_server.export.repository import export_pipeline

    if args.head_cache_mb < 0:
        raise ExportError(f"--head-cache-mb must be 0 or more, got {args.head_cache_mb:g}")
    try:
        graphs = CudaGraphParameters.from_text(args.cuda_graph_batches)
    except ValueError as exc:
        raise ExportError(f"--cuda-graph-batches: {exc}") from None
    model, clip = args.model, args.clip
    trained = presets.registered().get(args.preset) if args.preset not in (None, *presets.BUILT) else None
    if trained is not None:  # a preset another package registers (the demo world's)
        model, clip = str(trained.pipeline_dir()), clip or str(trained.clip_dir())
    elif args.preset in ("sd15-random", "sdxl-random"):  # no scoring models unless --clip names a CLIP
        folder = Path(args.pipeline_dir or default_pipeline_dir(args.preset))
        build = build_sd15_pipeline if args.preset == "sd15-random" else build_sdxl_pipeline
        with status(f"building the {args.preset} pipeline in {folder} ..."):
            build(folder, seed=args.seed, device="cuda" if _has_cuda() else "cpu")
        model = str(folder)
    elif args.preset:
        folder = Path(args.pipeline_dir or default_pipeline_dir(args.preset))
        with status(f"building the {args.preset} pipeline in {folder} ..."):
            if args.preset == "tiny":
                build_tiny_pipeline(folder, seed=args.seed)
            else:
                build_tiny_family(folder, args.preset.removeprefix("tiny-"), seed=args.seed)
            if not clip:
                clip = str(build_tiny_clip(folder / "clip", seed=args.seed))
        model = str(folder)
    options = ExportOptions(
        scheduler=args.scheduler,
        max_side=args.max_side,
        intra_op_threads=args.intra_op_threads,
        spin_models=tuple(name for name in args.spin_models.split(",") if name),
        txt2img_serving=ServingOptions(instance_count=args.txt2img_instances, max_queue_delay_us=args.txt2img_queue_delay_us),
        component_serving=ServingOptions(max_queue_delay_us=args.component_queue_delay_us),
        target=Target(args.target),
        precision=Precision(args.precision),
        max_images=args.max_images,
        cuda_graph_batches=graphs.cuda_graph_batches,
        head_cache_bytes=int(args.head_cache_mb * 2**20),
    )
    with status(f"exporting {model} to {args.out} ..."):
        result = export_pipeline(model, Path(args.out), options, clip=clip)
    for report in result.reports:
        parity = "" if report.max_abs_diff is None else f"   max |onnxruntime - torch| = {report.max_abs_diff:.1e}"
        console.print(f"  {report.model:<13} {report.seconds:6.1f} s{parity}")
    console.print(
        f"wrote {result.repository} (native side {result.native_side}px, sides multiple of "
        f"{result.size_multiple} up to {result.max_side}); serve it with: ppo-serve --repository {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppo-export", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="diffusers pipeline folder or hub id (Stable Diffusion family)")
    source.add_argument(
        "--preset", choices=presets.names(),
        help="demo: the trained demo-world pipeline; tiny: random weights, built here; tiny-<family>: a tiny random "
        "pipeline shaped like a checkpoint family (sd15-dpm-karras, sd15-euler-a, sd2-v, sdxl, sdxl-turbo); "
        "sd15-random / sdxl-random: SD 1.5's / SDXL's architecture with random weights (for GPU benchmarks)"
    )
    parser.add_argument(
        "--clip", help="CLIPModel folder for the image encoder and scoring models (presets bring their own)"
    )
    parser.add_argument("--out", default="model_repository", help="model repository to write (default: %(default)s)")
    parser.add_argument("--pipeline-dir", help="where --preset saves its pipeline (default: the user cache)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed for --preset")
    default = ExportOptions()  # the defaults live in one place: the export's options
    parser.add_argument("--scheduler", default=default.scheduler, choices=("", *contract.SCHEDULERS),
                        help="replace the checkpoint's own scheduler (its config is kept)")
    parser.add_argument("--max-side", type=int, default=default.max_side, help="largest height/width served")
    parser.add_argument("--intra-op-threads", type=int, default=default.intra_op_threads,
                        help="onnxruntime threads per model (0: auto)")
    parser.add_argument("--spin-models", default=",".join(default.spin_models),
                        help="comma-separated component models whose onnxruntime threads spin between operators "
                             "('' for none; default %(default)s)")
    parser.add_argument("--txt2img-instances", type=int, default=default.txt2img_serving.instance_count,
                        help="pipeline loops that may run at once (default %(default)s)")
    parser.add_argument("--txt2img-queue-delay-us", type=int, default=default.txt2img_serving.max_queue_delay_us,
                        help="batching window of txt2img (default %(default)s)")
    parser.add_argument("--component-queue-delay-us", type=int, default=default.component_serving.max_queue_delay_us,
                        help="batching window of components (default %(default)s: merge only what queued)")
    parser.add_argument(
        "--target", choices=[t.value for t in Target], default=default.target.value,
        help="python: onnxruntime in python-backend models, CPU (default); onnxruntime / tensorrt: "
        "GPU models for the NVIDIA Triton container; torch-cuda: torch modules in python models, fp16 on a GPU",
    )
    parser.add_argument("--precision", choices=[p.value for p in Precision], default=default.precision.value,
                        help="TensorRT layer precision")
    parser.add_argument("--max-images", type=int, default=default.max_images,
                        help="TensorRT profiles: images per execution at most (default %(default)s)")
    parser.add_argument(
        "--cuda-graph-batches", default=",".join(map(str, default.cuda_graph_batches)),
        help="torch-cuda: UNet batch sizes replayed as CUDA graphs, comma-separated; '' turns graphs off (default: %(default)s)",
    )
    parser.add_argument(
        "--head-cache-mb", type=float, default=default.head_cache_bytes / 2**20,
        help="memory per scoring model instance for decoded users' preference models, least recently used "
        "dropped first (default %(default)g)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: _export(args))


if __name__ == "__main__":
    sys.exit(main())
