"""The pipelines ``ppo-export --preset`` exports, for machines that cannot download weights.

``tiny`` is a randomly initialised Stable-Diffusion-format pipeline built from configs (the way
diffusers' own tests build theirs). ``sd15-random`` has Stable Diffusion 1.5's architecture
(860M-parameter UNet, ViT-L/14 text encoder, its VAE; 512x512) with random weights: what a GPU
benchmark needs when no checkpoint can be downloaded; ``sdxl-random`` is the same for SDXL base.
``tiny-<family>`` pipelines are small random pipelines shaped like the checkpoint families people
run (``builders.TINY_FAMILIES``). All are built by ``builders``.

Other packages add presets of trained pipelines through the entry-point group ``ppo_t2i.presets``:
an object with ``name``, ``pipeline_dir()`` and ``clip_dir()`` (folders that ``from_pretrained``
reads, or a ``PPOError`` saying how to make them). The demo world registers ``demo`` this way, so
the exporter needs nothing of it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from ppo_server.export.builders import TINY_FAMILIES

GROUP = "ppo_t2i.presets"
BUILT = ("tiny", "sd15-random", "sdxl-random", *(f"tiny-{name}" for name in TINY_FAMILIES))
"""The presets the exporter builds itself."""


class TrainedPreset(Protocol):
    name: str

    def pipeline_dir(self) -> Path: ...

    def clip_dir(self) -> Path: ...


def registered() -> dict[str, TrainedPreset]:
    """The presets other installed packages register (``GROUP``), by name."""
    found = {}
    for point in entry_points(group=GROUP):
        preset = point.load()
        found[preset.name] = preset
    return found


def names() -> tuple[str, ...]:
    """Every preset ``--preset`` takes: the built ones, then the registered ones."""
    return (*BUILT, *(name for name in sorted(registered()) if name not in BUILT))
