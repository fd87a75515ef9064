"""One python-backend model for every exported component: onnxruntime on the CPU, requests whose
shapes agree run as one onnxruntime call (``component.run_grouped``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ppo_client.contract import ComponentParameters
from ppo_server.backends.component import ModelArgs, run_grouped
from ppo_server.backends.triton_logging import install_triton_log_handler

logger = logging.getLogger(__name__)


def onnx_session(model_path: Path, parameters: ComponentParameters):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Several stub processes share the cores: spinning worker threads take them from the others, so
    # only the models whose many short operators gain from it spin (ExportOptions.spin_models).
    spin = "1" if parameters.spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    intra_op_threads = parameters.intra_op_threads
    # An explicit count also stops onnxruntime from pinning its threads to cores of its own choice,
    # which would escape the CPU set the server was started on (see ServerConfig.cpus).
    options.intra_op_num_threads = intra_op_threads if intra_op_threads > 0 else len(os.sched_getaffinity(0))
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        self.model = ModelArgs.parse(args)
        path = self.model.folder / "model.onnx"
        parameters = ComponentParameters.from_parameters(self.model.params)
        self.session = onnx_session(path, parameters)
        logger.info("%s: onnxruntime session ready (%s, threads spin: %s)", self.model.name, path, parameters.spin)

    def _run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.model.output_names, dict(zip(self.model.input_names, inputs, strict=True)))

    def execute(self, requests):
        return run_grouped(requests, self.model, self._run)
