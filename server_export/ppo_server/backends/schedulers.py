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


def sd_scheduler(prediction_type: str = "epsilon"):
    """Stable Diffusion 1.x's scheduler: PNDM on the scaled-linear schedule.

    ``clip_sample=False`` is in SD's own config too: DDIM, built from this config when a request asks
    for it, would otherwise clamp its predicted latents to [-1, 1] and draw noise."""
    from diffusers import PNDMScheduler

    return PNDMScheduler.from_config({
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
        "skip_prk_steps": True, "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False,
        "prediction_type": prediction_type,
    })
