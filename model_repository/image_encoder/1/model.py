"""Triton python-backend entry point for `image_encoder`; the code lives in `ppo_server.backends.onnx_model`."""

from ppo_server.backends.onnx_model import TritonPythonModel  # noqa: F401
