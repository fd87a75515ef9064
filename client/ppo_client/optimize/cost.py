"""What an iteration costs, counted in the units that decide it: UNet evaluations and LLM tokens.

A rendered image costs one UNet evaluation per denoising call of its scheduler, twice that with
classifier-free guidance (the served loop guides when ``guidance_scale > 1``, as diffusers does: the
text-conditioned and the unconditioned half of the batch are both evaluated). The schedulers make
one call per step, except PNDM (Stable Diffusion 1.5's own, and the demo pipeline's), whose PLMS
steps add one warm-up call: ``steps + 1`` from 2 steps on. The served UNet's statistics count the
same (``inference_count``, an integration test checks it). The VAE and the text encoder are one
pass each and are not counted. A preview is the same request at fewer steps. Images stay a second view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Iterable

EXTRA_CALLS = {"pndm": 1, "PNDMScheduler": 1}
"""Denoising calls a scheduler makes beyond one per step (from 2 steps on), by its name in the
contract or its class (what a served pipeline reports as its own)."""


def denoiser_calls(steps: int, scheduler: str = "") -> int:
    """UNet calls of one image's denoising; an unknown scheduler (``""``) counts as the dearest."""
    extra = EXTRA_CALLS.get(scheduler, 0) if scheduler else max(EXTRA_CALLS.values())
    return int(steps) + (extra if steps > 1 else 0)


def unet_evaluations(steps: int, images: int, guidance_scale: float, scheduler: str = "") -> int:
    if not steps or not images:
        return 0
    return denoiser_calls(steps, scheduler) * int(images) * (2 if guidance_scale > 1.0 else 1)


@dataclass
class Cost:
    unet: int = 0
    """UNet evaluations of the full renders."""
    preview_unet: int = 0
    """UNet evaluations of the previews."""
    images: int = 0
    preview_images: int = 0
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    """As the endpoint reported them (``usage``); 0 where it did not."""
    scheduler: str = ""
    """The scheduler the images were denoised with (the served pipeline's own)."""

    @property
    def total_unet(self) -> int:
        return self.unet + self.preview_unet

    def to_dict(self) -> dict:
        return {**asdict(self), "total_unet": self.total_unet}

    @classmethod
    def from_dict(cls, data: dict | None) -> Cost:
        data = data or {}
        counts = {f.name: int(data.get(f.name, 0)) for f in fields(cls) if f.name != "scheduler"}
        return cls(scheduler=str(data.get("scheduler", "")), **counts)


def llm_tokens(calls: Iterable[dict]) -> tuple[int, int]:
    """Prompt and completion tokens of the recorded LLM exchanges (their ``usage``)."""
    prompt = completion = 0
    for call in calls:
        usage = call.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
    return prompt, completion
