"""One peer runtime's Stable Diffusion pipeline, timed as ``serving.inprocess`` times diffusers.

Runs inside the peer's own virtualenv (``environments.py``), so it imports nothing from this project:

    python pipelines.py --runtime onnxruntime|openvino --pipeline DIR --work DIR --out result.json

The diffusers folder is converted with the peer's own documented tool, ``from_pretrained(...,
export=True)`` (optimum's ONNX exporter for ONNX Runtime, optimum-intel's OpenVINO exporter); neither
peer loads this project's exported repository, whose graphs have their own names and layout.

Folders saved by transformers 5 need two repairs before the transformers 4 that ``optimum-onnx``
needs reads them right, made in a linked copy of the folder: the tokenizer is ``tokenizer.json``
alone, and transformers 4's ``CLIPTokenizer`` reads ``vocab.json`` and ``merges.txt`` (the peer's own
``CLIPTokenizerFast`` writes them); and the text encoder's weights are saved without the
``text_model.`` prefix transformers 4's ``CLIPTextModel`` expects, which it does not refuse: it
leaves every weight at its random initial value, with a warning. The copy's weights get the prefix.
The benchmark compares each peer's image with diffusers' at the same seed, which is how this was
found. The
converted pipeline then runs with the peer's default settings. For OpenVINO those include the
inference precision, which OpenVINO picks by CPU: bf16 where the CPU has bf16 instructions;
``--precision f32`` asks for fp32 (``ov_config={"INFERENCE_PRECISION_HINT": "f32"}``), as this
project's pipeline computes. Shapes stay dynamic, the peers' default (optimum-intel's static
``reshape`` mode is left out: its UNet shape ignored the guidance rows in our trial).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

PROMPT = "a red circle on a blue background"


def readable_copy(pipeline: Path, copy: Path) -> Path:
    """``pipeline`` as a folder of links at ``copy``, with the repairs this environment's transformers needs."""
    if copy.exists():
        return copy
    staging = copy.with_name(copy.name + ".partial")
    staging.mkdir(parents=True)
    for entry in pipeline.iterdir():
        if entry.name not in ("tokenizer", "text_encoder"):
            (staging / entry.name).symlink_to(entry.resolve())
    tokenizer = pipeline / "tokenizer"
    if (tokenizer / "vocab.json").exists():
        (staging / "tokenizer").symlink_to(tokenizer.resolve())
    else:
        from transformers import CLIPTokenizerFast

        CLIPTokenizerFast.from_pretrained(str(tokenizer)).save_pretrained(str(staging / "tokenizer"), legacy_format=True)
    text_encoder(pipeline / "text_encoder", staging / "text_encoder")
    staging.rename(copy)
    return copy


def text_encoder(source: Path, target: Path) -> None:
    """``source`` linked as ``target``, or, where this transformers' ``CLIPTextModel`` names its
    weights with a prefix the saved ones lack, a copy whose weights carry it."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    weights = source / "model.safetensors"
    config = json.loads((source / "config.json").read_text())
    if config.get("architectures") != ["CLIPTextModel"] or not weights.exists():
        target.symlink_to(source.resolve())
        return
    with torch.device("meta"):
        expected = set(CLIPTextModel(CLIPTextConfig.from_pretrained(str(source))).state_dict())
    saved = load_file(str(weights))
    prefix = "text_model."
    if set(saved) <= expected or not {prefix + k for k in saved} <= expected:
        target.symlink_to(source.resolve())
        return
    target.mkdir()
    for entry in source.iterdir():
        if entry.name != weights.name:
            (target / entry.name).symlink_to(entry.resolve())
    save_file({prefix + k: v for k, v in saved.items()}, str(target / weights.name), metadata={"format": "pt"})


def load(runtime: str, pipeline: Path, work: Path, precision: str = ""):
    """The converted pipeline (converted once into ``work``) and the seconds the conversion took."""
    converted = work / f"{runtime}-pipeline"
    if runtime == "onnxruntime":
        from optimum.onnxruntime import ORTStableDiffusionPipeline as cls
    elif runtime == "openvino":
        from optimum.intel import OVStableDiffusionPipeline as cls
    else:
        raise SystemExit(f"unknown runtime {runtime!r}")
    started = time.perf_counter()
    if not (converted / "model_index.json").exists():
        cls.from_pretrained(str(readable_copy(pipeline, work / f"{runtime}-source")), export=True).save_pretrained(str(converted))
    convert_s = time.perf_counter() - started
    options = {"ov_config": {"INFERENCE_PRECISION_HINT": precision}} if precision else {}
    pipe = cls.from_pretrained(str(converted), **options)
    pipe.set_progress_bar_config(disable=True)
    return pipe, convert_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", required=True, choices=("onnxruntime", "openvino"))
    parser.add_argument("--pipeline", required=True, type=Path, help="a diffusers Stable Diffusion folder")
    parser.add_argument("--work", required=True, type=Path, help="where the converted pipeline is kept")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--images", type=int, default=8, help="timed batch-1 images; each batch size runs images // batch times")
    parser.add_argument("--batches", default="2,4,8,16")
    parser.add_argument("--image", type=Path, help="save the batch-1 image of seed 0 here (uint8 .npy)")
    parser.add_argument("--precision", default="", choices=("", "f32", "bf16"),
                        help="OpenVINO's inference precision (default: OpenVINO's choice for this CPU)")
    args = parser.parse_args()

    import numpy as np
    import torch

    if args.precision and args.runtime != "openvino":
        raise SystemExit("--precision applies to --runtime openvino only")
    pipe, convert_s = load(args.runtime, args.pipeline, args.work, args.precision)

    def run(batch: int, seed: int, keep: Path | None = None) -> float:
        started = time.perf_counter()
        images = pipe([PROMPT] * batch, num_inference_steps=args.steps, guidance_scale=args.guidance,
                      height=args.side, width=args.side, output_type="np",
                      generator=[torch.Generator().manual_seed(seed + i) for i in range(batch)]).images
        seconds = time.perf_counter() - started
        if keep is not None:
            np.save(keep, (np.asarray(images[0]) * 255).round().astype(np.uint8))
        return seconds

    run(1, 0, args.image)  # warm-up; its image is compared with diffusers' by the benchmark
    single = [run(1, i) for i in range(args.images)]
    by_batch = {}
    for batch in (int(b) for b in args.batches.split(",") if b):
        seconds = [run(batch, 100 + r) for r in range(max(1, args.images // batch))]
        by_batch[batch] = batch / statistics.median(seconds)
    best = max(by_batch, key=by_batch.get) if by_batch else 1
    result = {
        "runtime": args.runtime,
        "precision": precision_of(pipe, args.runtime),
        "convert_s": convert_s,
        "batch1_latency_s_median": statistics.median(single),
        "batch1_latency_s_p90": percentile(single, 90),
        "sequential_images_per_s": 1 / statistics.mean(single),
        "images_per_s_by_batch": {str(b): v for b, v in by_batch.items()},
        "best_batch": best,
        "best_batch_images_per_s": by_batch.get(best, 1 / statistics.mean(single)),
        "torch_threads": torch.get_num_threads(),
        "versions": versions(args.runtime),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def precision_of(pipe, runtime: str) -> str:
    """The UNet's inference precision as the runtime reports it."""
    if runtime != "openvino":
        return "fp32"  # the exported ONNX graphs are fp32 and ONNX Runtime's CPU provider keeps them so
    value = pipe.unet.request.get_property("INFERENCE_PRECISION_HINT")  # an openvino Type
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def versions(runtime: str) -> dict[str, str]:
    from importlib.metadata import version

    names = ["torch", "diffusers", "transformers", "optimum"]
    names += ["optimum-onnx", "onnxruntime"] if runtime == "onnxruntime" else ["optimum-intel", "openvino"]
    return {n: version(n) for n in names}


if __name__ == "__main__":
    main()
