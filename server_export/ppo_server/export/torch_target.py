"""The ``torch-cuda`` target: each component is its torch module in a python-backend model.

The module is saved with ``save_pretrained`` beside a manifest naming its class and the same thin
wrapper the ONNX export traces (``export.specs``), so both targets compute the same function. On a
GPU the UNet, text encoder and image encoder run in fp16 with PyTorch's scaled-dot-product
attention; the VAE decoder stays in fp32 (fp16 VAEs can overflow to NaN). The UNet, called once per
denoising step, replays CUDA graphs for the batch sizes listed (``backends.cuda_graphs``). Without a
GPU the same models run eagerly in fp32 on the CPU, which is how this target is tested here.
"""

from __future__ import annotations

import json
from pathlib import Path

from ppo_client import contract
from ppo_server.backends.cuda_graphs import GRAPH_BATCHES_PARAMETER, parse_batches
from ppo_server.export.model_config import ServingOptions, build_config, write_config

MANIFEST = "torch_manifest.json"
FP32_ON_GPU = {contract.VAE_DECODER.name}
GRAPHED = {contract.UNET.name}
DEFAULT_GRAPH_BATCHES = "1,2,4,6,8,12,16,24,32,48,64"
"""UNet rows per step (twice the images with guidance); a batch pads up to the next size."""


def write_torch_component(
    spec, model_dir: Path, serving: ServingOptions, module, wrapper_kwargs: dict,
    graph_batches: str = DEFAULT_GRAPH_BATCHES,
) -> None:
    """``spec`` is the component's ``export.specs.ExportSpec``: its wrapper is what the model serves."""
    import torch

    model = spec.contract
    if module is None:
        raise ValueError(f"the torch-cuda target needs the {model.name} module")
    weights = model_dir / "1" / "weights"
    module.save_pretrained(weights, safe_serialization=True)
    cls = type(module)
    manifest = {
        "model": model.name,
        "spec": spec.key,
        "module_class": f"{cls.__module__}.{cls.__name__}",
        "wrapper_kwargs": wrapper_kwargs,
        "fp16_on_gpu": model.name not in FP32_ON_GPU,
    }
    (model_dir / "1" / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    gpu = torch.cuda.is_available()  # the export runs on the host that will serve
    parameters = {k: v for k, v in serving.parameters.items() if k != "intra_op_threads"}
    if model.name in GRAPHED and graph_batches:
        parameters[GRAPH_BATCHES_PARAMETER] = ",".join(map(str, parse_batches(graph_batches)))
    config = build_config(model, ServingOptions(serving.instance_count, serving.max_queue_delay_us, parameters))
    if gpu:
        config.instance_group[0].kind = config.instance_group[0].KIND_GPU
    write_config(config, model_dir)
    (model_dir / "1" / "model.py").write_text(
        f'"""Triton python-backend entry point for `{model.name}` (torch target)."""\n\n'
        "from ppo_server.backends.torch_model import TritonPythonModel  # noqa: F401\n"
    )
