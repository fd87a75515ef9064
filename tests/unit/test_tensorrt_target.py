"""GPU export targets: TensorRT profiles and platform configs everywhere; engine builds where TensorRT is."""

import importlib.util

import pytest

from ppo_client import contract
from ppo_server.errors import ExportError
from ppo_server.export import specs
from ppo_server.export.model_config import Platform, build_config, read_config
from ppo_server.export.options import ExportOptions, Precision, Target
from ppo_server.export.repository import export_pipeline
from ppo_server.export.tensorrt import ProfileLimits, ShapeRange

UNET, UNET_XL = contract.UNET, contract.UNET_XL

SD15 = dict(native_side=512, vae_scale_factor=8, size_multiple=64, sequence_length=77, hidden_size=768, latent_channels=4)


def test_default_profiles_are_narrow_and_double_the_guided_batch():
    limits = ProfileLimits.for_pipeline(max_side=None, max_images=4, **SD15)
    unet = specs.UNET.shape_ranges(limits)
    assert unet[UNET.SAMPLE.name] == ShapeRange((1, 4, 64, 64), (2, 4, 64, 64), (8, 4, 64, 64))
    assert unet[UNET.ENCODER_HIDDEN_STATES.name] == ShapeRange((1, 77, 768), (2, 77, 768), (8, 77, 768))
    assert unet[UNET.TIMESTEP.name].max == (8, 1)
    assert specs.TEXT_ENCODER.shape_ranges(limits)[contract.TEXT_ENCODER.INPUT_IDS.name].max == (8, 77)
    vae = specs.VAE_DECODER.shape_ranges(limits)[contract.VAE_DECODER.LATENT.name]
    assert vae == ShapeRange((1, 4, 64, 64), (1, 4, 64, 64), (4, 4, 64, 64))
    assert specs.IMAGE_ENCODER.shape_ranges(limits)[contract.IMAGE_ENCODER.IMAGE.name].opt == (1, 512, 512, 3)


def test_sdxl_profiles_cover_its_second_encoder_and_added_conditioning():
    limits = ProfileLimits.for_pipeline(max_side=None, max_images=4, native_side=1024, vae_scale_factor=8, size_multiple=32,
                                        sequence_length=77, hidden_size=2048, latent_channels=4, text_embeds_dim=1280)
    unet = specs.UNET_XL.shape_ranges(limits)
    assert unet[UNET_XL.SAMPLE.name].opt == (2, 4, 128, 128) and unet[UNET_XL.ENCODER_HIDDEN_STATES.name].max == (8, 77, 2048)
    assert unet[UNET_XL.TEXT_EMBEDS.name] == ShapeRange((1, 1280), (2, 1280), (8, 1280))
    assert unet[UNET_XL.TIME_IDS.name] == ShapeRange((1, 6), (2, 6), (8, 6))
    assert specs.TEXT_ENCODER_2.shape_ranges(limits)[contract.TEXT_ENCODER_2.INPUT_IDS.name].max == (8, 77)
    assert set(specs.UNET.shape_ranges(limits)) == {t.name for t in UNET.inputs}


def test_every_spec_with_a_profile_covers_exactly_its_inputs():
    limits = ProfileLimits(max_images=2)
    for spec in specs.EXPORT_SPECS:
        if spec.profile is not None:
            assert list(spec.shape_ranges(limits)) == spec.input_names, spec.key


def test_max_side_widens_the_spatial_range():
    limits = ProfileLimits.for_pipeline(max_side=1024, max_images=2, **SD15)
    assert specs.UNET.shape_ranges(limits)[UNET.SAMPLE.name] == ShapeRange((1, 4, 8, 8), (2, 4, 64, 64), (4, 4, 128, 128))


def test_profiles_beyond_the_contract_are_refused():
    with pytest.raises(ExportError, match="exceed its contract's 64"):
        specs.UNET.batch_range(ProfileLimits(max_images=40))


def test_platform_configs():
    trt = build_config(contract.UNET, platform=Platform.TENSORRT, max_batch_size=16)
    assert (trt.platform, trt.backend, trt.max_batch_size) == ("tensorrt_plan", "", 16)
    assert trt.instance_group[0].kind == trt.instance_group[0].KIND_GPU
    ort = build_config(contract.IMAGE_ENCODER, platform=Platform.ONNXRUNTIME)
    assert ort.platform == "onnxruntime_onnx" and [t.name for t in ort.input] == [contract.IMAGE_ENCODER.IMAGE.name]


def test_the_onnxruntime_target_writes_native_gpu_models(tiny_pipeline_dir, tiny_clip_dir, tmp_path):
    out = tmp_path / "repo"
    export_pipeline(str(tiny_pipeline_dir), out, ExportOptions(target=Target.ONNXRUNTIME), clip=str(tiny_clip_dir))
    for name in ("text_encoder", "unet", "vae_decoder", "image_encoder"):
        config = read_config(out / name)
        assert config.platform == "onnxruntime_onnx" and (out / name / "1" / "model.onnx").exists()
        assert not (out / name / "1" / "model.py").exists()
    assert read_config(out / "image_encoder").parameters["encoder_id"].string_value.startswith("tiny_clip-")
    assert read_config(out / "txt2img").backend == "python"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_the_tensorrt_target_without_tensorrt_fails_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="pip install tensorrt"):
        export_pipeline(str(tmp_path / "no-such-model"), tmp_path / "repo", ExportOptions(target=Target.TENSORRT, precision=Precision.FP16))
    assert not (tmp_path / "repo").exists()


def test_fp16_is_a_tensorrt_option(tmp_path):
    with pytest.raises(ExportError, match="applies to --target tensorrt only"):
        export_pipeline(str(tmp_path), tmp_path / "repo", ExportOptions(precision=Precision.FP16))


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs the tensorrt package")
def test_tensorrt_engines_build_for_the_tiny_pipeline(tiny_pipeline_dir, tiny_clip_dir, tmp_path):
    out = tmp_path / "repo"
    options = ExportOptions(target=Target.TENSORRT, precision=Precision.FP16, max_images=2)
    export_pipeline(str(tiny_pipeline_dir), out, options, clip=str(tiny_clip_dir))
    for name in ("text_encoder", "unet", "vae_decoder", "image_encoder"):
        assert (out / name / "1" / "model.plan").stat().st_size > 0
        assert read_config(out / name).platform == "tensorrt_plan"
