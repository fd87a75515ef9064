"""Triton python-backend entry point for `txt2img_score`; the code lives in `ppo_server.backends.txt2img_score`."""

from ppo_server.backends.txt2img_score import TritonPythonModel  # noqa: F401
