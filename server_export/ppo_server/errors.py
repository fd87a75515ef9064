"""Errors raised by the export and serving tools (server side; the SDK's live in ``ppo_client.errors``).

    PPOError (ppo_client.errors)
    ├── ExportError              a pipeline could not be loaded, exported or written as a repository
    ├── EmbeddedServerError      the embedded Triton server could not start or stopped unexpectedly
    └── ComponentError           inside the server: a BLS call to a component model failed
"""

from __future__ import annotations

from ppo_client.errors import PPOError


class ExportError(PPOError):
    pass


class EmbeddedServerError(PPOError):
    pass


class ComponentError(PPOError):
    pass

