"""The ``txt2img`` pipeline model: prompts in, uint8 images out, components called through BLS.

Triton's dynamic batcher hands ``execute`` several requests at once; their rows are checked one by
one (a bad request gets its own error, the others go on), grouped by what must match inside one
denoising loop, and each group runs as a single batched loop, so concurrent requests share UNet
batches. Two or more instances of this model run loops side by side and the UNet's own dynamic
batcher merges their calls as well.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_client import contract
from ppo_client.contract import Family, ServedPipeline, SizeLimits, TensorSpec
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import (
    GenerationRequest,
    check_guidance,
    check_guidance_rescale,
    check_prompt_count,
    check_scheduler,
    check_seed,
    check_side,
    check_steps,
    check_text,
)
from ppo_client.manifests import PipelineManifest
from ppo_server.backends import bls
from ppo_server.backends.component import ModelArgs, error_response
from ppo_server.backends.diffusion_loop import DiffusionLoop, PipelineShape
from ppo_server.backends.triton_logging import install_triton_log_handler
from ppo_server.errors import ComponentError

logger = logging.getLogger(__name__)
MODEL = contract.TXT2IMG


def _texts(request, spec: TensorSpec, count: int) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
    if tensor is None:
        return [""] * count
    return [check_text(value if isinstance(value, bytes) else str(value), spec.name) for value in tensor.as_numpy().reshape(-1)]


def _numbers(request, spec: TensorSpec, count: int | None = None, default: float = 0.0) -> list:
    """The input's values; an optional input (``count`` given) the request left out is ``count`` defaults."""
    tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
    if tensor is None:
        if count is None:  # a required input: Triton refuses requests without one before they get here
            raise InvalidRequestError(spec.name, "missing; every request must give it")
        return [default] * count
    return tensor.as_numpy().reshape(-1).tolist()


def parse_request(request, limits: SizeLimits, schedulers: tuple[str, ...]) -> list[GenerationRequest]:
    """Check every row of one request; the first bad field raises ``InvalidRequestError``."""
    prompts = _texts(request, MODEL.PROMPT, 0)
    count = check_prompt_count(len(prompts), MODEL.PROMPT.name)
    negatives = _texts(request, MODEL.NEGATIVE_PROMPT, count)
    names = _texts(request, MODEL.SCHEDULER, count)
    seeds, steps = _numbers(request, MODEL.SEED), _numbers(request, MODEL.STEPS)
    guidance = _numbers(request, MODEL.GUIDANCE_SCALE)
    rescale = _numbers(request, MODEL.GUIDANCE_RESCALE, count)
    heights, widths = _numbers(request, MODEL.HEIGHT), _numbers(request, MODEL.WIDTH)
    if len({(h, w) for h, w in zip(heights, widths, strict=True)}) > 1:
        raise InvalidRequestError(MODEL.HEIGHT.name, "all prompts of one request must share height and width")
    return [
        GenerationRequest(
            prompt=prompts[i],
            negative_prompt=negatives[i],
            seed=check_seed(seeds[i], MODEL.SEED.name),
            steps=check_steps(steps[i], MODEL.STEPS.name),
            guidance_scale=check_guidance(guidance[i], MODEL.GUIDANCE_SCALE.name),
            height=check_side(heights[i], MODEL.HEIGHT.name, limits),
            width=check_side(widths[i], MODEL.WIDTH.name, limits),
            scheduler=check_scheduler(names[i], MODEL.SCHEDULER.name, schedulers),
            guidance_rescale=check_guidance_rescale(rescale[i], MODEL.GUIDANCE_RESCALE.name),
        )
        for i in range(count)
    ]


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        model = ModelArgs.parse(args)
        served = ServedPipeline.from_parameters(model.params)
        self.limits = served.limits
        assets = model.folder / "pipeline"
        manifest = PipelineManifest.read(assets)
        from transformers import AutoTokenizer

        shape = PipelineShape(
            family=manifest.family,
            latent_channels=manifest.latent_channels,
            vae_scale_factor=manifest.vae_scale_factor,
            force_zeros_for_empty_prompt=manifest.force_zeros_for_empty_prompt,
        )
        tokenizers = [AutoTokenizer.from_pretrained(assets / "tokenizer")]
        if shape.family == Family.SDXL:
            tokenizers.append(AutoTokenizer.from_pretrained(assets / "tokenizer_2"))
        self.loop = DiffusionLoop(
            shape=shape,
            tokenizers=tokenizers,
            scheduler_config=json.loads((assets / "scheduler" / "scheduler_config.json").read_text()),
            call=bls.call,
        )
        if "" not in self.loop.warm_up(("",)):
            raise ComponentError(f"the model's own scheduler {served.default_scheduler} does not run; re-export it")
        self.schedulers = self.loop.warm_up(served.schedulers)
        logger.info("txt2img ready: %s, sides %s, schedulers %s (default %s), exported from %s", shape.family,
                    self.limits, ",".join(self.schedulers), served.default_scheduler, manifest.source)

    def _parse(self, request) -> list[GenerationRequest]:
        rows = parse_request(request, self.limits, self.schedulers)
        for row in rows:
            self.loop.check_steps(row.scheduler, row.steps)
        return rows

    def execute(self, requests: list) -> list:
        errors: dict[int, Exception] = {}
        rows: dict[int, list[GenerationRequest]] = {}
        for i, request in enumerate(requests):
            try:
                rows[i] = self._parse(request)
            except InvalidRequestError as exc:
                errors[i] = exc

        groups: dict = {}
        for i, request_rows in rows.items():
            for j, row in enumerate(request_rows):
                groups.setdefault(self.loop.group_key(row), []).append((i, j, row))
        images: dict[tuple[int, int], np.ndarray] = {}
        for key, members in groups.items():
            # a request whose rows span several groups may already have failed in an earlier one
            members = [m for m in members if m[0] not in errors]
            if not members:
                continue
            try:
                outputs = self.loop.run([row for _, _, row in members])
            except Exception as exc:  # a failed group fails its own requests; the model keeps serving
                logger.error("generation failed for %d rows (%s): %s", len(members), key, exc)
                for i, _, _ in members:
                    errors[i] = RuntimeError(f"generation failed: {exc}")
                continue
            for (i, j, _), image in zip(members, outputs, strict=True):
                images[(i, j)] = image

        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(error_response(errors[i]))
                continue
            stacked = np.stack([images[(i, j)] for j in range(len(rows[i]))])
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(MODEL.IMAGE.name, stacked)]))
        return responses
