import json
from pathlib import Path

import onnx
import pytest

from ppo_client import contract
from ppo_client.contract import ServedPipeline
from ppo_client.manifests import PIPELINE_MANIFEST
from ppo_server.errors import ExportError
from ppo_server.export.model_config import read_config
from ppo_server.export.repository import export_pipeline
from ppo_server.export.specs import BACKEND_MODULES
from ppo_server.export.targets import shim_source

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_export_writes_every_model_with_a_generated_config(tiny_repository):
    assert not (tiny_repository / contract.TEXT_ENCODER_2.name).exists(), "an SD 1.x pipeline has one text encoder"
    for model in (*contract.components("sd"), contract.TXT2IMG, *contract.SCORING_MODELS):
        config = read_config(tiny_repository / model.name)
        assert config.name == model.name
        assert config.max_batch_size > 1 and config.HasField("dynamic_batching")
        assert [t.name for t in config.input] == [t.name for t in model.inputs]
        assert (tiny_repository / model.name / "1" / "model.py").read_text() == shim_source(model.name)
    pipeline = tiny_repository / contract.TXT2IMG.name / "1" / "pipeline"
    assert (pipeline / "scheduler" / "scheduler_config.json").exists()
    assert json.loads((pipeline / PIPELINE_MANIFEST).read_text())["vae_scale_factor"] == 8


def test_onnx_graphs_match_torch_and_use_the_contract_names(tiny_export, tiny_repository):
    for report in tiny_export.reports:
        assert report.max_abs_diff < 1e-4, report
    for model in contract.COMPONENTS:
        graph = onnx.load(str(tiny_repository / model.name / "1" / "model.onnx")).graph
        assert [i.name for i in graph.input] == [t.name for t in model.inputs]
        assert [o.name for o in graph.output] == [t.name for t in model.outputs]


def test_size_limits_follow_the_architecture(tiny_export, tiny_repository):
    # 4 VAE blocks (x8) and 2 UNet levels (x2): sides must be multiples of 16
    assert (tiny_export.native_side, tiny_export.size_multiple, tiny_export.max_side) == (64, 16, 256)
    params = {k: v.string_value for k, v in read_config(tiny_repository / contract.TXT2IMG.name).parameters.items()}
    assert params["size_multiple"] == "16"
    assert ServedPipeline.from_parameters(params).limits.multiple == 16


def test_the_versioned_entry_points_are_what_the_exporter_writes():
    for name in BACKEND_MODULES:
        assert (REPO_ROOT / "model_repository" / name / "1" / "model.py").read_text() == shim_source(name)


def test_a_folder_that_is_not_a_pipeline_gives_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="cannot load a Stable Diffusion pipeline"):
        export_pipeline(str(tmp_path), tmp_path / "repo")


def test_the_txt2img_config_says_what_the_model_serves(tiny_export, tiny_repository):
    params = {k: v.string_value for k, v in read_config(tiny_repository / contract.TXT2IMG.name).parameters.items()}
    served = ServedPipeline.from_parameters(params)
    assert served.family == "sd" and served.default_scheduler == "PNDMScheduler"
    assert set(served.schedulers) == set(contract.SCHEDULERS), "SD 1.x's PNDM config builds every named scheduler"
    assert tiny_export.schedulers == list(served.schedulers)


def test_every_target_has_its_own_writer():
    from ppo_server.export.options import ExportOptions, Target
    from ppo_server.export.targets import writer_for

    writers = {target: writer_for(ExportOptions(target=target)) for target in Target}
    assert all(writer.target is target for target, writer in writers.items())
    assert len({type(writer) for writer in writers.values()}) == len(Target)


def test_ppo_export_takes_its_defaults_from_the_export_options():
    from ppo_server.export.cli import build_parser
    from ppo_server.export.options import ExportOptions, Precision, Target

    args, default = build_parser().parse_args(["--preset", "tiny"]), ExportOptions()
    assert Target(args.target) is default.target and Precision(args.precision) is default.precision
    assert (args.txt2img_instances, args.txt2img_queue_delay_us) == (
        default.txt2img_serving.instance_count, default.txt2img_serving.max_queue_delay_us
    )
    assert args.component_queue_delay_us == default.component_serving.max_queue_delay_us
    assert (args.max_images, args.intra_op_threads, args.max_side) == (default.max_images, default.intra_op_threads, None)
    assert int(args.head_cache_mb * 2**20) == default.head_cache_bytes
    assert args.cuda_graph_batches == ",".join(map(str, default.cuda_graph_batches))
    assert tuple(args.spin_models.split(",")) == default.spin_models


def test_only_the_unet_threads_spin_by_default_and_an_unknown_model_is_refused(tiny_repository, tmp_path):
    from ppo_client.contract import ComponentParameters
    from ppo_server.export.options import ExportOptions

    spin = {name: ComponentParameters.from_parameters(
                {k: v.string_value for k, v in read_config(tiny_repository / name).parameters.items()}).spin
            for name in ("text_encoder", "unet", "vae_decoder", "image_encoder", "clip_text")}
    assert spin == {"text_encoder": False, "unet": True, "vae_decoder": False, "image_encoder": False, "clip_text": False}
    with pytest.raises(ExportError, match="--spin-models: unte is not a component model"):
        export_pipeline(str(tmp_path / "absent"), tmp_path / "repo", ExportOptions(spin_models=("unte",)))
