"""The demo world: procedural scenes, virtual users with known taste, their rating data, the small
models trained on it, and the walkthrough ``make demo`` runs. The SDK does not need it; it plugs in
as the provider of known true taste (``ppo_client.optimize.truth``)."""

from __future__ import annotations

import os
from pathlib import Path

MODELS_ENV = "PPO_DEMO_MODELS"


def models_dir() -> Path:
    """The trained demo models: shipped inside this package (``ppo_demo/models``), or
    ``$PPO_DEMO_MODELS`` where a copy lives elsewhere."""
    override = os.environ.get(MODELS_ENV)
    return Path(override) if override else Path(__file__).resolve().parent / "models"
