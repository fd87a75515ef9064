"""Checkpoint families: what `ppo-export` recognises, and what it refuses by name before any work."""

import json
import logging
import re
import shutil

import pytest

from ppo_server.errors import ExportError
from ppo_server.export import families
from ppo_server.export.repository import export_pipeline


def with_index(folder, tmp_path, **changes):
    """A copy of a pipeline folder whose model_index.json is changed."""
    copy = tmp_path / "checkpoint"
    shutil.copytree(folder, copy)
    index = json.loads((copy / "model_index.json").read_text())
    index.update(changes)
    (copy / "model_index.json").write_text(json.dumps(index))
    return copy


@pytest.mark.parametrize(("pipeline_class", "named"), [
    ("FluxPipeline", "FLUX (a transformer-based family)"),
    ("StableDiffusion3Pipeline", "Stable Diffusion 3"),
    ("PixArtAlphaPipeline", "PixArt-alpha"),
    ("StableDiffusionXLImg2ImgPipeline", "the SDXL refiner ships as one"),
    ("SomeNewPipeline", "a pipeline class this project does not know"),
])
def test_unsupported_families_are_refused_by_name_before_any_work(tiny_pipeline_dir, tmp_path, pipeline_class, named):
    folder = with_index(tiny_pipeline_dir, tmp_path, _class_name=pipeline_class)
    expected = f"is a {pipeline_class} checkpoint .*{re.escape(named)}.*ppo-export serves Stable Diffusion 1.x/2.x"
    with pytest.raises(ExportError, match=expected):
        export_pipeline(str(folder), tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_a_safety_checker_and_feature_extractor_are_left_out_with_one_warning(tiny_pipeline_dir, tmp_path, caplog):
    folder = with_index(tiny_pipeline_dir, tmp_path, safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
                        feature_extractor=["transformers", "CLIPImageProcessor"])
    info = families.detect(str(folder))
    assert (info.family, info.dropped) == ("sd", ("safety_checker", "feature_extractor"))
    with caplog.at_level(logging.WARNING):
        pipeline = families.load(str(folder), info)
    assert pipeline.safety_checker is None
    assert caplog.text.count("not exported (not used to generate images): safety_checker, feature_extractor") == 1


def _tiny_sd(tmp_path, **unet_changes):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from ppo_server.export.builders import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path / "base")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    config = {**pipe.unet.config, **unet_changes}
    pipe.unet = UNet2DConditionModel.from_config(config)
    pipe.save_pretrained(tmp_path / "variant")
    return tmp_path / "variant"


def test_an_inpainting_unet_is_refused(tmp_path):
    folder = _tiny_sd(tmp_path, in_channels=9)
    with pytest.raises(ExportError, match="takes 9 input channels but the VAE makes 4: an inpainting"):
        export_pipeline(str(folder), tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_a_unet_with_a_guidance_embedding_is_refused(tmp_path):
    folder = _tiny_sd(tmp_path, time_cond_proj_dim=32)
    with pytest.raises(ExportError, match="guidance-scale embedding"):
        export_pipeline(str(folder), tmp_path / "repo")
