"""The training set: procedural scenes rendered once and cached, captions drawn afresh each epoch."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ppo_demo.scenes import Scene, caption, example

logger = logging.getLogger(__name__)


class SceneSet:
    """Images for seeds ``first .. first+count-1``, cached as ``.npz`` under ``cache``."""

    def __init__(self, count: int, *, first: int = 0, cache: Path | None = None) -> None:
        self.first, self.count = first, count
        path = cache / f"scenes_{first}_{count}.npz" if cache else None
        if path is not None and path.exists():
            data = np.load(path)
            self.images = data["images"]
            self.scenes = [Scene.from_dict(s) for s in json.loads(str(data["scenes"]))]
            return
        images, scenes = [], []
        for seed in range(first, first + count):
            image, _, scene = example(seed)
            images.append(image)
            scenes.append(scene)
        self.images = np.stack(images)
        self.scenes = scenes
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, images=self.images, scenes=json.dumps([s.to_dict() for s in scenes]))
            logger.info("cached %d scenes in %s", count, path)

    def __len__(self) -> int:
        return self.count

    def indices(self, step: int, batch: int, seed: int = 0) -> np.ndarray:
        """The batch of step ``step``: deterministic, so a resumed run sees the same data."""
        return np.random.default_rng([seed, step]).integers(0, self.count, batch)

    def captions(self, indices: np.ndarray, step: int, seed: int = 0) -> list[str]:
        """A fresh caption of each scene, different at every step (the grammar is the augmentation)."""
        rng = np.random.default_rng([seed, step, 1])
        return [caption(self.scenes[i], rng) for i in indices]

    def pixels(self, indices: np.ndarray, device=None):
        """Images as a float tensor in [-1, 1], NCHW, on ``device`` (default the CPU)."""
        return to_pixels(self.images[indices], device)


def to_pixels(images: np.ndarray, device=None):
    """uint8 NHWC images as the float NCHW tensor in [-1, 1] every model here takes (moved first: less to copy)."""
    import torch

    tensor = torch.from_numpy(images)
    if device is not None:
        tensor = tensor.to(device)
    return tensor.permute(0, 3, 1, 2).float() / 127.5 - 1.0
