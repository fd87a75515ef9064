"""diffusers' own pipeline rendering a ``GenerationRequest``: the ground truth that served images are
compared with (tests, ``benchmarks/families.py``).

A named scheduler is swapped in for the one call (built as the server builds it) and the
checkpoint's own is put back; an empty negative prompt is passed as ``None``, which is what the
server's empty string means (SDXL then conditions on zeros where its config says so).
"""

from __future__ import annotations

import numpy as np

from ppo_client.generation import GenerationRequest
from ppo_server.backends.schedulers import build_scheduler


def render(pipeline, request: GenerationRequest) -> np.ndarray:
    """One image, HxWx3 uint8, from a ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``."""
    import torch

    own = pipeline.scheduler
    if request.scheduler:
        pipeline.scheduler = build_scheduler(request.scheduler, own.config)
    try:
        image = pipeline(
            request.prompt, negative_prompt=request.negative_prompt or None, num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale, guidance_rescale=request.guidance_rescale, height=request.height,
            width=request.width, generator=torch.Generator().manual_seed(request.seed), output_type="np",
        ).images[0]
    finally:
        pipeline.scheduler = own
    return (image * 255).round().astype(np.uint8)
