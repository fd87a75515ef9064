"""The project's per-user cache folder (``$XDG_CACHE_HOME/ppo``): things built once and reused."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).joinpath("ppo", *parts)
