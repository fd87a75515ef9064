"""The contract's scheduler names, built from a checkpoint's own scheduler config.

A named scheduler is the diffusers class swapped in the way diffusers documents it,
``Class.from_config(pipeline.scheduler.config)``, plus the one setting the name fixes (Karras sigmas
or not); ``""`` is the checkpoint's own scheduler, whatever class it is. Which names a checkpoint
offers, and which step counts each can run, is found by trying them (``probe``), never assumed:
PNDM with PRK steps, for one, cannot run fewer than 4 steps.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Mapping

from ppo_client import contract


@dataclass(frozen=True)
class SchedulerSpec:
    class_name: str
    overrides: Mapping[str, object]
    label: str


SPECS: dict[str, SchedulerSpec] = {
    "pndm": SchedulerSpec("PNDMScheduler", {}, "PNDM (Stable Diffusion 1.x's own)"),
    "ddim": SchedulerSpec("DDIMScheduler", {}, "DDIM"),
    "euler": SchedulerSpec("EulerDiscreteScheduler", {}, "Euler"),
    "euler_a": SchedulerSpec("EulerAncestralDiscreteScheduler", {}, "Euler ancestral"),
    "dpm_multistep": SchedulerSpec("DPMSolverMultistepScheduler", {"use_karras_sigmas": False}, "DPM++ 2M"),
    "dpm_multistep_karras": SchedulerSpec("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "DPM++ 2M Karras"),
    "unipc": SchedulerSpec("UniPCMultistepScheduler", {}, "UniPC"),
    "lms": SchedulerSpec("LMSDiscreteScheduler", {}, "LMS"),
    "lcm": SchedulerSpec("LCMScheduler", {}, "LCM (few-step)"),
}
"""Keys are ``ppo_client.contract.SCHEDULERS``; a unit test keeps the two equal."""
PROBE_STEPS = (1, 2, 4, 20)
"""Step counts tried for every scheduler at export and at start-up."""


def scheduler_class(name: str):
    """The class for a contract name, or for a diffusers class name as saved in a scheduler config."""
    import diffusers

    class_name = SPECS[name].class_name if name in SPECS else name
    if not class_name.endswith("Scheduler"):
        raise ValueError(f"unknown scheduler {name!r}")
    try:
        cls = getattr(diffusers, class_name)
    except (AttributeError, ImportError) as exc:  # diffusers raises ImportError for a missing optional dependency
        raise ValueError(f"scheduler {name!r} ({class_name}) is not available: {str(exc).strip()}") from None
    return cls


def build_scheduler(name: str, config: Mapping):
    """The scheduler ``name`` (``""``: the config's own class) from a checkpoint's scheduler config.
    Keys the class does not take are left out (diffusers would ignore them, with a warning)."""
    cls = scheduler_class(name or str(config["_class_name"]))
    accepted = set(inspect.signature(cls.__init__).parameters)
    settings = {k: v for k, v in config.items() if k in accepted}
    return cls.from_config({**settings, **(SPECS[name].overrides if name in SPECS else {})})


def takes_generator(scheduler) -> bool:
    """Whether ``step`` draws noise (ancestral, SDE, LCM): it then gets the rows' seeded generators."""
    return "generator" in inspect.signature(scheduler.step).parameters


def steps_problem(scheduler, steps: int) -> str:
    """Why ``scheduler`` (a fresh instance) cannot run ``steps`` steps, or ``""`` when it can."""
    import torch

    try:
        scheduler.set_timesteps(steps)
        sample = torch.zeros((1, 4, 2, 2))
        for t in scheduler.timesteps:
            sample = scheduler.step(torch.zeros_like(sample), t, scheduler.scale_model_input(sample, t), return_dict=False)[0]
    except Exception as exc:  # diffusers raises ValueError, IndexError, numpy broadcast errors ...
        return f"{type(exc).__name__}: {exc}"
    return ""


@dataclass(frozen=True)
class Probe:
    offered: tuple[str, ...]
    """Contract names that build from this config and run at 20 steps."""
    left_out: Mapping[str, str]
    """Name -> why it is not offered."""
    unsupported_steps: Mapping[str, tuple[int, ...]]
    """Offered name -> probed step counts it refuses (requests for them are refused)."""


def probe(config: Mapping) -> Probe:
    offered, left_out, unsupported = [], {}, {}
    for name in contract.SCHEDULERS:
        try:
            build_scheduler(name, config)
        except Exception as exc:
            left_out[name] = f"{type(exc).__name__}: {exc}"
            continue
        problems = {steps: steps_problem(build_scheduler(name, config), steps) for steps in PROBE_STEPS}
        if problems[max(PROBE_STEPS)]:
            left_out[name] = problems[max(PROBE_STEPS)]
            continue
        offered.append(name)
        if any(problems.values()):
            unsupported[name] = tuple(s for s, p in problems.items() if p)
    return Probe(tuple(offered), left_out, unsupported)


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
