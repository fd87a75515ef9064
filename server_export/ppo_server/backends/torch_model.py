"""The ``torch-cuda`` target's component model: the saved torch module behind the same wrapper the
ONNX export traces (``ppo_server.wrappers``), on this instance's GPU in fp16 (or on the CPU in fp32
where there is none).

Requests whose shapes agree run as one batch (``component.run_grouped``), as in ``onnx_model``.
Where the config lists ``cuda_graph_batches`` and a GPU is present, batches run as CUDA graph
replays (``backends.cuda_graphs``).
"""

from __future__ import annotations

import importlib
import logging

import numpy as np

from ppo_client.contract import CudaGraphParameters
from ppo_client.manifests import TorchManifest
from ppo_server import wrappers
from ppo_server.backends.component import ModelArgs, run_grouped
from ppo_server.backends.cuda_graphs import GraphRunner
from ppo_server.backends.triton_logging import install_triton_log_handler

logger = logging.getLogger(__name__)

WRAPPERS_BY_SPEC = {
    "text_encoder": wrappers.TextEncoder,
    "text_encoder_xl": wrappers.PenultimateTextEncoder,
    "text_encoder_2": wrappers.ProjectionTextEncoder,
    "unet": wrappers.UNet,
    "unet_xl": wrappers.UNetXL,
    "vae_decoder": wrappers.VaeDecoder,
    "image_encoder": wrappers.ImageEncoder,
}
"""Manifests written before they named their wrapper name the export spec (older ones the model)."""


def _wrapper(manifest: TorchManifest):
    if manifest.wrapper is not None:
        return getattr(wrappers, manifest.wrapper)
    return WRAPPERS_BY_SPEC[manifest.spec if manifest.spec is not None else manifest.model]


class TritonPythonModel:
    def initialize(self, args):
        import torch

        install_triton_log_handler()
        self.model = ModelArgs.parse(args)
        manifest = TorchManifest.read(self.model.folder)
        module_path, class_name = manifest.module_class.rsplit(".", 1)
        module = getattr(importlib.import_module(module_path), class_name).from_pretrained(self.model.folder / "weights")
        if torch.cuda.is_available():
            self.device = torch.device(f"cuda:{self.model.device_id}")
            torch.cuda.set_device(self.device)
            self.dtype = torch.float16 if manifest.fp16_on_gpu else torch.float32
        else:
            self.device, self.dtype = torch.device("cpu"), torch.float32
        wrapped = _wrapper(manifest)(module.to(self.device, self.dtype), **manifest.wrapper_kwargs)
        self.module = wrapped.to(self.device).eval()
        batches = CudaGraphParameters.from_parameters(self.model.params).cuda_graph_batches
        self.runner = GraphRunner(self.module, batches) if batches and self.device.type == "cuda" else self.module
        logger.info("%s: torch module on %s (%s), CUDA graphs for batches %s", self.model.name, self.device,
                    self.dtype, batches if self.runner is not self.module else "off")

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        tensors = []
        for array in inputs:
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
            tensors.append(tensor.to(self.dtype) if tensor.is_floating_point() else tensor)
        with torch.inference_mode():
            out = self.runner(*tensors)
        return [o.float().cpu().numpy() for o in (out if isinstance(out, tuple) else (out,))]

    def execute(self, requests):
        return run_grouped(requests, self.model, self._run)
