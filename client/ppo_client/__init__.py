"""Client SDK for personalized text-to-image generation served by Triton. Imports without torch."""

from ppo_client.errors import (
    InferenceError,
    InvalidRequestError,
    ModelNotFoundError,
    PPOError,
    ServerError,
    ServerUnavailableError,
)
from ppo_client.generation import GenerationRequest

__all__ = [
    "AsyncScoringClient",
    "AsyncTxt2ImgClient",
    "GenerationRequest",
    "InferenceError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "PPOError",
    "ServerError",
    "ScoringClient",
    "ServerUnavailableError",
    "Txt2ImgClient",
]


def __getattr__(name: str):
    # The clients pull in tritonclient; load it only when asked for.
    if name in ("Txt2ImgClient", "AsyncTxt2ImgClient"):
        from ppo_client import txt2img

        return getattr(txt2img, name)
    if name in ("ScoringClient", "AsyncScoringClient"):
        from ppo_client import scoring

        return getattr(scoring, name)
    raise AttributeError(name)
