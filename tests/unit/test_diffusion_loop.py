"""The batched loop against diffusers' own pipeline, in-process, with the torch modules as components."""

import numpy as np
import pytest
import torch

from ppo_client.generation import GenerationRequest
from ppo_server.backends.diffusion_loop import DiffusionLoop
from ppo_server.backends.schedulers import scheduler_class

pytestmark = pytest.mark.isa


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def loop(pipeline):
    scale = pipeline.vae.config.scaling_factor

    @torch.no_grad()
    def encode(ids):
        return pipeline.text_encoder(torch.from_numpy(ids))[0].numpy()

    @torch.no_grad()
    def denoise(sample, timestep, hidden):
        args = torch.from_numpy(sample), torch.from_numpy(timestep).reshape(-1), torch.from_numpy(hidden)
        return pipeline.unet(*args).sample.numpy()

    @torch.no_grad()
    def decode(latent):
        return pipeline.vae.decode(torch.from_numpy(latent) / scale).sample.numpy()

    return DiffusionLoop(
        tokenizer=pipeline.tokenizer,
        scheduler_config=pipeline.scheduler.config,
        latent_channels=4,
        vae_scale_factor=8,
        encode=encode,
        denoise=denoise,
        decode=decode,
    )


def reference(pipeline, request: GenerationRequest) -> np.ndarray:
    if request.scheduler:
        pipeline.scheduler = scheduler_class(request.scheduler).from_config(pipeline.scheduler.config)
    image = pipeline(
        request.prompt,
        negative_prompt=request.negative_prompt or None,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        height=request.height,
        width=request.width,
        generator=torch.Generator().manual_seed(request.seed),
        output_type="np",
    ).images[0]
    return (image * 255).round().astype(np.uint8)


@pytest.mark.parametrize("scheduler", ["pndm", "euler", "ddim", "dpm_multistep"])
def test_a_batched_loop_reproduces_diffusers_image_for_every_row(pipeline, loop, scheduler):
    rows = [
        GenerationRequest("a red cat", seed=3, steps=4, guidance_scale=7.5, height=64, width=64, scheduler=scheduler),
        GenerationRequest(
            "a blue dog", seed=4, steps=4, guidance_scale=3.0, height=64, width=64, negative_prompt="blurry",
            scheduler=scheduler,
        ),
    ]
    images = loop.run(rows)
    for row, image in zip(rows, images):
        diff = np.abs(image.astype(int) - reference(pipeline, row).astype(int)).max()
        assert diff <= 1, f"{scheduler}: {diff}/255"


def test_guidance_at_or_below_one_skips_the_unconditional_pass_like_diffusers(pipeline, loop):
    row = GenerationRequest("a green tree", seed=1, steps=3, guidance_scale=1.0, height=64, width=64, scheduler="ddim")
    (image,) = loop.run([row])
    assert np.abs(image.astype(int) - reference(pipeline, row).astype(int)).max() <= 1


def test_rows_that_cannot_share_a_loop_are_refused(loop):
    rows = [GenerationRequest("a", steps=3, height=64, width=64), GenerationRequest("b", steps=4, height=64, width=64)]
    with pytest.raises(ValueError, match="share"):
        loop.run(rows)


def test_an_over_long_prompt_is_truncated_with_a_warning(loop, caplog):
    ids = loop.tokenize(["word " * 200])
    assert ids.shape == (1, loop.tokenizer.model_max_length)
    assert "truncated" in caplog.text
