"""Write a Triton model repository from a Stable-Diffusion-family diffusers pipeline.

Layout (generated files are git-ignored; ``model.py`` shims are versioned)::

    REPO/text_encoder/{config.pbtxt, 1/model.py, 1/model.onnx}
    REPO/unet/...            REPO/vae_decoder/...
    REPO/txt2img/{config.pbtxt, 1/model.py, 1/pipeline/{manifest.json, tokenizer/, scheduler/}}
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ppo_client import contract
from ppo_client.contract import Family, ServedPipeline, SizeLimits
from ppo_client.manifests import PipelineManifest
from ppo_server.backends.schedulers import probe, steps_problem
from ppo_server.errors import ExportError
from ppo_server.export import families
from ppo_server.export import specs as export_specs
from ppo_server.export.onnx_exporter import ExportReport
from ppo_server.export.options import DEFAULT_OPTIONS, ExportOptions
from ppo_server.export.scoring import export_scoring
from ppo_server.export.targets import write_python_model, writer_for
from ppo_server.export.tensorrt import ProfileLimits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    repository: str
    source: str
    native_side: int
    size_multiple: int
    max_side: int
    reports: list[ExportReport] = field(default_factory=list)
    family: Family = Family.SD
    schedulers: list[str] = field(default_factory=list)
    """The contract's scheduler names this checkpoint offers."""


def load_pipeline(model: str, *, scheduler: str = ""):
    """The checkpoint's pipeline (family ``sd`` or ``sdxl``), refused with a reason if not served."""
    return families.load(model, families.detect(model, scheduler=scheduler), scheduler=scheduler)


def _dims(pipeline, family: Family) -> export_specs.ExportDims:
    xl = family == Family.SDXL
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


def export_pipeline(
    model: str, out: Path, options: ExportOptions = DEFAULT_OPTIONS, *, clip: str | None = None
) -> ExportResult:
    """Export the pipeline; with ``clip`` (a ``CLIPModel`` folder) also the scoring models."""
    options.check()
    info = families.detect(model, scheduler=options.scheduler)  # the folder holds what the family needs
    pipeline = families.load(model, info, scheduler=options.scheduler)
    family = info.family
    scheduler = pipeline.scheduler
    schedulers = probe(scheduler.config)
    problem = steps_problem(copy.deepcopy(scheduler), 20)
    if problem:
        whose = f"--scheduler {options.scheduler}" if options.scheduler else "its own scheduler"
        raise ExportError(f"{model}: {whose} {type(scheduler).__name__} does not run ({problem.splitlines()[0]})")
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

    limits = ProfileLimits.for_pipeline(
        max_images=options.max_images, native_side=native_side, vae_scale_factor=vae_scale_factor,
        size_multiple=size_multiple, max_side=options.max_side, sequence_length=dims.sequence_length,
        hidden_size=dims.hidden_size, latent_channels=dims.latent_channels, text_embeds_dim=dims.text_embeds_dim,
    )
    writer = writer_for(options, limits, force_upcast=bool(getattr(pipeline.vae.config, "force_upcast", False)))
    reports = []
    for spec in export_specs.specs_for(family):  # every component alike: its spec says what to trace and serve
        module = getattr(pipeline, spec.component)
        reports.append(writer.export(spec, module, dims, out / spec.contract.name, options.component_serving))

    txt2img_dir = out / contract.TXT2IMG.name
    assets = txt2img_dir / "1" / "pipeline"
    pipeline.tokenizer.save_pretrained(assets / "tokenizer")
    if family == Family.SDXL:
        pipeline.tokenizer_2.save_pretrained(assets / "tokenizer_2")
    scheduler.save_pretrained(assets / "scheduler")
    PipelineManifest(
        source=str(model),
        family=family,
        latent_channels=dims.latent_channels,
        vae_scale_factor=vae_scale_factor,
        native_side=native_side,
        text_max_length=dims.sequence_length,
        force_zeros_for_empty_prompt=bool(pipeline.config.get("force_zeros_for_empty_prompt", True)),
    ).write(assets)
    served = ServedPipeline(
        family=family,
        limits=SizeLimits(multiple=size_multiple, min_side=size_multiple, max_side=max_side, native_side=native_side),
        schedulers=schedulers.offered,
        default_scheduler=type(scheduler).__name__,
    )
    txt2img_serving = dataclasses.replace(
        options.txt2img_serving, parameters={**served.to_parameters(), **options.txt2img_serving.parameters}
    )
    write_python_model(contract.TXT2IMG, export_specs.TXT2IMG.backend, txt2img_dir, txt2img_serving)

    if clip:
        reports.extend(export_scoring(clip, out, options, served=served, writer=writer))
    result = ExportResult(str(out), str(model), native_side, size_multiple, max_side, reports, family=family,
                          schedulers=list(schedulers.offered))
    (out / "export_report.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
