"""The demo-world training scripts in smoke mode: every stage runs, resumes, and is deterministic."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.isa]


def train(*args, out, models):
    command = [sys.executable, "-m", "ppo_demo.training", *args, "--smoke", "--out", str(out),
               "--models", str(models)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("training")
    report = train("all", out=out / "run", models=out / "models")
    return out, report


def test_every_stage_runs_and_writes_the_shipped_artefacts(smoke_run):
    out, report = smoke_run
    assert set(report) == {"tokenizer", "vae", "clip", "unet", "judge", "pipeline", "evaluate"}
    models = out / "models"
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(models / "pipeline", dtype=torch.float32)
    assert pipe.unet.config.in_channels == pipe.vae.config.latent_channels == 8
    assert (models / "clip" / "config.json").exists() and (models / "judge.pt").exists()
    evaluation = json.loads((models / "training_report.json").read_text())["evaluate"]
    assert evaluation["same_batch_identical"], "the same prompts and seeds in the same batch repeat bit for bit"
    assert evaluation["across_batches_within_tolerance"], evaluation["across_batches_max_difference"]
    assert report["judge"]["trained_on_vae_round_trips"]  # the vae stage ran first, so the judge saw its decodings
    renders = np.load(out / "run" / "data" / "scenes_0_64.npz")["images"]
    round_trips = np.load(out / "run" / "data" / "round_trips_0_64.npy")
    assert round_trips.shape == renders.shape and not np.array_equal(round_trips, renders)


def test_a_finished_stage_resumes_from_its_checkpoint_instead_of_starting_over(smoke_run):
    out, _ = smoke_run
    checkpoint = out / "run" / "checkpoints" / "vae" / "checkpoint.pt"
    before = torch.load(checkpoint, weights_only=False)["step"]
    train("vae", out=out / "run", models=out / "models")
    assert torch.load(checkpoint, weights_only=False)["step"] == before
    log = (out / "run" / "checkpoints" / "vae" / "log.jsonl").read_text().splitlines()
    assert len(log) == 1, "the resumed run should not have trained again"


def test_training_is_deterministic_on_one_device(smoke_run, tmp_path):
    out, _ = smoke_run
    train("vae", out=tmp_path / "again", models=tmp_path / "models")
    first = torch.load(out / "run" / "checkpoints" / "vae" / "checkpoint.pt", weights_only=False)["model"]
    second = torch.load(tmp_path / "again" / "checkpoints" / "vae" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_other_latent_grids_train_through_to_the_pipeline(smoke_run, tmp_path):
    import shutil

    out, _ = smoke_run
    shutil.copytree(out / "run", tmp_path / "run", ignore=shutil.ignore_patterns("vae", "unet"))
    shutil.copytree(out / "models", tmp_path / "models")  # its judge measures the new VAE's round trip
    report = train("vae", "unet", "pipeline", "--latent-channels", "4", "--latent-downsample", "4",
                   out=tmp_path / "run", models=tmp_path / "models")
    assert report["vae"]["latents"] == "16x16x4"
    assert set(report["vae"]["judge_accuracy_on_round_trip"]) == {"main_colour", "background", "main_shape"}
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "models" / "pipeline", dtype=torch.float32)
    assert (pipe.unet.config.sample_size, pipe.unet.config.in_channels, pipe.vae_scale_factor) == (16, 4, 4)


@pytest.mark.gpu
def test_stages_train_on_a_gpu_and_resume_there_from_a_cpu_checkpoint(smoke_run, tmp_path):
    import shutil

    out, _ = smoke_run
    shutil.copytree(out / "run", tmp_path / "run")
    report = train("vae", "judge", "--device", "cuda", out=tmp_path / "run", models=tmp_path / "models")
    assert report["vae"]["device"] == "cuda"  # the CPU's finished checkpoint resumed, nothing retrained
    fresh = train("tokenizer", "vae", "clip", "unet", "judge", "--device", "cuda", out=tmp_path / "fresh",
                  models=tmp_path / "models")
    assert all(fresh[stage]["device"] == "cuda" for stage in ("vae", "clip", "unet", "judge"))


def test_a_unet_trial_on_the_shipped_parts_writes_a_pipeline_that_samples_with_its_prediction_type_and_widths(tmp_path):
    from pathlib import Path

    from diffusers import StableDiffusionPipeline

    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(root / "benchmarks" / "unet_trial.py"), "--out", str(tmp_path), "--name", "v",
               "--prediction", "v_prediction", "--steps", "2", "--images", "16", "--widths", "32", "64"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "v" / "pipeline", dtype=torch.float32)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.clip_sample is False
    assert tuple(pipe.unet.config.block_out_channels) == (32, 64)
    assert (tmp_path / "v" / "judge.pt").exists() and (tmp_path / "checkpoints" / "v" / "checkpoint.pt").exists()
    image = pipe("a red circle on a blue background", num_inference_steps=2, height=64, width=64,
                 output_type="np").images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


def test_a_trial_on_standard_latents_ships_a_vae_that_draws_what_the_shipped_one_draws(tmp_path):
    from pathlib import Path

    from diffusers import AutoencoderKL

    from ppo_demo import models_dir
    from ppo_demo.scenes import example
    from ppo_demo.training.vae import vae_round_trip

    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(root / "benchmarks" / "unet_trial.py"), "--out", str(tmp_path), "--name", "std",
               "--standard-latents", "--steps", "2", "--images", "16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    trial = AutoencoderKL.from_pretrained(tmp_path / "std" / "pipeline" / "vae")
    shipped = AutoencoderKL.from_pretrained(models_dir() / "pipeline" / "vae")
    assert trial.config.scaling_factor == 1.0 != shipped.config.scaling_factor
    scenes = np.stack([example(seed)[0] for seed in range(4)])
    difference = np.abs(vae_round_trip(trial, scenes).astype(int) - vae_round_trip(shipped, scenes).astype(int))
    assert difference.mean() < 1.0 and difference.max() <= 12  # half-precision weights, folded twice
    (cache,) = (tmp_path / "checkpoints" / "unet").glob("latents_*.pt")
    latents = torch.load(cache)
    # the UNet trained on standardised latents (statistics of the same 16 scenes)
    assert torch.allclose(latents.std((0, 2, 3)), torch.ones(8), atol=1e-2)
