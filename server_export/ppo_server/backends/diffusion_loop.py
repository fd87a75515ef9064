"""The batched text-to-image loop, free of Triton so it can be tested in-process.

It follows diffusers' ``StableDiffusionPipeline.__call__`` step for step (same tokenization, same
seeded initial latents, classifier-free guidance with the unconditional rows first, the same
scheduler calls and post-processing), but runs many requests in one batch: rows that share steps,
size, scheduler and whether guidance is on go through one loop, one UNet call per step.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ppo_client.generation import GenerationRequest
from ppo_server.backends.schedulers import scheduler_class

logger = logging.getLogger(__name__)

Encode = Callable[[np.ndarray], np.ndarray]
"""token ids [n, length] int64 -> hidden states [n, length, dim] float32"""
Denoise = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(latents [n, c, h, w], timesteps [n, 1], hidden states [n, length, dim]) -> noise prediction"""
Decode = Callable[[np.ndarray], np.ndarray]
"""scaled latents [n, c, h, w] -> images [n, 3, H, W] in [-1, 1]"""


@dataclass(frozen=True)
class GroupKey:
    steps: int
    height: int
    width: int
    scheduler: str
    guided: bool


def uses_guidance(guidance_scale: float) -> bool:
    # diffusers turns classifier-free guidance off at guidance_scale <= 1
    return guidance_scale > 1.0


class DiffusionLoop:
    def __init__(
        self,
        *,
        tokenizer,
        scheduler_config: Mapping,
        latent_channels: int,
        vae_scale_factor: int,
        encode: Encode,
        denoise: Denoise,
        decode: Decode,
    ) -> None:
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.latent_channels = latent_channels
        self.vae_scale_factor = vae_scale_factor
        self.encode = encode
        self.denoise = denoise
        self.decode = decode
        self._pristine: dict[str, object] = {}

    def group_key(self, row: GenerationRequest) -> GroupKey:
        return GroupKey(row.steps, row.height, row.width, row.scheduler, uses_guidance(row.guidance_scale))

    def tokenize(self, prompts: Sequence[str]) -> np.ndarray:
        max_length = self.tokenizer.model_max_length
        ids = self.tokenizer(
            list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="np"
        ).input_ids
        for full in self.tokenizer(list(prompts), truncation=False).input_ids:  # one batched call, for the warning
            if len(full) > max_length:
                removed = self.tokenizer.decode(full[max_length - 1 : -1])
                logger.warning(
                    "prompt truncated to %d tokens; this part was dropped: %r", max_length, removed
                )
        return ids.astype(np.int64)

    def initial_latents(self, rows: Sequence[GenerationRequest], key: GroupKey, sigma: float) -> torch.Tensor:
        shape = (1, self.latent_channels, key.height // self.vae_scale_factor, key.width // self.vae_scale_factor)
        latents = [
            torch.randn(shape, generator=torch.Generator("cpu").manual_seed(row.seed), dtype=torch.float32)
            for row in rows
        ]
        return torch.cat(latents) * sigma

    def new_scheduler(self, name: str):
        """A fresh scheduler (they keep per-run state); ``""`` means the one the model was exported with.

        Copies of a pristine instance: ``from_config`` took over a second per call inside the
        python backend's stub, a deep copy takes well under a millisecond.
        """
        if name not in self._pristine:
            self._pristine[name] = scheduler_class(name or self.scheduler_config["_class_name"]).from_config(
                self.scheduler_config
            )
        return copy.deepcopy(self._pristine[name])

    def warm_up(self, names: Sequence[str] = ("",)) -> None:
        """Build the schedulers and take one step each, so the first request does not pay for it."""
        sample = torch.zeros((1, self.latent_channels, 2, 2))
        for name in names:
            scheduler = self.new_scheduler(name)
            scheduler.set_timesteps(2)
            t = scheduler.timesteps[0]
            scheduler.step(scheduler.scale_model_input(sample, t), t, sample, return_dict=False)

    def run(self, rows: Sequence[GenerationRequest]) -> list[np.ndarray]:
        """Generate one image per row; all rows must share one ``group_key``. Returns HxWx3 uint8."""
        keys = {self.group_key(row) for row in rows}
        if len(keys) != 1:
            raise ValueError(f"rows of one loop must share steps, size, scheduler and guidance: {keys}")
        (key,) = keys
        n = len(rows)

        # 1. encode the prompts (negative prompts first, as diffusers orders them)
        prompts = [row.prompt for row in rows]
        if key.guided:
            prompts = [row.negative_prompt for row in rows] + prompts
        hidden = self.encode(self.tokenize(prompts))

        # 2. timesteps and seeded initial latents
        scheduler = self.new_scheduler(key.scheduler)
        scheduler.set_timesteps(key.steps)
        latents = self.initial_latents(rows, key, float(scheduler.init_noise_sigma))
        guidance = torch.tensor([row.guidance_scale for row in rows], dtype=torch.float32).reshape(n, 1, 1, 1)

        # 3. denoise: one UNet call per step for every row of the group
        for t in scheduler.timesteps:
            model_input = torch.cat([latents, latents]) if key.guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            timesteps = np.full((model_input.shape[0], 1), float(t), dtype=np.float32)
            noise = torch.from_numpy(self.denoise(model_input.numpy(), timesteps, hidden))
            if key.guided:
                uncond, text = noise.chunk(2)
                noise = uncond + guidance * (text - uncond)
            latents = scheduler.step(noise, t, latents, return_dict=False)[0]

        # 4. decode and convert to 8-bit pixels
        images = self.decode(latents.numpy().astype(np.float32))
        images = np.clip(images / 2 + 0.5, 0.0, 1.0).transpose(0, 2, 3, 1)
        return list((images * 255).round().astype(np.uint8))
