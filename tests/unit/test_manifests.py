"""The manifests the exporter writes for the python-backend models: they round-trip through their
files, a missing or malformed field is refused naming the field and the file, and the files of older
exporters still load with their documented defaults."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ppo_client.contract import Family, ServedPipeline, SizeLimits
from ppo_client.errors import DataError
from ppo_client.manifests import PIPELINE_MANIFEST, TORCH_MANIFEST, PipelineManifest, TorchManifest

PIPELINE = PipelineManifest(
    source="/models/sdxl-base", family=Family.SDXL, latent_channels=4, vae_scale_factor=8, native_side=1024,
    text_max_length=77, force_zeros_for_empty_prompt=False,
)
TORCH = TorchManifest(
    model="image_encoder", spec="image_encoder", wrapper="ImageEncoder",
    module_class="transformers.models.clip.modeling_clip.CLIPVisionModelWithProjection",
    wrapper_kwargs={"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}, fp16_on_gpu=True,
)
OLD_PIPELINE = {"source": "tiny", "latent_channels": 4, "vae_scale_factor": 8, "native_side": 64, "text_max_length": 77}
"""What exporters wrote before pipeline families were served."""
OLD_TORCH = {
    "model": "unet", "module_class": "diffusers.UNet2DConditionModel", "wrapper_kwargs": {}, "fp16_on_gpu": True,
}
"""What the first torch-cuda exporter wrote: neither the spec nor the wrapper."""

MALFORMED = {
    "source": [1, ""], "family": ["sd3", 1, None], "latent_channels": ["4", 0, 4.5, True],
    "vae_scale_factor": [-8, "8"],
    "native_side": [None, 64.0], "text_max_length": [[77], False], "force_zeros_for_empty_prompt": [1, "true", None],
    "model": ["", 3], "spec": ["", None], "wrapper": [None, 7], "module_class": ["UNet2DConditionModel", "a.", ".B", 1],
    "wrapper_kwargs": [[], "mean", None], "fp16_on_gpu": [0, "yes"],
}
"""Values each field refuses: the wrong JSON type, or the right one out of range."""

names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
sides = st.integers(1, 2**16)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
pipelines = st.builds(
    PipelineManifest, source=names, family=st.sampled_from(Family), latent_channels=sides, vae_scale_factor=sides,
    native_side=sides, text_max_length=sides, force_zeros_for_empty_prompt=st.booleans(),
)
dotted = st.tuples(names, names).map(lambda parts: ".".join(parts)).filter(lambda name: all(name.rpartition(".")[::2]))
torches = st.builds(
    TorchManifest, model=names, spec=st.none() | names, wrapper=st.none() | names, module_class=dotted,
    wrapper_kwargs=st.dictionaries(st.text(max_size=8), JSON, max_size=3), fp16_on_gpu=st.booleans(),
)


@given(manifest=pipelines | torches)
def test_every_manifest_round_trips_through_its_json(manifest):
    assert type(manifest).from_json(manifest.to_json()) == manifest


@pytest.mark.parametrize("manifest", [PIPELINE, TORCH], ids=lambda m: type(m).__name__)
def test_a_manifest_is_written_and_read_under_its_one_file_name(manifest, tmp_path):
    path = manifest.write(tmp_path)
    assert path == tmp_path / {PipelineManifest: PIPELINE_MANIFEST, TorchManifest: TORCH_MANIFEST}[type(manifest)]
    assert type(manifest).read(tmp_path) == manifest


def test_the_files_keep_the_keys_and_strings_the_exporter_always_wrote():
    assert json.loads(PIPELINE.to_json()) == {
        "source": "/models/sdxl-base", "family": "sdxl", "latent_channels": 4, "vae_scale_factor": 8,
        "native_side": 1024, "text_max_length": 77, "force_zeros_for_empty_prompt": False,
    }
    keys = ["model", "spec", "wrapper", "module_class", "wrapper_kwargs", "fp16_on_gpu"]
    assert list(json.loads(TORCH.to_json())) == keys
    assert PIPELINE.to_json().endswith("}\n") and '\n  "family": "sdxl",\n' in PIPELINE.to_json()


def test_an_old_pipeline_manifest_without_a_family_loads_as_stable_diffusion():
    manifest = PipelineManifest.from_json(json.dumps(OLD_PIPELINE))
    assert (manifest.family, manifest.force_zeros_for_empty_prompt) == (Family.SD, True)
    assert manifest.latent_channels == 4 and manifest.source == "tiny"


def test_an_old_torch_manifest_without_spec_or_wrapper_loads_and_is_written_back_as_it_was():
    manifest = TorchManifest.from_json(json.dumps(OLD_TORCH))
    assert (manifest.spec, manifest.wrapper) == (None, None)
    assert json.loads(manifest.to_json()) == OLD_TORCH
    with_spec = TorchManifest.from_json(json.dumps({**OLD_TORCH, "spec": "unet_xl"}))
    assert (with_spec.spec, with_spec.wrapper) == ("unet_xl", None)


REQUIRED = [(PIPELINE, name) for name in OLD_PIPELINE] + [(TORCH, name) for name in OLD_TORCH]


@pytest.mark.parametrize(("manifest", "name"), REQUIRED, ids=lambda x: x if isinstance(x, str) else type(x).__name__)
def test_a_missing_field_is_refused_naming_the_field_and_the_file(manifest, name, tmp_path):
    data = json.loads(manifest.to_json())
    del data[name]
    (tmp_path / manifest.FILE).write_text(json.dumps(data))
    path = re.escape(str(tmp_path / manifest.FILE))
    with pytest.raises(DataError, match=f"^{path}: no '{name}' field; re-export the repository"):
        type(manifest).read(tmp_path)


@pytest.mark.parametrize(("name", "value"), [(name, value) for name, values in MALFORMED.items() for value in values])
def test_a_malformed_field_is_refused_naming_the_field_and_the_file(name, value):
    manifest = PIPELINE if name in OLD_PIPELINE or name in ("family", "force_zeros_for_empty_prompt") else TORCH
    data = {**json.loads(manifest.to_json()), name: value}
    with pytest.raises(DataError, match=f"^/repo/x/{manifest.FILE}: the '{name}' field .* is malformed .*re-export"):
        type(manifest).from_json(json.dumps(data), path=f"/repo/x/{manifest.FILE}")


@given(name=st.sampled_from([*OLD_PIPELINE, "family", "force_zeros_for_empty_prompt"]), value=JSON)
def test_any_json_in_a_pipeline_field_loads_or_is_refused_by_name(name, value):
    data = {**json.loads(PIPELINE.to_json()), name: value}
    try:
        loaded = PipelineManifest.from_json(json.dumps(data))
    except DataError as exc:
        assert str(exc).startswith(f"{PIPELINE_MANIFEST}: the '{name}' field ") and "\n" not in str(exc)
    else:
        assert json.loads(loaded.to_json()) == data


@given(name=st.sampled_from([*OLD_TORCH, "spec", "wrapper"]), value=JSON)
def test_any_json_in_a_torch_field_loads_or_is_refused_by_name(name, value):
    data = {**json.loads(TORCH.to_json()), name: value}
    try:
        loaded = TorchManifest.from_json(json.dumps(data))
    except DataError as exc:
        assert str(exc).startswith(f"{TORCH_MANIFEST}: the '{name}' field ") and "\n" not in str(exc)
    else:
        assert json.loads(loaded.to_json()) == data


@pytest.mark.parametrize(("text", "says"), [("", "is not JSON"), ("[1, 2]", "holds [1, 2], not a JSON object"),
                                            ('"sd"', "holds 'sd', not a JSON object")])
def test_a_file_that_is_not_a_json_object_is_refused_naming_it(text, says, tmp_path):
    (tmp_path / PIPELINE_MANIFEST).write_text(text)
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / PIPELINE_MANIFEST))} {re.escape(says)}"):
        PipelineManifest.read(tmp_path)


def test_a_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / TORCH_MANIFEST))} is missing; re-export"):
        TorchManifest.read(tmp_path)


def test_the_family_is_an_enum_spelled_as_before():
    assert [f.value for f in Family] == ["sd", "sdxl"]
    assert (str(Family.SDXL), f"{Family.SD}", json.dumps(Family.SDXL)) == ("sdxl", "sd", '"sdxl"')
    assert Family("sdxl") is Family.SDXL and PipelineManifest(**{**vars(PIPELINE), "family": "sd"}).family is Family.SD
    served = ServedPipeline(Family.SDXL, SizeLimits(), ("euler",), "EulerDiscreteScheduler")
    assert served.to_parameters()["family"] == "sdxl"
    assert ServedPipeline.from_parameters(served.to_parameters()) == served
    with pytest.raises(ValueError, match="'family' parameter 'sd3' is malformed.*re-export"):
        ServedPipeline.from_parameters({**served.to_parameters(), "family": "sd3"})
