"""The demo world's errors, under the project's one base (``ppo_client.errors.PPOError``)::

    PPOError
    ├── PersonaError     a virtual user's spec is malformed (the message names the field)
    ├── DemoStepError    a step of the walkthrough failed (the step's own message says why)
    └── DemoModelsError  the trained demo models are missing (the message says how to rebuild them)
"""

from __future__ import annotations

from ppo_client.errors import PPOError


class PersonaError(PPOError, ValueError):
    """A persona spec (``ppo_demo.personas``) has an unknown, missing or mistyped field."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DemoStepError(PPOError):
    """A walkthrough step (``ppo-demo run``) failed."""


class DemoModelsError(PPOError):
    """The demo world's trained pipeline or CLIP is not where ``$PPO_DEMO_MODELS`` (or the package) says."""
