"""The torch-cuda target: torch modules in python-backend models (fp32 on this CPU-only machine)."""

from __future__ import annotations

import numpy as np
import pytest

from ppo_client import GenerationRequest, ScoringClient, contract
from ppo_client.contract import CudaGraphParameters
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.model_config import read_config
from ppo_server.export.options import ExportOptions, Target
from ppo_server.export.repository import export_pipeline

pytestmark = pytest.mark.integration


def test_the_torch_target_serves_the_same_images_and_embeddings(tiny_pipeline_dir, tiny_clip_dir, triton_server, tmp_path):
    repository = tmp_path / "repo"
    options = ExportOptions(target=Target.TORCH_CUDA)
    export_pipeline(str(tiny_pipeline_dir), repository, options, clip=str(tiny_clip_dir))
    for model in (*contract.COMPONENTS, contract.IMAGE_ENCODER):
        assert (repository / model.name / "1" / "weights").is_dir()
        assert "torch_model" in (repository / model.name / "1" / "model.py").read_text()
        assert read_config(repository / model.name).backend == "python"
    graphs = {
        model.name: {k: v.string_value for k, v in read_config(repository / model.name).parameters.items()}
        for model in (contract.UNET, contract.TEXT_ENCODER)
    }
    assert CudaGraphParameters.from_parameters(graphs["unet"]).cuda_graph_batches == options.cuda_graph_batches
    assert graphs["unet"][CudaGraphParameters.PARAMETER] == "1,2,4,6,8,12,16,24,32,48,64"
    assert CudaGraphParameters.PARAMETER not in graphs["text_encoder"]
    request = GenerationRequest("a red cat", seed=3, steps=4, height=64, width=64)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with EmbeddedTritonServer(ServerConfig(repository)) as server, ScoringClient(server.grpc_url) as torch_client:
        image = np.asarray(torch_client.generate(request), dtype=int)
        embeddings = torch_client.embed(list(pixels))
    with ScoringClient(triton_server.grpc_url) as onnx_client:
        reference = np.asarray(onnx_client.generate(request), dtype=int)
        reference_embeddings = onnx_client.embed(list(pixels))
    assert np.abs(image - reference).max() <= 3
    np.testing.assert_allclose(embeddings, reference_embeddings, atol=1e-4)


def test_the_torch_target_serves_sdxl_as_diffusers_draws_it(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from ppo_server.export.builders import build_tiny_family
    from ppo_server.reference import render

    folder = build_tiny_family(tmp_path / "sdxl", "sdxl")
    repository = tmp_path / "repo"
    export_pipeline(str(folder), repository, ExportOptions(target=Target.TORCH_CUDA))
    assert (repository / "text_encoder_2" / "1" / "weights").is_dir()
    request = GenerationRequest("a red cat", seed=3, steps=4, guidance_scale=5.0, height=64, width=96)
    with EmbeddedTritonServer(ServerConfig(repository)) as server, ScoringClient(server.grpc_url) as client:
        image = np.asarray(client.generate(request), dtype=int)
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert np.abs(image - render(pipe, request).astype(int)).max() <= 3
