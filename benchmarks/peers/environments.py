"""Each peer runtime in a virtualenv of its own, made on first use from pinned PyPI releases.

Why not the project's environment: ``optimum-onnx`` 0.1.0 requires ``transformers<4.58`` and
``optimum-intel`` 2.2.0 fails to import next to the project's transformers 5.2x (it imports a class
later releases removed), and the two cannot share one environment either (they pin different
``optimum`` releases). So each peer gets the releases its own resolver picks, pinned here, in
``$XDG_CACHE_HOME/ppo/peer-venvs/<peer>-<hash of the pins>``; the benchmark runs
``peers/pipelines.py`` there as a subprocess. torch is pinned to the project environment's release so
both sides run the same PyTorch (and the same pip configuration picks the same build of it).

A failed install leaves no environment behind; ``ensure`` raises ``PeerUnavailable`` with pip's last
lines, which the benchmark and the tests report as the reason a peer was skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

READY = ".ready"


class PeerUnavailable(RuntimeError):
    """A peer's environment could not be made (no network to PyPI, a release withdrawn ...)."""


@dataclass(frozen=True)
class Peer:
    name: str
    """The runtime, as ``pipelines.py --runtime`` names it."""
    label: str
    """How tables name it."""
    requirements: tuple[str, ...]
    """Pinned releases (torch is added at install time: the project environment's own release)."""
    check: str
    """A statement that must run in the new environment before it counts as made."""
    drop_if_broken: tuple[str, ...] = ()
    """Modules pulled in as dependencies that the pipeline does not use: where one fails to import it
    is uninstalled (PyPI's torchvision is built against PyPI's torch, not the CPU build of the same
    release, and a torchvision that cannot load makes transformers' image processors fail on import)."""


PEERS = (
    Peer(
        "onnxruntime",
        "optimum-onnx (ONNX Runtime)",
        ("optimum-onnx[onnxruntime]==0.1.0", "optimum==2.1.0", "onnxruntime==1.32.0", "transformers==4.57.6",
         "huggingface_hub==0.36.2", "diffusers==0.39.0", "numpy==1.26.4"),
        "from optimum.onnxruntime import ORTStableDiffusionPipeline",
    ),
    Peer(
        "openvino",
        "optimum-intel (OpenVINO)",
        ("optimum-intel[openvino]==2.2.0", "optimum==2.3.0", "openvino==2026.4.1", "transformers==5.5.4",
         "diffusers==0.39.0", "numpy==1.26.4"),
        "from optimum.intel import OVStableDiffusionPipeline",
        drop_if_broken=("torchvision",),
    ),
)


def peer(name: str) -> Peer:
    for p in PEERS:
        if p.name == name:
            return p
    raise KeyError(f"unknown peer {name!r}; choose one of {', '.join(p.name for p in PEERS)}")


def torch_requirement() -> str:
    """The project environment's torch release (its public part: ``2.13.0+cpu`` -> ``torch==2.13.0``)."""
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"


def environment_dir(p: Peer, root: Path | None = None) -> Path:
    from ppo_server.cache import cache_dir

    pins = "\n".join(sorted((*p.requirements, torch_requirement()))) + f"\npython {sys.version_info[:2]}"
    digest = hashlib.sha256(pins.encode()).hexdigest()[:12]
    return (root or cache_dir("peer-venvs")) / f"{p.name}-{digest}"


def python_of(folder: Path) -> Path:
    return folder / "bin" / "python"


def ensure(p: Peer, root: Path | None = None, *, timeout_s: float = 1800) -> Path:
    """The python of ``p``'s environment, made first if it is not there yet (minutes: torch and the
    runtime are installed from PyPI)."""
    folder = environment_dir(p, root)
    if (folder / READY).exists():
        return python_of(folder)
    if folder.exists():  # an install that was cut short
        shutil.rmtree(folder)
    logger.info("making the %s peer environment in %s (once)", p.name, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        _run([sys.executable, "-m", "venv", str(folder)], env, timeout_s)
        pip = [str(python_of(folder)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, torch_requirement(), *p.requirements], env, timeout_s)
        for module in p.drop_if_broken:
            if subprocess.run([str(python_of(folder)), "-c", f"import {module}"], env=env, capture_output=True).returncode:
                logger.info("%s: %s does not import next to this torch; uninstalling it", p.name, module)
                _run([str(python_of(folder)), "-m", "pip", "uninstall", "--yes", "--quiet", module], env, timeout_s)
        _run([str(python_of(folder)), "-c", p.check], env, timeout_s)
    except PeerUnavailable:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    (folder / READY).write_text("\n".join((*p.requirements, torch_requirement())) + "\n")
    return python_of(folder)


def _run(command: list[str], env: dict, timeout_s: float) -> None:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"`{' '.join(command[:4])} ...` took over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise PeerUnavailable(f"`{' '.join(command[:4])} ...` failed (exit {done.returncode}):\n{tail}")
