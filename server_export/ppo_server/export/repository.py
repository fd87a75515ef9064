"""Write a Triton model repository from a Stable-Diffusion-family diffusers pipeline.

Layout (generated files are git-ignored; ``model.py`` shims are versioned)::

    REPO/text_encoder/{config.pbtxt, 1/model.py, 1/model.onnx}
    REPO/unet/...            REPO/vae_decoder/...
    REPO/txt2img/{config.pbtxt, 1/model.py, 1/pipeline/{manifest.json, tokenizer/, scheduler/}}
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ppo_client import contract
from ppo_client.generation import ServedPipeline, SizeLimits
from ppo_server.backends.cuda_graphs import parse_batches
from ppo_server.backends.user_models import DEFAULT_CACHE_BYTES
from ppo_server.errors import ExportError
from ppo_server.export import families
from ppo_server.export import specs as export_specs
from ppo_server.export.model_config import ServingOptions, build_config, write_config
from ppo_server.export.onnx_exporter import ExportReport, export_onnx
from ppo_server.export.torch_target import DEFAULT_GRAPH_BATCHES

logger = logging.getLogger(__name__)

BACKEND_MODULES = {
    contract.TEXT_ENCODER.name: "ppo_server.backends.onnx_model",
    contract.TEXT_ENCODER_2.name: "ppo_server.backends.onnx_model",
    contract.UNET.name: "ppo_server.backends.onnx_model",
    contract.VAE_DECODER.name: "ppo_server.backends.onnx_model",
    contract.TXT2IMG.name: "ppo_server.backends.txt2img",
    contract.IMAGE_ENCODER.name: "ppo_server.backends.onnx_model",
    contract.PREFERENCE.name: "ppo_server.backends.preference",
    contract.TXT2IMG_SCORE.name: "ppo_server.backends.txt2img_score",
    contract.CLIP_TEXT.name: "ppo_server.backends.clip_text",
}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExportOptions:
    scheduler: str = ""
    """Replace the pipeline's scheduler by one of ``contract.SCHEDULERS`` (its config is kept)."""
    max_side: int | None = None
    """Largest height/width served; default four times the model's native side."""
    intra_op_threads: int = 0
    """onnxruntime threads per component model instance; 0 lets onnxruntime choose."""
    component_serving: ServingOptions = ServingOptions(max_queue_delay_us=0)
    """Components batch what queued while they were busy, without waiting for more: a wait is paid on
    every denoising step of a lone request, and the pipeline loops already merge concurrent ones
    (``benchmarks/tuning.py``)."""
    txt2img_serving: ServingOptions = ServingOptions(instance_count=2, max_queue_delay_us=5000)
    target: str = "python"
    """``python``: onnxruntime inside python-backend models (CPU, any Triton); ``onnxruntime``:
    Triton's onnxruntime backend on the GPU; ``tensorrt``: TensorRT engines; ``torch-cuda``: the
    torch modules themselves in python-backend models, fp16 on a GPU (fp32 on a CPU). The pipeline
    models (``txt2img`` ...) are python-backend models in every target."""
    precision: str = "fp32"
    """``fp16`` builds TensorRT engines with half-precision layers (``tensorrt`` only)."""
    max_images: int = 8
    """TensorRT profiles: images per component execution at most."""
    cuda_graph_batches: str = DEFAULT_GRAPH_BATCHES
    """``torch-cuda``: UNet batch sizes replayed as CUDA graphs (empty: eager)."""
    head_cache_bytes: int = DEFAULT_CACHE_BYTES
    """Memory each ``preference``/``txt2img_score`` instance may keep decoded users' heads in."""


@dataclass(frozen=True)
class ExportResult:
    repository: str
    source: str
    native_side: int
    size_multiple: int
    max_side: int
    reports: list[ExportReport] = field(default_factory=list)
    family: str = "sd"
    schedulers: list[str] = field(default_factory=list)
    """The contract's scheduler names this checkpoint offers."""


TARGETS = ("python", "onnxruntime", "tensorrt", "torch-cuda")


@dataclass(frozen=True)
class ComponentWriter:
    """Writes an exported component as the target's Triton model (config, shim or engine)."""

    target: str = "python"
    precision: str = "fp32"
    limits: object = None
    """``tensorrt.ProfileLimits`` for the tensorrt target."""
    cuda_graph_batches: str = DEFAULT_GRAPH_BATCHES
    fp32_vae: bool = False
    """The checkpoint's VAE asks to decode in fp32 (``force_upcast``): its engine is never fp16."""

    def write(self, spec: export_specs.ExportSpec, model_dir: Path, serving: ServingOptions, *, module=None,
              wrapper_kwargs: dict | None = None) -> None:
        model = spec.contract
        if self.target == "torch-cuda":
            from ppo_server.export.torch_target import write_torch_component

            write_torch_component(spec, model_dir, serving, module, wrapper_kwargs or {}, self.cuda_graph_batches)
            return
        if self.target == "python":
            write_config(build_config(model, serving), model_dir)
            write_shim(model_dir, model.name)
            return
        native = ServingOptions(  # onnxruntime-in-python settings mean nothing to Triton's own backends
            instance_count=serving.instance_count, max_queue_delay_us=serving.max_queue_delay_us,
            parameters={k: v for k, v in serving.parameters.items() if k != "intra_op_threads"},
        )
        if self.target == "onnxruntime":
            write_config(build_config(model, native, target="onnxruntime"), model_dir)
            return
        from ppo_server.export import tensorrt

        shapes = tensorrt.profiles(spec.key, self.limits)
        fp16 = self.precision == "fp16" and not (self.fp32_vae and model.name == contract.VAE_DECODER.name)
        tensorrt.build_engine(model_dir / "1" / "model.onnx", model_dir / "1" / "model.plan", shapes, fp16=fp16)
        rows = tensorrt.batch_range(model.name, self.limits)[2]
        write_config(build_config(model, native, target="tensorrt", max_batch_size=rows), model_dir)


def check_target(options: ExportOptions) -> None:
    """Refuse a target whose library is missing before any work is done."""
    if options.target not in TARGETS:
        raise ExportError(f"unknown target {options.target!r}; choose one of {', '.join(TARGETS)}")
    if options.precision not in ("fp32", "fp16"):
        raise ExportError(f"unknown precision {options.precision!r}; choose fp32 or fp16")
    if options.precision == "fp16" and options.target != "tensorrt":
        raise ExportError("--precision fp16 applies to --target tensorrt only (ONNX files are exported in fp32)")
    try:
        parse_batches(options.cuda_graph_batches)
    except ValueError as exc:
        raise ExportError(f"--cuda-graph-batches: {exc}") from None
    if options.target == "tensorrt":
        from ppo_server.export.tensorrt import require_tensorrt

        require_tensorrt()


def shim_source(model_name: str) -> str:
    """The versioned ``model.py`` of a repository model: it only points at the installed package."""
    module = BACKEND_MODULES[model_name]
    return (
        f'"""Triton python-backend entry point for `{model_name}`; the code lives in `{module}`."""\n\n'
        f"from {module} import TritonPythonModel  # noqa: F401\n"
    )


def load_pipeline(model: str):
    """The checkpoint's pipeline (family ``sd`` or ``sdxl``), refused with a reason if not served."""
    return families.load(model, families.detect(model))


def _dims(pipeline, family: str) -> export_specs.ExportDims:
    xl = family == "sdxl"
    return export_specs.ExportDims(
        batch=2,
        sequence_length=int(pipeline.tokenizer.model_max_length),
        hidden_size=int(pipeline.unet.config.cross_attention_dim),
        vocab_size=int(pipeline.text_encoder.config.vocab_size),
        latent_channels=int(pipeline.unet.config.in_channels),
        latent_height=int(pipeline.unet.config.sample_size),
        latent_width=int(pipeline.unet.config.sample_size),
        vocab_size_2=int(pipeline.text_encoder_2.config.vocab_size) if xl else 0,
        text_embeds_dim=int(pipeline.text_encoder_2.config.projection_dim) if xl else 0,
    )


def _scheduler(pipeline, name: str):
    if not name:
        return pipeline.scheduler
    from ppo_server.backends.schedulers import build_scheduler

    return build_scheduler(name, pipeline.scheduler.config)


def export_pipeline(
    model: str, out: Path, options: ExportOptions = ExportOptions(), *, clip: str | None = None
) -> ExportResult:
    """Export the pipeline; with ``clip`` (a ``CLIPModel`` folder) also the scoring models."""
    from ppo_server.backends.schedulers import probe, steps_problem

    if options.scheduler and options.scheduler not in contract.SCHEDULERS:
        raise ExportError(f"unknown scheduler {options.scheduler!r}; choose one of {', '.join(contract.SCHEDULERS)}")
    check_target(options)
    info = families.detect(model)
    pipeline = families.load(model, info)
    family = info.family
    scheduler = _scheduler(pipeline, options.scheduler)
    schedulers = probe(scheduler.config)
    problem = steps_problem(copy.deepcopy(scheduler), 20)
    if problem:
        raise ExportError(f"{model}: its own scheduler {type(scheduler).__name__} does not run ({problem})")
    for name, why in schedulers.left_out.items():
        logger.info("scheduler %s is not offered for this checkpoint: %s", name, why)
    out = Path(out)
    dims = _dims(pipeline, family)
    vae_scale_factor = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
    # A traced UNet only handles sizes its down/up path divides evenly.
    size_multiple = vae_scale_factor * 2 ** (len(pipeline.unet.config.block_out_channels) - 1)
    size_multiple = max(size_multiple, contract.SIDE_MULTIPLE)
    native_side = int(pipeline.unet.config.sample_size) * vae_scale_factor
    max_side = options.max_side or 4 * native_side
    if max_side % size_multiple or max_side < size_multiple:
        raise ExportError(f"--max-side must be a positive multiple of {size_multiple}, got {max_side}")

    component_params = {"intra_op_threads": str(options.intra_op_threads)}
    component_serving = ServingOptions(
        instance_count=options.component_serving.instance_count,
        max_queue_delay_us=options.component_serving.max_queue_delay_us,
        parameters={**component_params, **options.component_serving.parameters},
    )
    from ppo_server.export.tensorrt import ProfileLimits

    writer = ComponentWriter(options.target, options.precision, ProfileLimits.for_pipeline(
        native_side=native_side, vae_scale_factor=vae_scale_factor, size_multiple=size_multiple,
        max_side=options.max_side, sequence_length=dims.sequence_length, hidden_size=dims.hidden_size,
        latent_channels=dims.latent_channels, max_images=options.max_images, text_embeds_dim=dims.text_embeds_dim,
    ), options.cuda_graph_batches, fp32_vae=bool(getattr(pipeline.vae.config, "force_upcast", False)))
    reports = []
    for spec in export_specs.specs_for(family):
        model_dir = out / spec.contract.name
        module = getattr(pipeline, spec.component)
        if options.target == "torch-cuda":  # serves the torch module itself: no ONNX file to trace
            started = time.perf_counter()
            writer.write(spec, model_dir, component_serving, module=module)
            reports.append(ExportReport(spec.contract.name, str(model_dir / "1" / "weights"), time.perf_counter() - started))
            continue
        reports.append(export_onnx(spec, module, dims, model_dir / "1" / "model.onnx"))
        writer.write(spec, model_dir, component_serving, module=module)

    txt2img_dir = out / contract.TXT2IMG.name
    assets = txt2img_dir / "1" / "pipeline"
    pipeline.tokenizer.save_pretrained(assets / "tokenizer")
    if family == "sdxl":
        pipeline.tokenizer_2.save_pretrained(assets / "tokenizer_2")
    scheduler.save_pretrained(assets / "scheduler")
    manifest = {
        "source": str(model),
        "family": family,
        "latent_channels": dims.latent_channels,
        "vae_scale_factor": vae_scale_factor,
        "native_side": native_side,
        "text_max_length": dims.sequence_length,
        "force_zeros_for_empty_prompt": bool(pipeline.config.get("force_zeros_for_empty_prompt", True)),
    }
    (assets / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    served = ServedPipeline(
        family=family,
        limits=SizeLimits(multiple=size_multiple, min_side=size_multiple, max_side=max_side, native_side=native_side),
        schedulers=schedulers.offered,
        default_scheduler=type(scheduler).__name__,
    )
    txt2img_serving = ServingOptions(
        instance_count=options.txt2img_serving.instance_count,
        max_queue_delay_us=options.txt2img_serving.max_queue_delay_us,
        parameters={**served.to_parameters(), **options.txt2img_serving.parameters},
    )
    write_config(build_config(contract.TXT2IMG, txt2img_serving), txt2img_dir)
    write_shim(txt2img_dir, contract.TXT2IMG.name)

    if clip:
        from ppo_server.export.scoring import export_scoring

        reports.extend(
            export_scoring(clip, out, with_generation=True, encoder_serving=component_serving,
                           txt2img_serving=txt2img_serving, writer=writer, head_cache_bytes=options.head_cache_bytes)
        )
    result = ExportResult(str(out), str(model), native_side, size_multiple, max_side, reports, family=family,
                          schedulers=list(schedulers.offered))
    (out / "export_report.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def write_shim(model_dir: Path, name: str) -> None:
    path = model_dir / "1" / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shim_source(name))
