"""Errors raised by the export and serving tools (server side; the SDK's live in ``ppo_client.errors``).

    PPOError (ppo_client.errors)
    ├── ExportError              a pipeline could not be loaded, exported or written as a repository
    │   └── CheckpointError         the checkpoint given is missing, damaged or incomplete (names the component)
    ├── EmbeddedServerError      the embedded Triton server could not start or stopped unexpectedly
    ├── BalancerError            nginx in front of Triton replicas is missing, refused its config or stopped
    └── ComponentError           inside the server: a BLS call to a component model failed
"""

from __future__ import annotations

from ppo_client.errors import PPOError


class ExportError(PPOError):
    pass


class CheckpointError(ExportError):
    """A ``--model`` folder (or hub id) cannot be used as it is: the message names the folder, the
    component and what to do. Nothing was written."""

    exit_code = 2


class EmbeddedServerError(PPOError):
    pass


class BalancerError(PPOError):
    pass


class ComponentError(PPOError):
    pass
