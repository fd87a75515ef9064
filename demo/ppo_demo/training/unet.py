"""The demo UNet: text-conditioned denoising of the VAE's latents (8x8x8), Stable Diffusion's recipe.

Latents are computed once with the trained VAE; the frozen CLIP text tower encodes a fresh caption
of each scene every step (one in ten replaced by the empty prompt, for classifier-free guidance);
epsilon prediction on SD's scaled-linear schedule, min-SNR loss weighting, EMA weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ppo_demo.training.data import SceneSet
from ppo_demo.training.training_loop import TrainConfig, Trainer
from ppo_server.backends.schedulers import sd_scheduler

logger = logging.getLogger(__name__)

CONFIG = TrainConfig(steps=3000, batch=64, lr=5e-4, warmup=200, ema_decay=0.999, checkpoint_every=200)
UNCONDITIONAL_FRACTION = 0.1
MIN_SNR_GAMMA = 5.0


def noise_scheduler(prediction: str = "epsilon"):
    """The training-time noise schedule: the shipped pipeline's own (one definition of the betas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(sd_scheduler(prediction).config)


def loss_weight(snr: torch.Tensor, prediction: str) -> torch.Tensor:
    """Per-sample weight of the squared error in what the UNet predicts.

    In terms of the clean latents' error both weightings cap the low-noise end at ``MIN_SNR_GAMMA``;
    epsilon's (min-SNR) weighs the high-noise end by the SNR itself (near 0), v's (min-SNR + 1) by
    about 1, where the layout and shapes of an image are decided."""
    if prediction == "epsilon":
        return torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
    if prediction == "v_prediction":
        return (torch.clamp(snr, max=MIN_SNR_GAMMA) + 1) / (snr + 1)
    raise ValueError(f"unknown prediction type {prediction!r}")


WIDTHS = (64, 128)
"""Channels at the 8x8 and 4x4 levels of the shipped UNet (6.3M parameters)."""


def build_unet(latent_channels: int, cross_attention_dim: int, latent_side: int = 8, widths: tuple[int, ...] = WIDTHS):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=latent_side,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=widths,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=32,
        norm_num_groups=32,
    )


@torch.no_grad()
def encode_latents(vae, data: SceneSet, batch: int = 256, device: str = "cpu") -> torch.Tensor:
    """Scaled posterior means of every training image (what the UNet learns to produce)."""
    vae.eval().to(device)
    chunks = []
    for start in range(0, len(data), batch):
        indices = np.arange(start, min(start + batch, len(data)))
        chunks.append(vae.encode(data.pixels(indices, device)).latent_dist.mode() * vae.config.scaling_factor)
    return torch.cat(chunks)


def _fingerprint(vae) -> str:
    """Names the latents cache after the VAE's weights: another VAE in the same folder encodes afresh."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode() + tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def train_unet(data: SceneSet, vae, text_encoder, tokenizer, folder: Path, config: TrainConfig = CONFIG,
               device: str = "cpu", prediction: str = "epsilon", init=None, name: str = "unet",
               widths: tuple[int, ...] = WIDTHS):
    """From ``init``'s weights when given (else freshly initialised); checkpoints under ``checkpoints/name``."""
    latents_path = folder / "checkpoints" / "unet" / f"latents_{_fingerprint(vae)}.pt"
    if latents_path.exists():
        latents = torch.load(latents_path, map_location=device)
    else:
        latents = encode_latents(vae, data, device=device)
        latents_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(latents, latents_path)
    text_encoder.eval().requires_grad_(False).to(device)
    torch.manual_seed(config.seed)
    unet = build_unet(latents.shape[1], text_encoder.config.hidden_size, latents.shape[-1], widths)
    if init is not None:
        unet.load_state_dict(init.state_dict())
    scheduler = noise_scheduler(prediction)
    alphas = scheduler.alphas_cumprod.to(device)
    trainer = Trainer(name, unet, config, folder / "checkpoints" / name, device)

    def loss_fn(step: int) -> torch.Tensor:
        rng = np.random.default_rng([config.seed, step, 2])
        indices = data.indices(step, config.batch, config.seed + 2)
        captions = data.captions(indices, step, config.seed + 2)
        captions = ["" if rng.random() < UNCONDITIONAL_FRACTION else c for c in captions]
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            hidden = text_encoder(ids)[0]
        x0 = latents[torch.from_numpy(indices).to(device)]
        # noise drawn on the CPU: the same numbers whatever the device
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31)))).to(device)
        t = torch.from_numpy(rng.integers(0, scheduler.config.num_train_timesteps, len(indices))).to(device)
        noisy = scheduler.add_noise(x0, noise, t)
        target = noise if prediction == "epsilon" else scheduler.get_velocity(x0, noise, t)
        weight = loss_weight(alphas[t] / (1 - alphas[t]), prediction)
        return (weight.view(-1, 1, 1, 1) * (unet(noisy, t, hidden).sample - target).pow(2)).mean()

    return trainer.run(loss_fn).to("cpu")
