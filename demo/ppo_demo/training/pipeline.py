"""Assemble the trained parts into the artefacts the project ships (half precision, to stay small):

    DIR/pipeline/   a Stable Diffusion pipeline folder (StableDiffusionPipeline.from_pretrained loads it)
    DIR/clip/       the whole CLIP (text and image towers), its tokenizer and image processor
    DIR/judge.pt    the scene judge used to measure prompt-following
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from ppo_demo.training.clip import image_processor
from ppo_server.backends.schedulers import sd_scheduler

logger = logging.getLogger(__name__)


def text_encoder_of(clip):
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel(clip.config.text_config)
    # transformers 5 nests a CLIPTextModel inside CLIPModel; 4.x nests the transformer directly
    target = getattr(text_encoder, "text_model", text_encoder)
    target.load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval()


def assemble(trained: Path, out: Path) -> Path:
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPModel, CLIPTokenizer

    clip = CLIPModel.from_pretrained(trained / "clip")
    tokenizer = CLIPTokenizer.from_pretrained(trained / "clip")
    pipeline = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(trained / "vae"),
        text_encoder=text_encoder_of(clip),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(trained / "unet"),
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    for name in ("pipeline", "clip"):
        shutil.rmtree(out / name, ignore_errors=True)
    half = pipeline.to(torch.float16)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy placeholder class
    half.save_pretrained(out / "pipeline", safe_serialization=True)
    clip.half().save_pretrained(out / "clip", safe_serialization=True)
    tokenizer.save_pretrained(out / "clip")
    image_processor().save_pretrained(out / "clip")
    judge = torch.load(trained / "judge.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in judge.items()}, out / "judge.pt")
    logger.info("wrote the demo models to %s", out)
    return out
