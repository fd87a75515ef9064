import ast
import dataclasses
from pathlib import Path

import pytest

from ppo_client import contract
from ppo_server.backends.schedulers import SPECS, build_scheduler, scheduler_class, sd_scheduler
from ppo_server.export import specs
from ppo_server.export.model_config import ServingOptions, build_config, parse, render


def test_every_contract_scheduler_maps_to_a_diffusers_class():
    assert set(SPECS) == set(contract.SCHEDULERS)
    for name in contract.SCHEDULERS:
        assert scheduler_class(name).__name__ == SPECS[name].class_name


def test_karras_sigmas_are_what_the_name_says_whatever_the_checkpoint_chose():
    karras = build_scheduler("dpm_multistep", sd_scheduler().config).config
    assert build_scheduler("dpm_multistep_karras", sd_scheduler().config).config.use_karras_sigmas is True
    assert karras.use_karras_sigmas is False
    own = build_scheduler("dpm_multistep_karras", sd_scheduler().config).config
    assert build_scheduler("", {**own, "_class_name": "DPMSolverMultistepScheduler"}).config.use_karras_sigmas is True


def test_export_specs_use_the_contract_tensor_names_and_declare_their_dynamic_axes():
    for spec in specs.EXPORT_SPECS:
        assert set(spec.dynamic_axes) == {*spec.contract.inputs, *spec.contract.outputs}, spec.key
        assert all(0 in axes for axes in spec.dynamic_axes.values()), "batch must be dynamic"


def test_generated_config_round_trips_through_pbtxt():
    options = ServingOptions(instance_count=3, max_queue_delay_us=1234, parameters={"max_side": "256"})
    config = build_config(contract.TXT2IMG, options)
    parsed = parse(render(config))
    assert parsed == config
    assert parsed.max_batch_size == contract.TXT2IMG.max_batch_size > 1
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 1234
    assert parsed.instance_group[0].count == 3
    assert parsed.parameters["max_side"].string_value == "256"
    optional = {t.name for t in parsed.input if t.optional}
    assert optional == {"NEGATIVE_PROMPT", "SCHEDULER", "GUIDANCE_RESCALE"}


def test_generated_config_spells_types_as_triton_expects():
    text = render(build_config(contract.TXT2IMG))
    assert 'name: "PROMPT"' in text and "TYPE_STRING" in text and "TYPE_UINT8" in text
    assert 'backend: "python"' in text


@pytest.mark.parametrize("config", ["sd_scheduler", "shipped demo pipeline"])
def test_ddim_asked_for_by_a_request_does_not_clamp_the_latents(config):
    # DDIM's default clip_sample=True clamps predicted latents to [-1, 1]: the demo model then draws noise
    from diffusers import PNDMScheduler

    from ppo_demo.preset import demo_pipeline_dir

    if config == "sd_scheduler":
        scheduler = sd_scheduler()
    else:
        scheduler = PNDMScheduler.from_pretrained(demo_pipeline_dir() / "scheduler")
    assert build_scheduler("ddim", scheduler.config).config.clip_sample is False


# --- one contract: tensor names, model-config parameters ---

REPO_ROOT = Path(__file__).resolve().parents[2]
LINTED_ROOTS = ("client", "server_export", "demo", "benchmarks")
"""Where no module but ``contract.py`` may spell a tensor name as a string (missing roots are skipped)."""


def _tensor_name_literals(path: Path, names: frozenset[str]) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    placeholders = {  # argparse's metavar="IMAGE" names a command-line placeholder, not a tensor
        id(keyword.value) for keyword in ast.walk(tree) if isinstance(keyword, ast.keyword) and keyword.arg == "metavar"
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in placeholders
    ]


def test_no_module_but_the_contract_spells_a_tensor_name():
    names = contract.tensor_names()
    contract_file = Path(contract.__file__).resolve()
    found = {}
    for root in LINTED_ROOTS:
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            if path.resolve() != contract_file and (hits := _tensor_name_literals(path, names)):
                found[str(path.relative_to(REPO_ROOT))] = hits
    assert found == {}, "name tensors through ppo_client.contract (e.g. contract.TXT2IMG.PROMPT.name)"


def test_the_lint_sees_a_literal_and_ignores_placeholders(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('inputs = {"PROMPT": 1}\nparser.add_argument("images", metavar="IMAGE")\n')
    assert _tensor_name_literals(module, contract.tensor_names()) == [(1, "PROMPT")]


def test_the_wire_format_is_pinned():
    # the contract's field order is the wire order: a reordered or renamed field shows here
    wire = {
        m.name + ("_xl" if m is contract.UNET_XL else "_graph" if m is contract.CLIP_TEXT_GRAPH else ""):
            ([t.name for t in m.inputs], [t.name for t in m.outputs])
        for m in contract.ALL_CONTRACTS
    }
    prompt = ["PROMPT", "NEGATIVE_PROMPT", "SEED", "STEPS", "GUIDANCE_SCALE", "HEIGHT", "WIDTH", "SCHEDULER", "GUIDANCE_RESCALE"]
    assert wire == {
        "text_encoder": (["INPUT_IDS"], ["LAST_HIDDEN_STATE"]),
        "text_encoder_2": (["INPUT_IDS"], ["LAST_HIDDEN_STATE", "TEXT_EMBEDS"]),
        "unet": (["SAMPLE", "TIMESTEP", "ENCODER_HIDDEN_STATES"], ["NOISE_PRED"]),
        "unet_xl": (["SAMPLE", "TIMESTEP", "ENCODER_HIDDEN_STATES", "TEXT_EMBEDS", "TIME_IDS"], ["NOISE_PRED"]),
        "vae_decoder": (["LATENT"], ["IMAGE"]),
        "txt2img": (prompt, ["IMAGE"]),
        "image_encoder": (["IMAGE"], ["EMBEDDING"]),
        "preference": (["EMBEDDING", "USER_MODEL"], ["SCORE"]),
        "txt2img_score": ([*prompt, "USER_MODEL"], ["IMAGE", "EMBEDDING", "SCORE"]),
        "clip_text": (["TEXT"], ["EMBEDDING", "TOKENS"]),
        "clip_text_graph": (["INPUT_IDS"], ["EMBEDDING"]),
    }


def test_every_tensor_attribute_is_named_like_its_tensor_and_contracts_are_frozen():
    for model in contract.ALL_CONTRACTS:
        for tensor in (*model.inputs, *model.outputs):
            assert getattr(model, tensor.name) is tensor
    with pytest.raises(dataclasses.FrozenInstanceError):
        contract.TXT2IMG.PROMPT = contract.TXT2IMG.SEED


PARAMETER_RECORDS = [
    contract.ServedPipeline("sdxl", contract.SizeLimits(32, 32, 2048, 1024), ("euler", "ddim"), "EulerDiscreteScheduler"),
    contract.ImageEncoderParameters("clip-0123abcd", 512),
    contract.ClipTextParameters(77),
    contract.ComponentParameters(2),
    contract.ComponentParameters(0, spin=True),
    contract.HeadCacheParameters(2**20),
    contract.CudaGraphParameters((1, 2, 4)),
]


@pytest.mark.parametrize("record", PARAMETER_RECORDS, ids=lambda r: type(r).__name__)
def test_model_config_parameters_round_trip_as_text(record):
    parameters = record.to_parameters()
    assert all(isinstance(v, str) for v in parameters.values())
    assert type(record).from_parameters(parameters) == record


@pytest.mark.parametrize("record", PARAMETER_RECORDS[:-1], ids=lambda r: type(r).__name__)
def test_a_missing_or_malformed_parameter_is_refused_by_name_with_the_fix(record):
    optional = getattr(type(record), "optional", ())
    for key in set(record.to_parameters()) - set(optional):
        missing = {k: v for k, v in record.to_parameters().items() if k != key}
        with pytest.raises(ValueError, match=f"no '{key}' parameter; re-export the repository"):
            type(record).from_parameters(missing)
    numeric = [k for k, v in record.to_parameters().items() if v.isdigit()]
    for key in numeric:
        with pytest.raises(ValueError, match=f"'{key}' parameter 'many' is malformed.*re-export"):
            type(record).from_parameters({**record.to_parameters(), key: "many"})


def test_an_older_config_without_an_optional_parameter_runs_as_before_and_a_malformed_one_is_refused():
    record = contract.ComponentParameters(3, spin=True)
    older = {k: v for k, v in record.to_parameters().items() if k not in record.optional}
    assert contract.ComponentParameters.from_parameters(older) == contract.ComponentParameters(3, spin=False)
    for bad in ("yes", "1", "True", ""):
        with pytest.raises(ValueError, match=f"'spin' parameter '{bad}' is malformed.*re-export"):
            contract.ComponentParameters.from_parameters({**record.to_parameters(), "spin": bad})


def test_an_empty_encoder_id_is_refused_since_it_keys_embedding_caches():
    with pytest.raises(ValueError, match="'encoder_id'.*malformed"):
        contract.ImageEncoderParameters.from_parameters({"encoder_id": "", "embedding_dim": "8"})
