"""Triton python-backend entry point for `preference`; the code lives in `ppo_server.backends.preference`."""

from ppo_server.backends.preference import TritonPythonModel  # noqa: F401
