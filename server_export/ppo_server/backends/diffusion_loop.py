"""The batched text-to-image loop, free of Triton so it can be tested in-process.

It follows diffusers' ``StableDiffusionPipeline.__call__`` (family ``sd``: SD 1.x and 2.x) and
``StableDiffusionXLPipeline.__call__`` (family ``sdxl``) step for step: the same tokenization, the
same text conditioning (SDXL: both encoders' penultimate states side by side, the pooled embedding,
size conditioning, zeroed negatives for an empty negative prompt), the same seeded latents,
classifier-free guidance with the unconditional rows first and optional guidance rescale, the same
scheduler calls (ancestral noise drawn from each row's own seeded generator) and post-processing.
But it runs many requests in one batch: rows that share steps, size, scheduler and whether guidance
is on go through one loop, one UNet call per step.

Components are reached through one function, ``call(contract, inputs) -> outputs``: BLS requests
inside Triton (``backends.bls``), or the torch modules themselves in tests (``export.specs.in_process``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ppo_client import contract
from ppo_client.contract import Family, ModelContract
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest
from ppo_server.backends.schedulers import build_scheduler, steps_problem, takes_generator

logger = logging.getLogger(__name__)

Call = Callable[[ModelContract, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
"""Runs one component model: its contract and its named inputs -> its named outputs."""


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


def tokenize(tokenizer, prompts: Sequence[str]) -> np.ndarray:
    """Token ids [n, model_max_length], padded and truncated as diffusers does, with a warning per
    truncated prompt naming what was dropped."""
    max_length = tokenizer.model_max_length
    ids = tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="np").input_ids
    for full in tokenizer(list(prompts), truncation=False).input_ids:  # one batched call, for the warning
        if len(full) > max_length:
            removed = tokenizer.decode(full[max_length - 1 : -1])
            logger.warning("prompt truncated to %d tokens; this part was dropped: %r", max_length, removed)
    return ids.astype(np.int64)


@dataclass(frozen=True)
class PipelineShape:
    """What the loop needs to know of the exported pipeline (its ``manifests.PipelineManifest``)."""

    family: Family = Family.SD
    latent_channels: int = 4
    vae_scale_factor: int = 8
    force_zeros_for_empty_prompt: bool = True
    """SDXL: an empty negative prompt conditions on zeros rather than on the encoded empty text."""


class DiffusionLoop:
    def __init__(self, *, shape: PipelineShape, tokenizers: Sequence, scheduler_config: Mapping, call: Call) -> None:
        if shape.family not in tuple(Family):
            raise ValueError(f"unknown pipeline family {shape.family!r}")
        self.shape = shape
        self.tokenizers = list(tokenizers)
        self.scheduler_config = dict(scheduler_config)
        self.call = call
        self.unet: contract.UNetContract = contract.UNET_XL if shape.family == Family.SDXL else contract.UNET
        self._pristine: dict[str, object] = {}
        self._steps_checked: dict[tuple[str, int], str] = {}

    def group_key(self, row: GenerationRequest) -> GroupKey:
        return GroupKey(row.steps, row.height, row.width, row.scheduler, uses_guidance(row.guidance_scale))

    # --- schedulers ---

    def new_scheduler(self, name: str):
        """A fresh scheduler (they keep per-run state); ``""`` means the checkpoint's own.

        Copies of a pristine instance: ``from_config`` took over a second per call inside the
        python backend's stub, a deep copy takes well under a millisecond.
        """
        if name not in self._pristine:
            self._pristine[name] = build_scheduler(name, self.scheduler_config)
        return copy.deepcopy(self._pristine[name])

    def warm_up(self, names: Sequence[str] = ("",)) -> tuple[str, ...]:
        """Build each scheduler and run it once, so the first request does not pay for it. A
        scheduler that cannot be built or run from this config is logged and left out (the model
        keeps serving the others); returns the names that can be served."""
        served = []
        for name in names:
            try:
                problem = steps_problem(self.new_scheduler(name), 20)
            except Exception as exc:  # a scheduler class that does not build from this config
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                logger.warning("scheduler %r left out: it does not run from this model's config (%s)", name, problem)
                self._pristine.pop(name, None)
                continue
            served.append(name)
        return tuple(served)

    def check_steps(self, name: str, steps: int) -> None:
        """Refuse (``InvalidRequestError``) a step count the scheduler cannot run, naming the fix."""
        key = (name, steps)
        if key not in self._steps_checked:
            self._steps_checked[key] = steps_problem(self.new_scheduler(name), steps)
        problem = self._steps_checked[key]
        if problem:
            label = repr(name) if name else f"{self.scheduler_config['_class_name']} (the model's own)"
            fewest = next((n for n in range(steps + 1, 51) if not steps_problem(self.new_scheduler(name), n)), None)
            fix = f"use at least {fewest} steps or another scheduler" if fewest else "use another scheduler"
            raise InvalidRequestError(contract.TXT2IMG.STEPS.name, f"scheduler {label} cannot run {steps} steps ({problem}); {fix}")

    # --- conditioning ---

    def _encode(self, model: contract.TextEncoderContract, tokenizer, texts: Sequence[str]) -> Mapping[str, np.ndarray]:
        return self.call(model, {model.INPUT_IDS.name: tokenize(tokenizer, texts)})

    def condition(self, rows: Sequence[GenerationRequest], key: GroupKey) -> dict[str, np.ndarray]:
        """The UNet's conditioning inputs for the loop's rows: the unconditional rows first (as
        diffusers orders them) when guidance is on."""
        prompts = [row.prompt for row in rows]
        if self.shape.family == Family.SD:
            texts = [row.negative_prompt for row in rows] + prompts if key.guided else prompts
            encoder = contract.TEXT_ENCODER
            hidden = self._encode(encoder, self.tokenizers[0], texts)[encoder.LAST_HIDDEN_STATE.name]
            return {contract.UNET.ENCODER_HIDDEN_STATES.name: hidden}
        hidden, pooled = self._xl_texts(prompts)
        time_ids = np.array([[key.height, key.width, 0, 0, key.height, key.width]] * len(rows), dtype=np.float32)
        if key.guided:
            negative_hidden, negative_pooled = self._xl_texts([row.negative_prompt for row in rows])
            if self.shape.force_zeros_for_empty_prompt:
                empty = np.array([not row.negative_prompt for row in rows])
                negative_hidden[empty] = 0.0
                negative_pooled[empty] = 0.0
            hidden = np.concatenate([negative_hidden, hidden])
            pooled = np.concatenate([negative_pooled, pooled])
            time_ids = np.concatenate([time_ids, time_ids])
        unet = contract.UNET_XL
        return {unet.ENCODER_HIDDEN_STATES.name: hidden, unet.TEXT_EMBEDS.name: pooled, unet.TIME_IDS.name: time_ids}

    def _xl_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoder, encoder_2 = contract.TEXT_ENCODER, contract.TEXT_ENCODER_2
        first = self._encode(encoder, self.tokenizers[0], texts)
        second = self._encode(encoder_2, self.tokenizers[1], texts)
        hidden = np.concatenate([first[encoder.LAST_HIDDEN_STATE.name], second[encoder_2.LAST_HIDDEN_STATE.name]], axis=-1)
        return hidden, np.array(second[encoder_2.TEXT_EMBEDS.name], dtype=np.float32)

    # --- the loop ---

    def initial_latents(self, generators: Sequence[torch.Generator], key: GroupKey, sigma: float) -> torch.Tensor:
        """Each row's latents from its own seeded generator, as diffusers draws them from a list of
        generators; the same generators then give ancestral schedulers their per-step noise."""
        factor = self.shape.vae_scale_factor
        shape = (1, self.shape.latent_channels, key.height // factor, key.width // factor)
        latents = [torch.randn(shape, generator=generator, dtype=torch.float32) for generator in generators]
        return torch.cat(latents) * sigma

    def run(self, rows: Sequence[GenerationRequest]) -> list[np.ndarray]:
        """Generate one image per row; all rows must share one ``group_key``. Returns HxWx3 uint8."""
        keys = {self.group_key(row) for row in rows}
        if len(keys) != 1:
            raise ValueError(f"rows of one loop must share steps, size, scheduler and guidance: {keys}")
        (key,) = keys
        n = len(rows)

        # 1. encode the prompts
        conditioning = self.condition(rows, key)

        # 2. timesteps and seeded initial latents (each row's generator also draws its step noise)
        scheduler = self.new_scheduler(key.scheduler)
        scheduler.set_timesteps(key.steps)
        generators = [torch.Generator("cpu").manual_seed(row.seed) for row in rows]
        latents = self.initial_latents(generators, key, float(scheduler.init_noise_sigma))
        step_kwargs = {"generator": generators} if takes_generator(scheduler) else {}
        if self.shape.family == Family.SDXL and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)  # as StableDiffusionXLPipeline does (StableDiffusionPipeline does not)
        guidance = torch.tensor([row.guidance_scale for row in rows], dtype=torch.float32).reshape(n, 1, 1, 1)
        rescale = torch.tensor([row.guidance_rescale for row in rows], dtype=torch.float32).reshape(n, 1, 1, 1)

        # 3. denoise: one UNet call per step for every row of the group
        for t in scheduler.timesteps:
            model_input = torch.cat([latents, latents]) if key.guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            timesteps = np.full((model_input.shape[0], 1), float(t), dtype=np.float32)
            inputs = {self.unet.SAMPLE.name: model_input.numpy(), self.unet.TIMESTEP.name: timesteps, **conditioning}
            noise = torch.from_numpy(np.asarray(self.call(self.unet, inputs)[self.unet.NOISE_PRED.name]))
            if key.guided:
                uncond, text = noise.chunk(2)
                noise = uncond + guidance * (text - uncond)
                if bool((rescale > 0).any()):
                    noise = rescale_guided(noise, text, rescale)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]

        # 4. decode and convert to 8-bit pixels
        vae = contract.VAE_DECODER
        images = np.asarray(self.call(vae, {vae.LATENT.name: latents.numpy().astype(np.float32)})[vae.IMAGE.name])
        images = np.clip(images / 2 + 0.5, 0.0, 1.0).transpose(0, 2, 3, 1)
        return list((images * 255).round().astype(np.uint8))


def rescale_guided(guided: torch.Tensor, text: torch.Tensor, rescale: torch.Tensor) -> torch.Tensor:
    """Per row, move the guided noise towards the spread of the text-conditioned prediction
    ("Common Diffusion Noise Schedules and Sample Steps are Flawed", section 3.4), as diffusers does;
    rows with ``rescale`` 0 are unchanged."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (text.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return torch.where(rescale > 0, rescale * rescaled + (1 - rescale) * guided, guided)
