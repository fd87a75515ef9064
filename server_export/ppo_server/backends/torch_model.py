"""The ``torch-cuda`` target's component model: the saved torch module behind the same wrapper the
ONNX export traces, on this instance's GPU in fp16 (or on the CPU in fp32 where there is none).

Requests whose shapes agree are concatenated and run as one batch, as in ``onnx_model``.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_server.backends.triton_logging import install_triton_log_handler

logger = logging.getLogger(__name__)


def _wrapper(model: str):
    from ppo_server.export import specs

    return {s.contract.name: s.wrap for s in (*specs.SPECS, specs.IMAGE_ENCODER)}[model]


class TritonPythonModel:
    def initialize(self, args):
        import torch

        install_triton_log_handler()
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        manifest = json.loads((folder / "torch_manifest.json").read_text())
        self.name = config["name"]
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        module_path, class_name = manifest["module_class"].rsplit(".", 1)
        module = getattr(importlib.import_module(module_path), class_name).from_pretrained(folder / "weights")
        if torch.cuda.is_available():
            self.device = torch.device(f"cuda:{args.get('model_instance_device_id', '0')}")
            self.dtype = torch.float16 if manifest["fp16_on_gpu"] else torch.float32
        else:
            self.device, self.dtype = torch.device("cpu"), torch.float32
        self.module = _wrapper(manifest["model"])(module.to(self.device, self.dtype), **manifest["wrapper_kwargs"]).eval()
        self.module.to(self.device)
        logger.info("%s: torch module on %s (%s)", self.name, self.device, self.dtype)

    def _tensor(self, array: np.ndarray):
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    def execute(self, requests):
        import torch

        arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names] for r in requests]
        responses = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, inputs in enumerate(arrays):
            groups.setdefault(tuple(a.shape[1:] for a in inputs), []).append(i)
        for members in groups.values():
            try:
                feed = [self._tensor(np.concatenate([arrays[i][k] for i in members])) for k in range(len(self.input_names))]
                with torch.inference_mode():
                    output = self.module(*feed).float().cpu().numpy()
            except Exception as exc:  # a failed batch fails its own requests; the model keeps serving
                error = pb_utils.TritonError(f"{self.name}: {exc}")
                for i in members:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                continue
            offset = 0
            for i in members:
                rows = arrays[i][0].shape[0]
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(self.output_names[0], np.ascontiguousarray(output[offset : offset + rows]))]
                )
                offset += rows
        return responses
