"""One python-backend model for every exported component: onnxruntime on the CPU.

Triton hands ``execute`` all requests the dynamic batcher merged; requests whose shapes agree
(beyond the batch dimension) are concatenated and run as one onnxruntime call.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_server.backends.triton_logging import install_triton_log_handler

logger = logging.getLogger(__name__)


def _session(model_path: Path, intra_op_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Several stub processes share the cores: spinning worker threads would steal them from each other.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # An explicit count also stops onnxruntime from pinning its threads to cores of its own choice,
    # which would escape the CPU set the server was started on (see ServerConfig.cpus).
    options.intra_op_num_threads = intra_op_threads if intra_op_threads > 0 else len(os.sched_getaffinity(0))
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.name = config["name"]
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.session = _session(folder / "model.onnx", int(params.get("intra_op_threads", "0")))
        logger.info("%s: onnxruntime session ready (%s)", self.name, folder / "model.onnx")

    def execute(self, requests):
        arrays = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names]
            for r in requests
        ]
        responses = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, inputs in enumerate(arrays):
            groups.setdefault(tuple(a.shape[1:] for a in inputs), []).append(i)
        for members in groups.values():
            try:
                feed = {
                    name: np.concatenate([arrays[i][k] for i in members])
                    for k, name in enumerate(self.input_names)
                }
                outputs = self.session.run(self.output_names, feed)
            except Exception as exc:  # onnxruntime errors become per-request errors, not a crash
                error = pb_utils.TritonError(f"{self.name}: {exc}")
                for i in members:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                continue
            offset = 0
            for i in members:
                rows = arrays[i][0].shape[0]
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(out[offset : offset + rows]))
                    for name, out in zip(self.output_names, outputs)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                offset += rows
        return responses
