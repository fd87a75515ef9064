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

    from ppo_server.export.presets import demo_pipeline_dir

    if config == "sd_scheduler":
        scheduler = sd_scheduler()
    else:
        scheduler = PNDMScheduler.from_pretrained(demo_pipeline_dir() / "scheduler")
    assert build_scheduler("ddim", scheduler.config).config.clip_sample is False
