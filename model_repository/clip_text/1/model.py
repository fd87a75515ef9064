"""Triton python-backend entry point for `clip_text`; the code lives in `ppo_server.backends.clip_text`."""

from ppo_server.backends.clip_text import TritonPythonModel  # noqa: F401
