"""Pipelines the exporter can build itself, for machines that cannot download weights.

``demo`` is the small pipeline trained on the demo world's procedural scenes (see
``ppo_server.demo_training``); its weights ship with the repository.

``tiny`` is a randomly initialised Stable-Diffusion-format pipeline built from configs (the way
diffusers' own tests build theirs). It is saved with ``save_pretrained`` and then exported through
the same ``from_pretrained`` path a real checkpoint takes, so that path is what gets tested.

``sd15-random`` has Stable Diffusion 1.5's architecture (860M-parameter UNet, ViT-L/14 text encoder,
its VAE; 512x512) with random weights: what a GPU benchmark needs when no checkpoint can be
downloaded. Its images are noise; its cost is a real SD-1.5's.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

PRESETS = ("tiny", "demo", "sd15-random")
DEMO_MODELS_ENV = "PPO_DEMO_MODELS"


def demo_models_dir() -> Path:
    """The trained demo world (``demo_models/`` in the repository; ``$PPO_DEMO_MODELS`` overrides)."""
    override = os.environ.get(DEMO_MODELS_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[3] / "demo_models"


def demo_pipeline_dir() -> Path:
    """The demo pipeline folder, or an error that says how to rebuild it."""
    from ppo_server.errors import ExportError

    folder = demo_models_dir() / "pipeline"
    if not (folder / "model_index.json").exists():
        raise ExportError(
            f"the demo pipeline is missing from {folder}; rebuild it with "
            "`python -m ppo_server.demo_training all` or point $PPO_DEMO_MODELS at a copy"
        )
    return folder


def demo_clip_dir() -> Path:
    folder = demo_models_dir() / "clip"
    if not (folder / "config.json").exists():
        from ppo_server.errors import ExportError

        raise ExportError(f"the demo CLIP is missing from {folder}; rebuild it with `python -m ppo_server.demo_training clip`")
    return folder


def build_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """A randomly initialised small ``CLIPModel`` and its tokenizer, saved with ``save_pretrained`` (image side 32)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tokenizer = build_tiny_tokenizer(Path(folder) / "_tokenizer_src")
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                       "num_attention_heads": 4, "num_hidden_layers": 2},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def _byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2's convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def build_tiny_tokenizer(folder: Path):
    """A CLIP tokenizer with a byte-level vocabulary and no merges: every prompt is encodable."""
    from transformers import CLIPTokenizer

    alphabet = _byte_level_alphabet()
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.model_max_length = 77
    return tokenizer


def _save_pipeline(folder: Path, *, vae, text_encoder, tokenizer, unet, dtype=None) -> Path:
    """Save an SD-format pipeline with SD-1.x's PNDM scheduler settings."""
    from diffusers import StableDiffusionPipeline

    from ppo_server.backends.schedulers import sd_scheduler

    scheduler = sd_scheduler()
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if dtype is not None:
        pipeline.to(dtype=dtype)
    pipeline.save_pretrained(folder, safe_serialization=True)
    logger.info("saved a pipeline to %s", folder)
    return Path(folder)


def build_sd15_pipeline(folder: Path, *, seed: int = 0, device: str = "cpu") -> Path:
    """Stable Diffusion 1.5's architecture with random weights, saved in fp16 (1.9 GB).

    ``device="cuda"`` initialises the weights on a GPU (seconds instead of a minute); the byte-level
    tokenizer of ``tiny`` stands in for CLIP's BPE vocabulary, in a 49,408-token embedding."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = build_tiny_tokenizer(folder / "_tokenizer_src")
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the defaults are SD-1.x's
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    return _save_pipeline(folder, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                          dtype=torch.float16)


def build_tiny_pipeline(folder: Path, *, seed: int = 0) -> Path:
    """Build, seed and save the tiny pipeline under ``folder``; returns the folder."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = build_tiny_tokenizer(folder / "_tokenizer_src")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        norm_num_groups=8,
        latent_channels=4,
        sample_size=64,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return _save_pipeline(folder, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet)
