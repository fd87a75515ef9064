"""Scheduler names of the contract mapped to diffusers scheduler classes."""

from __future__ import annotations

CLASS_NAMES = {
    "pndm": "PNDMScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpm_multistep": "DPMSolverMultistepScheduler",
}
"""Keys are ``ppo_client.contract.SCHEDULERS``; a unit test keeps the two equal."""


def scheduler_class(name: str):
    """The class for a contract name, or for a diffusers class name as saved in a scheduler config."""
    import diffusers

    class_name = CLASS_NAMES.get(name, name)
    cls = getattr(diffusers, class_name, None)
    if cls is None or not class_name.endswith("Scheduler"):
        raise ValueError(f"unknown scheduler {name!r}")
    return cls
