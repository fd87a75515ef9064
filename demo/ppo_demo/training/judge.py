"""An independent judge of what an image shows: a small CNN trained on rendered scenes.

It reads the main object's colour and shape and the background colour off the pixels, so the
demo pipeline's prompt-following can be measured without looking at images by eye.

Half of each batch is scenes rendered afresh for that step: a judge trained for many epochs on a
fixed set learns it by heart (99.9% right on it, 86% on new scenes). The other half is the fixed
training set after a round trip through the demo VAE (when one is given): generated images are
decoded by that VAE, so a judge that has only seen crisp renders misreads their soft edges.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ppo_demo.scenes import COLOURS, SHAPES, Scene, example
from ppo_demo.training.data import SceneSet, to_pixels
from ppo_demo.training.training_loop import TrainConfig, Trainer
from ppo_demo.training.vae import vae_round_trip

logger = logging.getLogger(__name__)

CONFIG = TrainConfig(steps=4000, batch=128, lr=2e-3, warmup=50, ema_decay=0.99)
FRESH_FIRST = 100_000
"""Seeds of the judge's fresh scenes start here: above the training set's, below the held-out ones."""
WIDTHS = (32, 64, 128, 128)
"""Channels of the four stride-2 stages (64x64 down to 4x4); a full-resolution stem comes first."""
COLOUR_NAMES = tuple(COLOURS)
HEADS = {"main_colour": len(COLOUR_NAMES), "background": len(COLOUR_NAMES), "main_shape": len(SHAPES)}


class Judge(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        def conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.SiLU()]

        layers, channels = conv(3, 16), 16  # thin outlines and small objects need full resolution
        for width in WIDTHS:
            layers += conv(channels, width, 2) + conv(width, width)
            channels = width
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 4 * 4, 256), nn.SiLU())
        self.heads = nn.ModuleDict({name: nn.Linear(256, size) for name, size in HEADS.items()})

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(pixels)
        return {name: head(features) for name, head in self.heads.items()}


def labels(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    return {
        "main_colour": torch.tensor([COLOUR_NAMES.index(s.main.colour) for s in scenes]),
        "background": torch.tensor([COLOUR_NAMES.index(s.background) for s in scenes]),
        "main_shape": torch.tensor([SHAPES.index(s.main.shape) for s in scenes]),
    }


def soften(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur half of a batch by a random amount: a judge must read soft images, not just crisp edges."""
    sigmas = torch.rand(len(pixels), generator=generator) * 1.5 + 0.3
    keep = torch.rand(len(pixels), generator=generator) < 0.5
    offsets = torch.arange(-3, 4, dtype=torch.float32)
    kernels = torch.exp(-(offsets[None] ** 2) / (2 * sigmas[:, None] ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)
    out = []
    for image, kernel, unchanged in zip(pixels, kernels, keep, strict=True):
        if unchanged:
            out.append(image)
            continue
        x = nn.functional.conv2d(image[:, None], kernel.view(1, 1, 1, 7), padding=(0, 3))
        out.append(nn.functional.conv2d(x, kernel.view(1, 1, 7, 1), padding=(3, 0))[:, 0])
    return torch.stack(out)


def train_judge(data: SceneSet, folder: Path, config: TrainConfig = CONFIG, device: str = "cpu", vae=None) -> Judge:
    """With ``vae``, the fixed half of each batch is its round trip through it (computed once, cached)."""
    torch.manual_seed(config.seed)
    fixed = _round_trips(data, vae, folder / "data") if vae is not None else data.images
    judge = Judge()
    trainer = Trainer("judge", judge, config, folder / "checkpoints" / "judge", device)

    def loss_fn(step: int) -> torch.Tensor:
        first = FRESH_FIRST + step * config.batch
        fresh = [example(seed) for seed in range(first, first + (config.batch + 1) // 2)]
        images, scenes = [image for image, _, _ in fresh], [scene for _, _, scene in fresh]
        indices = data.indices(step, config.batch - len(fresh), config.seed + 3)
        pixels = to_pixels(np.concatenate([np.stack(images), fixed[indices]]))
        pixels = soften(pixels, torch.Generator().manual_seed(step)).to(device)
        outputs = judge(pixels)
        targets = labels(scenes + [data.scenes[i] for i in indices])
        losses = (nn.functional.cross_entropy(outputs[k], targets[k].to(device)) for k in HEADS)
        return sum(losses, start=torch.zeros((), device=device))

    ema = trainer.run(loss_fn).to("cpu")
    torch.save(ema.state_dict(), folder / "judge.pt")
    return ema


def _round_trips(data: SceneSet, vae, cache: Path) -> np.ndarray:
    path = cache / f"round_trips_{data.first}_{data.count}.npy"
    if path.exists():
        return np.load(path)
    images = vae_round_trip(vae, data.images, progress="VAE round trips")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, images)
    return images


def load_judge(path: Path) -> Judge:
    judge = Judge()
    judge.load_state_dict(torch.load(path))
    return judge.eval()


@torch.no_grad()
def hits(judge: Judge, images: np.ndarray, scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Per attribute, whether each image's judged value equals its scene's."""
    judge.eval()
    outputs = judge(to_pixels(images))
    targets = labels(scenes)
    return {k: outputs[k].argmax(1).eq(targets[k]).numpy() for k in HEADS}


def agreement(judge: Judge, images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Fraction of images whose judged attribute equals the scene's, per attribute."""
    return {k: float(right.mean()) for k, right in hits(judge, images, scenes).items()}
