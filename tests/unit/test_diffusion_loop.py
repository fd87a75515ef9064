"""The batched loop against diffusers' own pipeline, in-process, with the torch modules as components."""

import numpy as np
import pytest

from ppo_client import contract
from ppo_client.generation import GenerationRequest
from ppo_server.backends.diffusion_loop import DiffusionLoop, PipelineShape, tokenize
from ppo_server.backends.schedulers import build_scheduler
from ppo_server.export.specs import in_process
from ppo_server.reference import render

pytestmark = pytest.mark.isa


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def loop(pipeline):
    return DiffusionLoop(
        shape=PipelineShape(family="sd", latent_channels=4, vae_scale_factor=8),
        tokenizers=[pipeline.tokenizer],
        scheduler_config=pipeline.scheduler.config,
        call=in_process(pipeline, "sd"),
    )


@pytest.mark.parametrize("scheduler", contract.SCHEDULERS)
def test_a_batched_loop_reproduces_diffusers_image_for_every_row(pipeline, loop, scheduler):
    rows = [
        GenerationRequest("a red cat", seed=3, steps=4, guidance_scale=7.5, height=64, width=64, scheduler=scheduler),
        GenerationRequest(
            "a blue dog", seed=4, steps=4, guidance_scale=3.0, height=64, width=64, negative_prompt="blurry",
            scheduler=scheduler,
        ),
    ]
    images = loop.run(rows)
    for row, image in zip(rows, images, strict=True):
        diff = np.abs(image.astype(int) - render(pipeline, row).astype(int)).max()
        assert diff <= 1, f"{scheduler}: {diff}/255"


def test_guidance_at_or_below_one_skips_the_unconditional_pass_like_diffusers(pipeline, loop):
    row = GenerationRequest("a green tree", seed=1, steps=3, guidance_scale=1.0, height=64, width=64, scheduler="ddim")
    (image,) = loop.run([row])
    assert np.abs(image.astype(int) - render(pipeline, row).astype(int)).max() <= 1


def test_rows_that_cannot_share_a_loop_are_refused(loop):
    rows = [GenerationRequest("a", steps=3, height=64, width=64), GenerationRequest("b", steps=4, height=64, width=64)]
    with pytest.raises(ValueError, match="share"):
        loop.run(rows)


def test_an_over_long_prompt_is_truncated_with_a_warning(loop, caplog):
    ids = tokenize(loop.tokenizers[0], ["word " * 200])
    assert ids.shape == (1, loop.tokenizers[0].model_max_length)
    assert "truncated" in caplog.text


def test_guidance_rescale_follows_diffusers_per_row(pipeline, loop):
    rows = [GenerationRequest("a red cat", seed=5, steps=3, guidance_scale=7.5, height=64, width=64, guidance_rescale=0.7),
            GenerationRequest("a red cat", seed=5, steps=3, guidance_scale=7.5, height=64, width=64)]
    rescaled, plain = loop.run(rows)
    assert np.abs(rescaled.astype(int) - render(pipeline, rows[0]).astype(int)).max() <= 1
    assert np.abs(plain.astype(int) - render(pipeline, rows[1]).astype(int)).max() <= 1
    assert not np.array_equal(rescaled, plain)


def test_a_step_count_the_scheduler_cannot_run_is_refused_with_the_fix():
    from ppo_client.errors import InvalidRequestError

    config = {**build_scheduler("dpm_multistep", {"_class_name": "PNDMScheduler"}).config, "_class_name": "PNDMScheduler"}
    loop = DiffusionLoop(shape=PipelineShape(), tokenizers=[], scheduler_config=config, call=None)
    assert "pndm" in loop.warm_up(("pndm",))
    with pytest.raises(InvalidRequestError, match=r"STEPS: scheduler 'pndm' cannot run 2 steps .*use at least \d+ steps"):
        loop.check_steps("pndm", 2)
    loop.check_steps("pndm", 20)
