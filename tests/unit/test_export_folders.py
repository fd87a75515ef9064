"""`ppo-export --model` on checkpoint folders that are missing, damaged or incomplete: each is refused
before any export work in one line that names the checkpoint, the component and what to do; never a
traceback, a hub look-up for a path, or an export with settings or weights the checkpoint does not have.

Each case copies a tiny pipeline (SD or SDXL shaped) and damages one thing."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppo_server.errors import CheckpointError, ExportError
from ppo_server.export import checkpoint, families
from ppo_server.export.cli import main
from ppo_server.export.repository import export_pipeline

CONFIGS = {  # component -> its config file
    "unet": "config.json", "vae": "config.json", "text_encoder": "config.json", "text_encoder_2": "config.json",
    "tokenizer": "tokenizer_config.json", "tokenizer_2": "tokenizer_config.json", "scheduler": "scheduler_config.json",
}
NOT_OBJECTS = {  # file content -> what the message says
    b"[1, 2]": "holds a JSON list, not an object",
    b'"unet"': "holds a JSON string, not an object",
    b"3.5": "holds a JSON number, not an object",
    b"null": "holds a JSON null, not an object",
    b"{not json": "is not valid JSON (Expecting property name",
    b"": "is not valid JSON (Expecting value at line 1, column 1)",
    b'{"_class_name": "\xe9"}': "is not UTF-8 text (byte 17)",
}


@pytest.fixture(scope="module")
def tiny_sdxl_dir(tmp_path_factory) -> Path:
    from ppo_server.export.builders import build_tiny_family

    return build_tiny_family(tmp_path_factory.mktemp("pipelines") / "tiny_sdxl", "sdxl")


@pytest.fixture(params=["sd", "sdxl"])
def tiny_dir(request) -> Path:
    """The tiny pipeline of each served family."""
    return request.getfixturevalue("tiny_pipeline_dir" if request.param == "sd" else "tiny_sdxl_dir")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "checkpoint"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("_tokenizer_src"))
    return copy


def edit_json(path: Path, **changes) -> None:
    """Change keys of a JSON file; ``...`` removes one."""
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not ...}))


def refusal(folder: Path, tmp_path: Path, *, scheduler: str = "") -> str:
    """The one line `export_pipeline` refuses ``folder`` with; nothing is written."""
    from ppo_server.export.options import ExportOptions

    with pytest.raises(CheckpointError) as info:
        export_pipeline(str(folder), tmp_path / "repo", ExportOptions(scheduler=scheduler))
    message = str(info.value)
    assert "\n" not in message and len(message) < len(str(folder)) + 400 and str(folder) in message, message
    assert "Traceback" not in message and " object at 0x" not in message, message
    assert not (tmp_path / "repo").exists()
    return message


def components_of(folder: Path) -> tuple[str, ...]:
    return families.COMPONENTS["sdxl" if (folder / "text_encoder_2").exists() else "sd"]


# --- every component the family needs: missing, unlisted, without its files, with a config that is not an object


def test_every_component_a_family_needs_is_named_when_its_folder_is_missing(tiny_dir, tmp_path):
    for name in components_of(tiny_dir):
        folder = copy_of(tiny_dir, tmp_path / name)
        shutil.rmtree(folder / name)
        message = refusal(folder, tmp_path / name)
        assert f"the {name}/ folder is missing" in message and "copy it from the original checkpoint" in message


def test_every_component_a_family_needs_is_named_when_model_index_does_not_list_it(tiny_dir, tmp_path):
    for name in components_of(tiny_dir):
        for i, (entry, said) in enumerate([
            (..., f"lists no {name}, which a "), ([None, None], f"lists no {name}, which a "),
            ("UNet2DConditionModel", f"gives {name} as 'UNet2DConditionModel', not [library, class]"),
            (["evil", "Payload"], f"says {name} is evil.Payload; ppo-export loads {name} from diffusers"),
        ]):
            folder = copy_of(tiny_dir, tmp_path / name / str(i))
            edit_json(folder / "model_index.json", **{name: entry})
            assert said in refusal(folder, tmp_path / name / str(i))


@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "scheduler"])
def test_a_model_or_tokenizer_without_its_files_is_named(tiny_sdxl_dir, tmp_path, name):
    folder = copy_of(tiny_sdxl_dir, tmp_path)
    for path in (folder / name).iterdir():
        if path.name != CONFIGS[name]:
            path.unlink()
    said = "has no tokenizer files (tokenizer.json" if name.startswith("tokenizer") else "has no weights ("
    assert f"{name}/ {said}" in refusal(folder, tmp_path)


@pytest.mark.parametrize("content", NOT_OBJECTS, ids=["list", "string", "number", "null", "invalid", "empty", "latin1"])
@pytest.mark.parametrize("component", ["", *CONFIGS])
def test_a_config_that_is_not_a_json_object_is_named(tiny_sdxl_dir, tmp_path, component, content):
    folder = copy_of(tiny_sdxl_dir, tmp_path)
    name = f"{component}/{CONFIGS[component]}" if component else "model_index.json"
    (folder / name).write_bytes(content)
    message = refusal(folder, tmp_path)
    assert f": {name} {NOT_OBJECTS[content]}" in message and "restore it from the original checkpoint" in message


@pytest.mark.parametrize("name", ["unet/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json"])
def test_a_missing_config_is_named(tiny_pipeline_dir, tmp_path, name):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    (folder / name).unlink()
    assert f": {name} is missing; restore it" in refusal(folder, tmp_path)


def test_a_model_index_without_a_pipeline_class_is_named(tiny_pipeline_dir, tmp_path):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    edit_json(folder / "model_index.json", _class_name=["StableDiffusionPipeline"])
    message = refusal(folder, tmp_path)
    assert "model_index.json names no pipeline class (_class_name is ['StableDiffusionPipeline'])" in message


def test_an_sdxl_setting_that_is_not_true_or_false_is_named(tiny_sdxl_dir, tmp_path):
    folder = copy_of(tiny_sdxl_dir, tmp_path)
    edit_json(folder / "model_index.json", force_zeros_for_empty_prompt="yes")
    assert "gives force_zeros_for_empty_prompt as 'yes', not true or false" in refusal(folder, tmp_path)


# --- the scheduler: a class diffusers has, and the noise schedule the model was trained on ----------------------


def test_an_unknown_scheduler_class_is_refused_naming_it_and_the_supported_ones(tiny_pipeline_dir, tmp_path):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    (folder / "scheduler" / "scheduler_config.json").write_text('{"_class_name": "MadeUpScheduler"}')
    message = refusal(folder, tmp_path)
    assert "scheduler/scheduler_config.json: its _class_name names the scheduler class 'MadeUpScheduler'" in message
    assert "supported: PNDMScheduler, DDIMScheduler, EulerDiscreteScheduler" in message and "--scheduler" in message
    # replacing it keeps its settings, and it has none: refused rather than exported with made-up ones
    assert "does not give the noise schedule the model was trained on" in refusal(folder, tmp_path, scheduler="euler")


def test_an_unknown_scheduler_class_can_be_replaced_when_its_settings_are_there(tiny_pipeline_dir, tmp_path):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    edit_json(folder / "scheduler" / "scheduler_config.json", _class_name="MadeUpScheduler", beta_end=0.02)
    edit_json(folder / "model_index.json", scheduler=["diffusers", "MadeUpScheduler"])
    assert "model_index.json's scheduler entry names the scheduler class 'MadeUpScheduler'" in refusal(folder, tmp_path)
    info = families.detect(str(folder), scheduler="euler")
    pipeline = families.load(str(folder), info, scheduler="euler")
    assert type(pipeline.scheduler).__name__ == "EulerDiscreteScheduler" and pipeline.scheduler.config.beta_end == 0.02


@pytest.mark.parametrize(("changes", "said"), [
    ({"beta_schedule": ...}, "does not give the noise schedule the model was trained on (beta_schedule missing)"),
    ({"num_train_timesteps": 10**12}, "num_train_timesteps is 1000000000000, not a whole number from 1 to 100000"),
    ({"beta_start": "0.1"}, "beta_start is '0.1', not a number from 0 to 1"),
    ({"trained_betas": {"a": 1}}, "trained_betas is {'a': 1}, not a non-empty list of numbers"),
    ({"beta_schedule": "made_up"}, "cannot build the scheduler from scheduler/scheduler_config.json: NotImplemented"),
])
def test_a_scheduler_config_without_a_usable_noise_schedule_is_refused(tiny_pipeline_dir, tmp_path, changes, said):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    edit_json(folder / "scheduler" / "scheduler_config.json", **changes)
    assert said in refusal(folder, tmp_path)


# --- what only loading can tell: weights that do not fit the config, damaged files -----------------------------


@pytest.mark.parametrize(("name", "changes", "first"), [
    ("unet", {"block_out_channels": [64, 128]}, ("303 tensor(s) differ in shape (first: conv_in.weight is "
                                                 "[32, 4, 3, 3] in the weights, [64, 4, 3, 3] by the config)")),
    ("vae", {"latent_channels": 8}, ("7 tensor(s) differ in shape (first: encoder.conv_out.weight is [8, 32, 3, 3] "
                                     "in the weights, [16, 32, 3, 3] by the config)")),
    ("text_encoder", {"hidden_size": 64}, ("49 tensor(s) differ in shape (first: embeddings.position_embedding.weight "
                                           "is [77, 32] in the weights, [77, 64] by the config)")),
], ids=["unet", "vae", "text_encoder"])
def test_a_config_that_does_not_match_its_weights_is_one_line_naming_the_component(
    tiny_pipeline_dir, tmp_path, name, changes, first
):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    edit_json(folder / name / "config.json", **changes)
    message = refusal(folder, tmp_path)
    assert f": cannot load the {name} (" in message and "its config.json does not match its weights: " in message
    assert first in message and message.endswith("restore the config.json its weights were saved with"), message


@pytest.mark.parametrize("name", ["unet", "text_encoder"])
def test_weights_that_lack_tensors_are_refused_rather_than_filled_at_random(tiny_pipeline_dir, tmp_path, name):
    from safetensors.torch import load_file, save_file

    folder = copy_of(tiny_pipeline_dir, tmp_path)
    weights = next(p for p in (folder / name).iterdir() if p.suffix == ".safetensors")
    tensors = load_file(weights)
    dropped = min(tensors)
    del tensors[dropped]
    save_file(tensors, weights)
    message = refusal(folder, tmp_path)
    assert f"cannot load the {name} (" in message
    assert f"its weights lack 1 tensor(s) its config.json asks for (first: {dropped})" in message


@pytest.mark.parametrize(("path", "content", "said"), [
    ("unet/diffusion_pytorch_model.safetensors", b"not safetensors", "cannot load the unet (UNet2DConditionModel)"),
    ("tokenizer/tokenizer.json", b"{not json", "cannot load the tokenizer (CLIPTokenizer) from tokenizer/: "),
])
def test_a_damaged_weights_or_tokenizer_file_is_one_line(tiny_pipeline_dir, tmp_path, path, content, said):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    (folder / path).write_bytes(content)
    assert said in refusal(folder, tmp_path)


def test_a_class_the_library_does_not_have_is_named(tiny_pipeline_dir, tmp_path):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    edit_json(folder / "model_index.json", unet=["diffusers", "StableDiffusionPipeline"])
    message = refusal(folder, tmp_path)
    assert "says unet is a diffusers.StableDiffusionPipeline, which is not a diffusers.ModelMixin" in message


# --- where the checkpoint is: a path is never looked up on the hub; a hub id is refused quickly when unreachable


@pytest.mark.parametrize("model", ["/no/such/folder", "./org/name", "~/no-such-pipeline-folder", "a/b/c",
                                   "no-such-pipeline", "org/../name", "-org/name"])
def test_a_path_that_does_not_exist_is_refused_at_once_as_a_missing_folder(model):
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="no such folder; pass a pipeline folder written by save_pretrained"):
        checkpoint.precheck(model)
    assert time.perf_counter() - started < 0.5


def test_a_file_is_not_a_pipeline_folder(tiny_pipeline_dir):
    with pytest.raises(CheckpointError, match="model_index.json is a file, not a folder; pass a pipeline folder"):
        families.detect(str(tiny_pipeline_dir / "model_index.json"))


def test_a_folder_without_model_index_says_so(tiny_pipeline_dir):
    with pytest.raises(CheckpointError, match="cannot load a Stable Diffusion pipeline from .*: it has no model_index"):
        families.detect(str(tiny_pipeline_dir / "unet"))


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "online"])
def test_a_hub_id_that_is_not_here_is_refused_within_seconds(monkeypatch, tmp_path, offline):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        families.detect("no-such-org/no-such-model")
    elapsed = time.perf_counter() - started
    assert "no-such-org/no-such-model is neither a local folder nor a hub checkpoint" in str(info.value)
    assert ("HF_HUB_OFFLINE is set" in str(info.value)) == offline
    assert elapsed < (1 if offline else checkpoint.HUB_PROBE_TIMEOUT_S + 3), f"{elapsed:.1f} s"


def test_a_hub_id_in_the_local_cache_is_checked_like_a_folder(tiny_pipeline_dir, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--some-org--tiny-sd"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = copy_of(tiny_pipeline_dir, repo / "snapshots")
    snapshot.rename(repo / "snapshots" / ("0" * 40))
    assert families.detect("some-org/tiny-sd").family == "sd"
    shutil.rmtree(repo / "snapshots" / ("0" * 40) / "vae")
    with pytest.raises(CheckpointError, match="^some-org/tiny-sd: the vae/ folder is missing"):
        families.detect("some-org/tiny-sd")


# --- the CLI: `error: <one line>`, a non-zero exit code, no traceback -------------------------------------------


def damage_index(folder):
    (folder / "model_index.json").write_text("[]")


def damage_tokenizer(folder):
    shutil.rmtree(folder / "tokenizer")


def damage_scheduler(folder):
    (folder / "scheduler" / "scheduler_config.json").write_text('{"_class_name": "MadeUpScheduler"}')


def damage_unet(folder):
    edit_json(folder / "unet" / "config.json", block_out_channels=[64, 128])


@pytest.mark.parametrize(("damage", "said"), [
    (damage_index, "model_index.json holds a JSON list, not an object"),
    (damage_tokenizer, "the tokenizer/ folder is missing"),
    (damage_scheduler, "names the scheduler class 'MadeUpScheduler'"),
    (damage_unet, "cannot load the unet (UNet2DConditionModel) from unet/: its config.json does not match its weights"),
])
def test_ppo_export_prints_one_error_line_and_exits_non_zero(tiny_pipeline_dir, tmp_path, capsys, damage, said):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    damage(folder)
    assert main(["--model", str(folder), "--out", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "repo").exists()


def test_ppo_export_refuses_a_missing_folder_before_loading_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from ppo_server.export.cli import main; rc = main(sys.argv[1:]); "
            "print('torch' in sys.modules, file=sys.stdout); sys.exit(rc)")
    args = ["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "repo")]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stdout.strip() == "False", done
    assert done.stderr.strip() == (f"error: {tmp_path / 'nope'}: no such folder; pass a pipeline folder written by "
                                   "save_pretrained (model_index.json at its top), or a hub id of the form org/name")


def test_a_missing_clip_folder_is_refused_before_any_export_work(tiny_pipeline_dir, tmp_path, capsys):
    args = ["--model", str(tiny_pipeline_dir), "--clip", str(tmp_path / "clip"), "--out", str(tmp_path / "repo")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"error: {tmp_path / 'clip'}: no such folder; pass a CLIPModel folder written by "
                           "save_pretrained (config.json at its top), or a hub id of the form org/name")
    assert not (tmp_path / "repo").exists()


def test_a_tokenizer_saved_the_older_way_passes(tiny_pipeline_dir, tmp_path):
    folder = copy_of(tiny_pipeline_dir, tmp_path)
    (folder / "tokenizer" / "tokenizer.json").unlink()
    for name in ("vocab.json", "merges.txt"):  # SD 1.x checkpoints ship these instead of tokenizer.json
        shutil.copy(tiny_pipeline_dir / "_tokenizer_src" / name, folder / "tokenizer" / name)
    pipeline = families.load(str(folder), families.detect(str(folder)))
    assert pipeline.tokenizer("a cat").input_ids[0] == pipeline.tokenizer.bos_token_id


def test_the_untouched_tiny_folders_still_pass_every_check(tiny_export, tiny_sdxl_dir):
    assert tiny_export.family == "sd" and tiny_export.schedulers
    info = families.detect(str(tiny_sdxl_dir))
    assert (info.family, set(info.components)) == ("sdxl", set(families.COMPONENTS["sdxl"]))
    pipeline = families.load(str(tiny_sdxl_dir), info)
    assert pipeline.tokenizer_2 is not None and pipeline.config["force_zeros_for_empty_prompt"] is True


# --- any JSON in model_index.json or scheduler_config.json: an export error or a pipeline, never a traceback --------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def scratch(tiny_pipeline_dir, tmp_path_factory) -> Path:
    return copy_of(tiny_pipeline_dir, tmp_path_factory.mktemp("fuzzed"))


def only_export_errors(call) -> None:
    try:
        call()
    except ExportError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 500, str(exc)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(whole=JSON, changes=st.dictionaries(st.sampled_from(["_class_name", *families.COMPONENTS["sdxl"],
                                                              "force_zeros_for_empty_prompt"]), JSON, max_size=3))
def test_any_json_in_model_index_is_an_export_error_or_a_checked_folder(scratch, tiny_pipeline_dir, whole, changes):
    index = json.loads((tiny_pipeline_dir / "model_index.json").read_text())
    for content in (whole, {**index, **changes}):
        (scratch / "model_index.json").write_text(json.dumps(content))
        only_export_errors(lambda: families.detect(str(scratch)))


SCHEDULER_VALUES = JSON | st.floats(0, 0.99) | st.integers(0, 2000) | st.lists(st.floats(0, 0.99), max_size=4) | (
    st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2", "made_up", "leading", "trailing", "v_prediction",
                     "DDIMScheduler", "LCMScheduler", "SchedulerMixin", "FlowMatchEulerDiscreteScheduler"]))
"""Any JSON, and values of the right type that may still be wrong, so that many configs reach the scheduler's class."""


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(whole=JSON, changes=st.dictionaries(st.sampled_from(["_class_name", "beta_start", "beta_end", "beta_schedule",
                                                              "num_train_timesteps", "trained_betas", "prediction_type",
                                                              "timestep_spacing", "steps_offset"]),
                                             SCHEDULER_VALUES, max_size=3))
def test_any_json_in_scheduler_config_is_an_export_error_or_a_scheduler(scratch, tiny_pipeline_dir, whole, changes):
    (scratch / "model_index.json").write_bytes((tiny_pipeline_dir / "model_index.json").read_bytes())
    config = json.loads((tiny_pipeline_dir / "scheduler" / "scheduler_config.json").read_text())

    def checked_then_built():
        families.detect(str(scratch))
        checkpoint.load_scheduler(scratch, "PNDMScheduler", "", label=str(scratch))

    for content in (whole, {**config, **changes}):
        (scratch / "scheduler" / "scheduler_config.json").write_text(json.dumps(content))
        only_export_errors(checked_then_built)
