"""An independent judge of what an image shows: a small CNN trained on rendered scenes.

It reads the main object's colour and shape and the background colour off the pixels, so the
demo pipeline's prompt-following can be measured without looking at images by eye.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ppo_client.demo.scenes import COLOURS, SHAPES, Scene
from ppo_server.demo_training.data import SceneSet
from ppo_server.demo_training.training_loop import TrainConfig, Trainer

logger = logging.getLogger(__name__)

CONFIG = TrainConfig(steps=4000, batch=128, lr=2e-3, warmup=50, ema_decay=0.99)
COLOUR_NAMES = tuple(COLOURS)
HEADS = {"main_colour": len(COLOUR_NAMES), "background": len(COLOUR_NAMES), "main_shape": len(SHAPES)}


class Judge(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers, channels = [], 3
        for width in (32, 64, 128, 128):
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.SiLU()]
            channels = width
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.SiLU())
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
    for image, kernel, unchanged in zip(pixels, kernels, keep):
        if unchanged:
            out.append(image)
            continue
        x = nn.functional.conv2d(image[:, None], kernel.view(1, 1, 1, 7), padding=(0, 3))
        out.append(nn.functional.conv2d(x, kernel.view(1, 1, 7, 1), padding=(3, 0))[:, 0])
    return torch.stack(out)


def train_judge(data: SceneSet, folder: Path, config: TrainConfig = CONFIG, device: str = "cpu") -> Judge:
    torch.manual_seed(config.seed)
    judge = Judge()
    trainer = Trainer("judge", judge, config, folder / "checkpoints" / "judge", device)

    def loss_fn(step: int) -> torch.Tensor:
        indices = data.indices(step, config.batch, config.seed + 3)
        pixels = soften(data.pixels(indices), torch.Generator().manual_seed(step)).to(device)
        outputs = judge(pixels)
        targets = labels([data.scenes[i] for i in indices])
        return sum(nn.functional.cross_entropy(outputs[k], targets[k].to(device)) for k in HEADS)

    ema = trainer.run(loss_fn).to("cpu")
    torch.save(ema.state_dict(), folder / "judge.pt")
    return ema


def load_judge(path: Path) -> Judge:
    judge = Judge()
    judge.load_state_dict(torch.load(path))
    return judge.eval()


@torch.no_grad()
def agreement(judge: Judge, images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Fraction of images whose judged attribute equals the scene's, per attribute."""
    judge.eval()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    outputs = judge(pixels)
    targets = labels(scenes)
    return {k: float(outputs[k].argmax(1).eq(targets[k]).float().mean()) for k in HEADS}
