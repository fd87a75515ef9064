"""Which pipeline family a checkpoint is, read from its ``model_index.json`` before anything heavy
loads, and the checkpoints this project does not serve, refused by name before any work.

Served: ``StableDiffusionPipeline`` folders (SD 1.x, SD 2.x with v-prediction, SD-Turbo and other
fine-tunes, whatever their scheduler) as family ``sd``; ``StableDiffusionXLPipeline`` folders
(SDXL base, SDXL-Turbo, fine-tunes) as family ``sdxl``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ppo_server.errors import ExportError

logger = logging.getLogger(__name__)

PIPELINE_CLASSES = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}
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


@dataclass(frozen=True)
class CheckpointInfo:
    family: str
    pipeline_class: str
    dropped: tuple[str, ...]
    """Extra components listed in the folder that are not exported."""


def detect(model: str) -> CheckpointInfo:
    """The family of ``model`` (a folder or hub id) from its ``model_index.json`` alone."""
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(model)
    except Exception as exc:  # diffusers raises OSError, ValueError, EnvironmentError ...
        raise ExportError(
            f"cannot load a Stable Diffusion pipeline from {model!r}: {exc}. Pass a local folder written by "
            "save_pretrained (model_index.json at its top) or a hub id this machine can reach; "
            "`ppo-export --preset tiny` needs neither."
        ) from None
    found = str(index.get("_class_name", "?"))
    family = PIPELINE_CLASSES.get(found)
    if family is None:
        what = KNOWN_OTHERS.get(found, "a pipeline class this project does not know")
        raise ExportError(f"{model} is a {found} checkpoint ({what}); ppo-export serves {SUPPORTED}")
    dropped = tuple(name for name in EXTRAS if _listed(index.get(name)))
    return CheckpointInfo(family, found, dropped)


def _listed(entry) -> bool:
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] is not None and entry[1] is not None


def load(model: str, info: CheckpointInfo):
    """The pipeline in float32 (export traces on the CPU; checkpoints often ship in fp16), without
    the components serving does not use; then ``check`` refuses what it cannot serve."""
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()  # its hint to install accelerate is noise here
    if info.dropped:
        logger.warning("%s: not exported (not used to generate images): %s", model, ", ".join(info.dropped))
    cls = getattr(diffusers, info.pipeline_class)
    skip = {name: None for name in info.dropped}
    if info.family == "sd":
        skip["requires_safety_checker"] = False
    if info.family == "sdxl":
        skip["add_watermarker"] = False
    try:
        pipeline = cls.from_pretrained(model, dtype=torch.float32, **skip)
    except Exception as exc:  # diffusers raises OSError, ValueError, EnvironmentError...
        raise ExportError(f"cannot load the {info.pipeline_class} from {model!r}: {exc}") from exc
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
    expected = "text_time" if info.family == "sdxl" else None
    if addition != expected:
        raise ExportError(f"{model}: a {info.pipeline_class} whose UNet has addition_embed_type={addition!r} is not served")
    if info.family == "sdxl":
        if pipeline.text_encoder is None or pipeline.text_encoder_2 is None:
            raise ExportError(f"{model}: an SDXL pipeline without both text encoders (the SDXL refiner?) is not served")
        ids = 6 * int(unet.config.addition_time_embed_dim) + int(pipeline.text_encoder_2.config.projection_dim)
        if ids != int(unet.add_embedding.linear_1.in_features):
            raise ExportError(
                f"{model}: its UNet's added embedding takes {unet.add_embedding.linear_1.in_features} values, not the "
                f"{ids} of SDXL's size conditioning (an aesthetic-score refiner?); it is not served"
            )
