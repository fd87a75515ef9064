"""CUDA graph replay for the torch-cuda target: bucketing everywhere, replay against eager on a GPU."""

from __future__ import annotations

import pytest

from ppo_client.contract import CudaGraphParameters
from ppo_server.backends.cuda_graphs import bucket_for


def test_batch_lists_parse_sorted_and_deduplicated():
    assert CudaGraphParameters.from_text("8, 2,4,2").cuda_graph_batches == (2, 4, 8)
    assert CudaGraphParameters.from_text("").cuda_graph_batches == ()
    with pytest.raises(ValueError, match="positive batch sizes"):
        CudaGraphParameters.from_text("0,4")
    with pytest.raises(ValueError):
        CudaGraphParameters.from_text("two")


def test_a_config_without_graph_batches_runs_eagerly_and_a_malformed_one_is_refused():
    assert CudaGraphParameters.from_parameters({}).cuda_graph_batches == ()
    assert CudaGraphParameters.from_parameters(CudaGraphParameters((2, 4)).to_parameters()).cuda_graph_batches == (2, 4)
    with pytest.raises(ValueError, match="re-export"):
        CudaGraphParameters.from_parameters({CudaGraphParameters.PARAMETER: "two"})


def test_a_batch_pads_up_to_the_next_listed_size_and_larger_ones_run_eagerly():
    batches = (1, 2, 4, 6, 8)
    assert [bucket_for(n, batches) for n in (1, 2, 3, 5, 6, 7, 8)] == [1, 2, 4, 6, 6, 8, 8]
    assert bucket_for(9, batches) is None


def test_the_export_refuses_a_bad_batch_list_before_any_work(tmp_path):
    from ppo_server.errors import ExportError
    from ppo_server.export.options import ExportOptions, Target
    from ppo_server.export.repository import export_pipeline

    with pytest.raises(ExportError, match="--cuda-graph-batches: .*positive"):
        export_pipeline(str(tmp_path / "absent"), tmp_path / "repo", ExportOptions(target=Target.TORCH_CUDA, cuda_graph_batches=(0, 2)))
    assert not (tmp_path / "repo").exists()


@pytest.mark.gpu
def test_graph_replays_match_eager_runs_of_a_small_unet():
    import torch
    from diffusers import UNet2DConditionModel

    from ppo_server.backends.cuda_graphs import GraphRunner
    from ppo_server.export import specs

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    module = specs.UNET.wrap(unet.to("cuda", torch.float16)).eval()
    runner = GraphRunner(module, (2, 4, 8))
    with torch.inference_mode():
        for rows in (2, 3, 3, 7):  # 3 pads to 4 and reuses its graph; 7 pads to 8
            sample = torch.randn(rows, 4, 8, 8, device="cuda", dtype=torch.float16)
            timestep = torch.full((rows, 1), 500.0, device="cuda", dtype=torch.float16)
            hidden = torch.randn(rows, 77, 32, device="cuda", dtype=torch.float16)
            replayed = runner(sample, timestep, hidden).clone()
            torch.testing.assert_close(replayed, module(sample, timestep, hidden), rtol=2e-2, atol=2e-2)
        larger = (torch.zeros(9, 4, 8, 8, device="cuda", dtype=torch.float16),
                  torch.zeros(9, 1, device="cuda", dtype=torch.float16),
                  torch.zeros(9, 77, 32, device="cuda", dtype=torch.float16))
        assert runner(*larger).shape[0] == 9  # beyond the largest bucket: eager, no new graph
    assert sorted(key[0] for key in runner.graphs) == [2, 4, 8]
