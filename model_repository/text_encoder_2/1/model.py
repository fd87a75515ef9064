"""Triton python-backend entry point for `text_encoder_2`; the code lives in `ppo_server.backends.onnx_model`."""

from ppo_server.backends.onnx_model import TritonPythonModel  # noqa: F401
