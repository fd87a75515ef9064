"""Triton python-backend entry point for `txt2img`; the code lives in `ppo_server.backends.txt2img`."""

from ppo_server.backends.txt2img import TritonPythonModel  # noqa: F401
