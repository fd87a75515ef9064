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
    if name in ("Txt2ImgClient", "AsyncTxt2ImgClient"):
        # deferred: the clients pull in tritonclient and gRPC; `import ppo_client` loads them only when asked
        from ppo_client import txt2img

        return getattr(txt2img, name)
    if name in ("ScoringClient", "AsyncScoringClient"):
        # deferred: as above
        from ppo_client import scoring

        return getattr(scoring, name)
    raise AttributeError(name)
