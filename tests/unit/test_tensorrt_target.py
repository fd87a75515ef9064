"""GPU export targets: TensorRT profiles and platform configs everywhere; engine builds where TensorRT is."""

import importlib.util

import pytest

from ppo_client import contract
from ppo_server.errors import ExportError
from ppo_server.export.model_config import build_config, read_config
from ppo_server.export.repository import ExportOptions, export_pipeline
from ppo_server.export.tensorrt import ProfileLimits, ShapeRange, batch_range, profiles

SD15 = dict(native_side=512, vae_scale_factor=8, size_multiple=64, sequence_length=77, hidden_size=768, latent_channels=4)


def test_default_profiles_are_narrow_and_double_the_guided_batch():
    limits = ProfileLimits.for_pipeline(max_side=None, max_images=4, **SD15)
    unet = profiles("unet", limits)
    assert unet["SAMPLE"] == ShapeRange((1, 4, 64, 64), (2, 4, 64, 64), (8, 4, 64, 64))
    assert unet["ENCODER_HIDDEN_STATES"] == ShapeRange((1, 77, 768), (2, 77, 768), (8, 77, 768))
    assert unet["TIMESTEP"].max == (8, 1)
    assert profiles("text_encoder", limits)["INPUT_IDS"].max == (8, 77)
    assert profiles("vae_decoder", limits)["LATENT"] == ShapeRange((1, 4, 64, 64), (1, 4, 64, 64), (4, 4, 64, 64))
    assert profiles("image_encoder", limits)["IMAGE"].opt == (1, 512, 512, 3)


def test_sdxl_profiles_cover_its_second_encoder_and_added_conditioning():
    limits = ProfileLimits.for_pipeline(max_side=None, max_images=4, native_side=1024, vae_scale_factor=8, size_multiple=32,
                                        sequence_length=77, hidden_size=2048, latent_channels=4, text_embeds_dim=1280)
    unet = profiles("unet_xl", limits)
    assert unet["SAMPLE"].opt == (2, 4, 128, 128) and unet["ENCODER_HIDDEN_STATES"].max == (8, 77, 2048)
    assert unet["TEXT_EMBEDS"] == ShapeRange((1, 1280), (2, 1280), (8, 1280))
    assert unet["TIME_IDS"] == ShapeRange((1, 6), (2, 6), (8, 6))
    assert profiles("text_encoder_2", limits)["INPUT_IDS"].max == (8, 77)
    assert set(profiles("unet", limits)) == {"SAMPLE", "TIMESTEP", "ENCODER_HIDDEN_STATES"}


def test_max_side_widens_the_spatial_range():
    limits = ProfileLimits.for_pipeline(max_side=1024, max_images=2, **SD15)
    assert profiles("unet", limits)["SAMPLE"] == ShapeRange((1, 4, 8, 8), (2, 4, 64, 64), (4, 4, 128, 128))


def test_profiles_beyond_the_contract_are_refused():
    with pytest.raises(ExportError, match="exceed its contract's 64"):
        batch_range("unet", ProfileLimits(max_images=40))


def test_platform_configs():
    trt = build_config(contract.UNET, target="tensorrt", max_batch_size=16)
    assert (trt.platform, trt.backend, trt.max_batch_size) == ("tensorrt_plan", "", 16)
    assert trt.instance_group[0].kind == trt.instance_group[0].KIND_GPU
    ort = build_config(contract.IMAGE_ENCODER, target="onnxruntime")
    assert ort.platform == "onnxruntime_onnx" and [t.name for t in ort.input] == ["IMAGE"]


def test_the_onnxruntime_target_writes_native_gpu_models(tiny_pipeline_dir, tiny_clip_dir, tmp_path):
    out = tmp_path / "repo"
    export_pipeline(str(tiny_pipeline_dir), out, ExportOptions(target="onnxruntime"), clip=str(tiny_clip_dir))
    for name in ("text_encoder", "unet", "vae_decoder", "image_encoder"):
        config = read_config(out / name)
        assert config.platform == "onnxruntime_onnx" and (out / name / "1" / "model.onnx").exists()
        assert not (out / name / "1" / "model.py").exists()
    assert read_config(out / "image_encoder").parameters["encoder_id"].string_value.startswith("tiny_clip-")
    assert read_config(out / "txt2img").backend == "python"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_the_tensorrt_target_without_tensorrt_fails_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="pip install tensorrt"):
        export_pipeline(str(tmp_path / "no-such-model"), tmp_path / "repo", ExportOptions(target="tensorrt", precision="fp16"))
    assert not (tmp_path / "repo").exists()


def test_fp16_is_a_tensorrt_option(tmp_path):
    with pytest.raises(ExportError, match="applies to --target tensorrt only"):
        export_pipeline(str(tmp_path), tmp_path / "repo", ExportOptions(precision="fp16"))


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs the tensorrt package")
def test_tensorrt_engines_build_for_the_tiny_pipeline(tiny_pipeline_dir, tiny_clip_dir, tmp_path):
    out = tmp_path / "repo"
    export_pipeline(str(tiny_pipeline_dir), out, ExportOptions(target="tensorrt", precision="fp16", max_images=2), clip=str(tiny_clip_dir))
    for name in ("text_encoder", "unet", "vae_decoder", "image_encoder"):
        assert (out / name / "1" / "model.plan").stat().st_size > 0
        assert read_config(out / name).platform == "tensorrt_plan"
