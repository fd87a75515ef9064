"""The demo VAE: an ``AutoencoderKL`` whose latents are 8x smaller per side than the 64x64 scenes
(``LatentShape`` tries other grids).

Eight latent channels (Stable Diffusion has four) keep background patterns and outlines, which
the virtual users care about, at an 8x8 latent grid that makes every UNet step cheap.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ppo_demo.training.data import SceneSet, to_pixels
from ppo_demo.training.training_loop import TrainConfig, Trainer

logger = logging.getLogger(__name__)

CONFIG = TrainConfig(steps=3000, batch=24, lr=1e-3, warmup=100, ema_decay=0.998)
KL_WEIGHT = 1e-6


@dataclass(frozen=True)
class LatentShape:
    """The latent grid: 64 / ``downsample`` per side, ``channels`` deep (the shipped VAE: 8x8x8)."""

    channels: int = 8
    downsample: int = 8

    def __post_init__(self) -> None:
        if self.downsample not in (2, 4, 8) or self.channels < 1:
            raise ValueError(f"latents must be 2, 4 or 8 times smaller per side and >= 1 deep: {self}")


def build_vae(shape: LatentShape = LatentShape()):
    from diffusers import AutoencoderKL

    blocks = {2: 2, 4: 3, 8: 4}[shape.downsample]
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(16, 32, 64, 64)[:blocks],
        layers_per_block=1,
        latent_channels=shape.channels,
        norm_num_groups=8,
        sample_size=64,
    )


def train_vae(data: SceneSet, folder: Path, config: TrainConfig = CONFIG, device: str = "cpu",
              shape: LatentShape = LatentShape()):
    torch.manual_seed(config.seed)
    vae = build_vae(shape)
    trainer = Trainer("vae", vae, config, folder / "checkpoints" / "vae", device)

    def loss_fn(step: int) -> torch.Tensor:
        x = data.pixels(data.indices(step, config.batch, config.seed), device)
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        error = reconstruction - x
        return error.abs().mean() + error.pow(2).mean() + KL_WEIGHT * posterior.kl().mean()

    ema = trainer.run(loss_fn)
    with torch.no_grad():
        sample = data.pixels(data.indices(10**6, 512, config.seed), device)
        latents = ema.encode(sample).latent_dist.mode()
        ema.register_to_config(scaling_factor=float(1.0 / latents.std()))
        error = (ema.decode(latents).sample - sample).abs().mean() * 127.5
    logger.info("vae: scaling factor %.4f, mean reconstruction error %.2f/255", ema.config.scaling_factor, error)
    ema.to("cpu").save_pretrained(folder / "vae")
    return ema, float(error)


@torch.no_grad()
def with_standard_latents(vae, pixels: torch.Tensor):
    """A copy of ``vae`` whose latents of ``pixels`` have zero mean and unit variance in every channel.

    A change of latent coordinates folded into the two 1x1 quant convolutions: images decode exactly
    as before, but under the noise schedule every channel now has the same signal-to-noise ratio;
    with one scaling factor for all, a channel a third as spread as another is drowned in noise at a
    ninth of its noise level. ``scaling_factor`` becomes 1."""
    vae = copy.deepcopy(vae).float().eval()
    raw = vae.encode(pixels).latent_dist.mode()
    mean, std = raw.mean((0, 2, 3)), raw.std((0, 2, 3))
    channels = len(mean)
    encode, decode = vae.quant_conv, vae.post_quant_conv  # [mean; log-variance] out; latents in
    encode.weight[:channels] /= std.view(-1, 1, 1, 1)
    encode.bias[:channels] = (encode.bias[:channels] - mean) / std
    encode.bias[channels:] -= 2 * torch.log(std)
    decode.bias += decode.weight[:, :, 0, 0] @ mean
    decode.weight *= std.view(1, -1, 1, 1)
    vae.register_to_config(scaling_factor=1.0)
    return vae


@torch.no_grad()
def vae_round_trip(vae, images: np.ndarray, batch: int = 256, progress: str | None = None) -> np.ndarray:
    """Images encoded and decoded by a VAE: the best any UNet could hand its decoder.

    In batches of ``batch`` images (memory), with a progress bar titled ``progress`` if given."""
    vae = vae.float().cpu().eval()
    starts: Iterable[int] = range(0, len(images), batch)
    if progress is not None:
        from rich.progress import track

        starts = track(starts, progress)
    out = []
    for start in starts:
        decoded = vae.decode(vae.encode(to_pixels(images[start : start + batch])).latent_dist.mode()).sample
        out.append(((decoded.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy().astype(np.uint8))
    return np.concatenate(out)
