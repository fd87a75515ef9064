"""Which pipeline family a checkpoint is, read from its ``model_index.json`` before anything heavy
loads, and the checkpoints this project does not serve, refused by name before any work; what each
family's folder must hold (``COMPONENTS``, checked by ``checkpoint.check`` before anything loads), and
the pipeline assembled from its components, each loaded on its own (``checkpoint.load_component``) so
that one that does not load is named in one line.

Served: ``StableDiffusionPipeline`` folders (SD 1.x, SD 2.x with v-prediction, SD-Turbo and other
fine-tunes, whatever their scheduler) as family ``sd``; ``StableDiffusionXLPipeline`` folders
(SDXL base, SDXL-Turbo, fine-tunes) as family ``sdxl``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ppo_client.contract import Family
from ppo_server.errors import CheckpointError, ExportError
from ppo_server.export import checkpoint

logger = logging.getLogger(__name__)

PIPELINE_CLASSES = {"StableDiffusionPipeline": Family.SD, "StableDiffusionXLPipeline": Family.SDXL}
SUPPORTED = "Stable Diffusion 1.x/2.x (StableDiffusionPipeline) and SDXL (StableDiffusionXLPipeline, base or Turbo)"
KNOWN_OTHERS = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3 (a transformer-based family)",
    "FluxPipeline": "FLUX (a transformer-based family)",
    "PixArtAlphaPipeline": "PixArt-alpha (a transformer-based family)",
    "PixArtSigmaPipeline": "PixArt-sigma (a transformer-based family)",
    "SanaPipeline": "Sana (a transformer-based family)",
    "HunyuanDiTPipeline": "Hunyuan-DiT (a transformer-based family)",
    "StableDiffusionXLImg2ImgPipeline": "an SDXL image-to-image pipeline (the SDXL refiner ships as one)",
    "StableDiffusionInpaintPipeline": "a Stable Diffusion inpainting pipeline",
    "StableDiffusionXLInpaintPipeline": "an SDXL inpainting pipeline",
    "LatentConsistencyModelPipeline": "a latent-consistency-distilled pipeline with a guidance embedding",
    "KandinskyV22Pipeline": "Kandinsky 2.2",
    "IFPipeline": "DeepFloyd IF (a pixel-space cascade)",
}
EXTRAS = ("safety_checker", "feature_extractor", "image_encoder")
"""Components a pipeline folder may list that text-to-image serving does not use."""


COMPONENTS = {
    Family.SD: ("text_encoder", "tokenizer", "unet", "vae", "scheduler"),
    Family.SDXL: ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae", "scheduler"),
}
"""What each family's folder must hold (``checkpoint.check`` checks each before anything loads)."""
SETTINGS = ("force_zeros_for_empty_prompt",)
"""Pipeline settings ``model_index.json`` may give that change what is served (all true or false)."""


@dataclass(frozen=True)
class CheckpointInfo:
    family: Family
    pipeline_class: str
    dropped: tuple[str, ...]
    """Extra components listed in the folder that are not exported."""
    folder: Path | None = None
    """The local folder (a hub id's snapshot); ``None``: not checked yet (``load`` checks it first)."""
    components: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Component name -> ``(library, class)`` as ``model_index.json`` lists them (all checked)."""
    settings: Mapping[str, bool] = field(default_factory=dict)
    """The pipeline's own settings in ``model_index.json`` (``SETTINGS``)."""


def detect(model: str, *, scheduler: str = "") -> CheckpointInfo:
    """The family of ``model`` (a folder or hub id) from its files alone, once ``checkpoint.check``
    found every component the family needs; ``scheduler`` (``--scheduler``) replaces the checkpoint's own."""
    return _detect_in(checkpoint.locate(model), model, scheduler=scheduler)


def _detect_in(folder: Path, model: str, *, scheduler: str) -> CheckpointInfo:
    index = checkpoint.read_index(folder, label=model)
    found = index.get("_class_name")
    if not isinstance(found, str):
        raise CheckpointError(
            f"{model}: {checkpoint.INDEX} names no pipeline class (_class_name is {checkpoint.short(found)}); "
            f"{checkpoint.RESTORE}"
        )
    family = PIPELINE_CLASSES.get(found)
    if family is None:
        what = KNOWN_OTHERS.get(found, "a pipeline class this project does not know")
        raise ExportError(f"{model} is a {found} checkpoint ({what}); ppo-export serves {SUPPORTED}")
    components = checkpoint.check(folder, index, COMPONENTS[family], label=model, scheduler_replaced=bool(scheduler))
    dropped = tuple(name for name in EXTRAS if _listed(index.get(name)))
    settings = {name: index[name] for name in SETTINGS if name in index}
    for name, value in settings.items():
        if not isinstance(value, bool):
            raise CheckpointError(
                f"{model}: {checkpoint.INDEX} gives {name} as {checkpoint.short(value)}, not true or false; "
                f"{checkpoint.RESTORE}"
            )
    return CheckpointInfo(family, found, dropped, folder, components, settings)


def _listed(entry) -> bool:
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] is not None and entry[1] is not None


def load(model: str, info: CheckpointInfo, *, scheduler: str = ""):
    """The pipeline in float32 (export traces on the CPU; checkpoints often ship in fp16), without
    the components serving does not use; then ``check`` refuses what it cannot serve. Each component
    loads on its own, so what goes wrong names it in one line; ``scheduler`` replaces the own one."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()  # its hint to install accelerate is noise here
    transformers.utils.logging.set_verbosity_error()  # load reports: mismatches are refused below instead
    folder = info.folder
    if folder is None or not info.components:  # made by hand: the folder is checked first
        folder = checkpoint.locate(model)
        info = _detect_in(folder, model, scheduler=scheduler)
    if info.dropped:
        logger.warning("%s: not exported (not used to generate images): %s", model, ", ".join(info.dropped))
    loaded = {
        name: checkpoint.load_component(folder, name, library, class_name, label=model)
        for name, (library, class_name) in info.components.items() if name != "scheduler"
    }
    own_scheduler = info.components["scheduler"][1]
    loaded["scheduler"] = checkpoint.load_scheduler(folder, own_scheduler, scheduler, label=model)
    cls = getattr(diffusers, info.pipeline_class)
    accepted = inspect.signature(cls.__init__).parameters
    unused = {name: None for name in EXTRAS if name in accepted}
    settings = {name: value for name, value in info.settings.items() if name in accepted}
    fixed = {name: False for name in ("requires_safety_checker", "add_watermarker") if name in accepted}  # not served
    try:  # assembled, not loaded again: diffusers would resolve every class listed, a replaced scheduler's too
        pipeline = cls(**loaded, **unused, **settings, **fixed)
    except Exception as exc:  # diffusers raises ValueError, TypeError ...
        problem = checkpoint.first_line(exc)
        raise CheckpointError(f"{model}: cannot assemble a {info.pipeline_class}: {problem}") from None
    check(pipeline, info, model)
    return pipeline


def check(pipeline, info: CheckpointInfo, model: str) -> None:
    """Refuse variants of a served class that the serving path does not implement."""
    unet, vae = pipeline.unet, pipeline.vae
    latent = int(vae.config.latent_channels)
    if int(unet.config.in_channels) != latent:
        raise ExportError(
            f"{model}: its UNet takes {unet.config.in_channels} input channels but the VAE makes {latent}: an "
            f"inpainting or image-conditioned UNet; ppo-export serves text-to-image UNets of {SUPPORTED}"
        )
    if getattr(unet.config, "time_cond_proj_dim", None) is not None:
        raise ExportError(
            f"{model}: its UNet takes a guidance-scale embedding (time_cond_proj_dim, a latent-consistency-distilled "
            "model), which is not served; LCM-LoRA-style checkpoints with an LCMScheduler are"
        )
    addition = getattr(unet.config, "addition_embed_type", None)
    expected = "text_time" if info.family == Family.SDXL else None
    if addition != expected:
        raise ExportError(f"{model}: a {info.pipeline_class} whose UNet has addition_embed_type={addition!r} is not served")
    if info.family == Family.SDXL:
        if pipeline.text_encoder is None or pipeline.text_encoder_2 is None:
            raise ExportError(f"{model}: an SDXL pipeline without both text encoders (the SDXL refiner?) is not served")
        ids = 6 * int(unet.config.addition_time_embed_dim) + int(pipeline.text_encoder_2.config.projection_dim)
        if ids != int(unet.add_embedding.linear_1.in_features):
            raise ExportError(
                f"{model}: its UNet's added embedding takes {unet.add_embedding.linear_1.in_features} values, not the "
                f"{ids} of SDXL's size conditioning (an aesthetic-score refiner?); it is not served"
            )
