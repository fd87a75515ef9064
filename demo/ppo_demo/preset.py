"""The ``demo`` preset of ``ppo-export``: the pipeline and CLIP trained on the demo world's scenes
(see ``ppo_demo.training``), shipped inside this package. Registered with the exporter through the
``ppo_t2i.presets`` entry point, so the exporter needs nothing of the demo world."""

from __future__ import annotations

from pathlib import Path

from ppo_demo import models_dir
from ppo_demo.errors import DemoModelsError


def demo_pipeline_dir() -> Path:
    """The demo pipeline folder, or an error that says how to rebuild it."""
    folder = models_dir() / "pipeline"
    if not (folder / "model_index.json").exists():
        raise DemoModelsError(f"the demo pipeline is missing from {folder}; rebuild it with `ppo-demo train all` or point "
                        "$PPO_DEMO_MODELS at a copy")
    return folder


def demo_clip_dir() -> Path:
    folder = models_dir() / "clip"
    if not (folder / "config.json").exists():
        raise DemoModelsError(f"the demo CLIP is missing from {folder}; rebuild it with `ppo-demo train clip`")
    return folder


class DemoPreset:
    name = "demo"

    def pipeline_dir(self) -> Path:
        return demo_pipeline_dir()

    def clip_dir(self) -> Path:
        return demo_clip_dir()


PRESET = DemoPreset()
