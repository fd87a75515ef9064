"""Pipelines and CLIP models the exporter builds itself from configs, with random weights, for
machines that cannot download weights (see ``presets``): each is saved with ``save_pretrained`` and
then exported through the same ``from_pretrained`` path a real checkpoint takes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ppo_server.backends.schedulers import sd_scheduler

logger = logging.getLogger(__name__)

TINY_FAMILIES = ("sd15-dpm-karras", "sd15-euler-a", "sd2-v", "sdxl", "sdxl-turbo")
"""Small random pipelines shaped like the checkpoint families people run."""


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


def _save_pipeline(folder: Path, *, vae, text_encoder, tokenizer, unet, dtype=None, scheduler=None) -> Path:
    """Save an SD-format pipeline (with SD-1.x's PNDM scheduler settings unless told otherwise)."""
    from diffusers import StableDiffusionPipeline

    scheduler = scheduler or sd_scheduler()
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
        pipeline.to(dtype=dtype)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy placeholder class
    pipeline.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy placeholder class
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


SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
"""The noise schedule every SD 1.x, 2.x and SDXL checkpoint trains on."""


def family_scheduler(family: str):
    """The scheduler config each tiny family ships, as real checkpoints of that family do."""
    import diffusers

    if family == "sd15-dpm-karras":  # the common community setup: DPM++ 2M Karras
        return diffusers.DPMSolverMultistepScheduler(**SD_BETAS, algorithm_type="dpmsolver++", use_karras_sigmas=True, steps_offset=1)
    if family == "sd15-euler-a":
        return diffusers.EulerAncestralDiscreteScheduler(**SD_BETAS, steps_offset=1)
    if family == "sd2-v":  # SD 2.x 768-v: v-prediction; DDIM with trailing steps and zero terminal SNR
        return diffusers.DDIMScheduler(**SD_BETAS, prediction_type="v_prediction", timestep_spacing="trailing",
                                       rescale_betas_zero_snr=True, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    if family == "sdxl":  # SDXL base's own: Euler, leading spacing
        return diffusers.EulerDiscreteScheduler(**SD_BETAS, timestep_spacing="leading", steps_offset=1,
                                                interpolation_type="linear", use_karras_sigmas=False)
    if family == "sdxl-turbo":  # SDXL-Turbo's own: Euler ancestral, trailing spacing (1-4 steps, no guidance)
        return diffusers.EulerAncestralDiscreteScheduler(**SD_BETAS, timestep_spacing="trailing", steps_offset=1)
    raise ValueError(f"unknown tiny family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")


def _tiny_vae(seed: int):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32), norm_num_groups=8, latent_channels=4, sample_size=64,
    )


def _tiny_text_config(tokenizer, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **extra,
    )


def build_tiny_family(folder: Path, family: str, *, seed: int = 0) -> Path:
    """A tiny random pipeline shaped like ``family`` (one of ``TINY_FAMILIES``), saved with
    ``save_pretrained`` so it is exported through the path a real checkpoint takes."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    scheduler = family_scheduler(family)
    tokenizer = build_tiny_tokenizer(folder / "_tokenizer_src")
    if family.startswith("sdxl"):
        return _build_tiny_xl(folder, tokenizer, scheduler, seed=seed)
    sd2 = family == "sd2-v"
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=12 if sd2 else 8,  # 96 px native for the SD 2.x shape (768 px for the real one)
        block_out_channels=(32, 64), layers_per_block=2, cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        # SD 2.x: several heads per level, linear projections, attention upcast to fp32
        attention_head_dim=(2, 4) if sd2 else 8, use_linear_projection=sd2, upcast_attention=sd2,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_tiny_text_config(tokenizer, hidden_act="gelu" if sd2 else "quick_gelu"))
    return _save_pipeline(folder, vae=_tiny_vae(seed + 1), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                          scheduler=scheduler)


def _build_tiny_xl(folder: Path, tokenizer, scheduler, *, seed: int) -> Path:
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(  # SDXL's layout: text_time added embedding, linear projections, deeper blocks
        sample_size=8, block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64, norm_num_groups=1,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_tiny_text_config(tokenizer, hidden_act="quick_gelu", projection_dim=32))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_text_config(tokenizer, hidden_act="gelu", projection_dim=32))
    pipeline = StableDiffusionXLPipeline(
        vae=_tiny_vae(seed + 1), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True, add_watermarker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy placeholder class
    logger.info("saved a tiny SDXL-shaped pipeline to %s", folder)
    return folder


def build_sdxl_pipeline(folder: Path, *, seed: int = 0, device: str = "cpu") -> Path:
    """SDXL base's architecture with random weights (2.6B-parameter UNet, CLIP ViT-L and OpenCLIP
    ViT-bigG text encoders, its VAE; 1024x1024), saved in fp16 (about 7 GB). The byte-level tokenizer
    stands in for CLIP's BPE vocabulary, in 49,408-token embeddings."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    tokenizer = build_tiny_tokenizer(folder / "_tokenizer_src")
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20), use_linear_projection=True, transformer_layers_per_block=(1, 2, 10),
            addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
            cross_attention_dim=2048,
        )
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=1024,
            scaling_factor=0.13025, force_upcast=True,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, **ids))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
            max_position_embeddings=77, hidden_act="gelu", projection_dim=1280, **ids))
    pipeline = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer,
        unet=unet, scheduler=family_scheduler("sdxl"), add_watermarker=False,
    )
    pipeline.to(dtype=torch.float16)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy placeholder class
    pipeline.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]  # mypy sees diffusers' dummy placeholder class
    return folder
