"""A text-to-image request and the checks on its fields, shared by the SDK and the server.

The SDK checks a request before sending it; the ``txt2img`` model checks every batch row again on
arrival (other clients exist) with the same functions, naming the tensor instead of the argument.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ppo_client import checks, contract
from ppo_client.contract import SizeLimits
from ppo_client.errors import InvalidRequestError

DEFAULT_LIMITS = SizeLimits()
"""The contract's own side limits, for checks made without a served pipeline's."""


def check_steps(value: int, field: str = "steps") -> int:
    return checks.integer(value, field, contract.MIN_STEPS, contract.MAX_STEPS)


def check_guidance(value: float, field: str = "guidance_scale") -> float:
    return checks.number(value, field, 0.0, contract.MAX_GUIDANCE_SCALE)


def check_side(value: int, field: str, limits: SizeLimits = DEFAULT_LIMITS) -> int:
    value = checks.integer(value, field, limits.min_side, limits.max_side)
    if value % limits.multiple:
        raise InvalidRequestError(field, f"must be a multiple of {limits.multiple}, got {value}")
    return value


def check_seed(value: int, field: str = "seed") -> int:
    return checks.integer(value, field, *contract.SEED_RANGE)


def check_scheduler(value: str, field: str = "scheduler", offered: tuple[str, ...] = contract.SCHEDULERS) -> str:
    if value and value not in offered:
        known = "" if value in contract.SCHEDULERS else "unknown "
        raise InvalidRequestError(
            field, f"{known}scheduler {value!r} is not offered by this model; choose one of {', '.join(offered)} "
            "(or leave it empty for the model's own)"
        )
    return value


def check_guidance_rescale(value: float, field: str = "guidance_rescale") -> float:
    return checks.number(value, field, 0.0, 1.0)


def check_text(value: str | bytes, field: str = "prompt") -> str:
    """Text of a prompt-like field: at most ``contract.MAX_TEXT_BYTES`` of UTF-8."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        raise InvalidRequestError(field, f"must be text, got {type(value).__name__}")
    if len(data) > contract.MAX_TEXT_BYTES:
        raise InvalidRequestError(
            field, f"is {len(data)} bytes long; the limit is {contract.MAX_TEXT_BYTES} (the text encoder reads only "
            "its first 77 tokens, a few hundred characters)"
        )
    if isinstance(value, str):
        return value
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(field, f"is not valid UTF-8 text ({exc})") from None


def check_prompt_count(count: int, field: str = "prompt") -> int:
    if not 1 <= count <= contract.MAX_PROMPTS_PER_REQUEST:
        raise InvalidRequestError(
            field,
            f"{count} prompts in one request; send between 1 and "
            f"{contract.MAX_PROMPTS_PER_REQUEST} (split larger jobs into several requests)",
        )
    return count


@dataclass(frozen=True)
class GenerationRequest:
    """What one image needs. ``height=0``/``width=0`` mean the model's native side (the SDK fills
    them in); ``scheduler=""`` keeps the scheduler the model was exported with."""

    prompt: str
    seed: int = 0
    steps: int = 20
    guidance_scale: float = 7.5
    height: int = 0
    width: int = 0
    negative_prompt: str = ""
    scheduler: str = ""
    guidance_rescale: float = 0.0
    """Rescales guided noise towards the text-conditioned one's spread (SD 2.x v-prediction models
    with zero-terminal-SNR schedules want about 0.7); 0 is off, as in diffusers."""

    def sized(self, limits: SizeLimits) -> GenerationRequest:
        """Fill a height or width left at 0 with the model's native side."""
        return dataclasses.replace(self, height=self.height or limits.native_side, width=self.width or limits.native_side)

    def checked(self, limits: SizeLimits = DEFAULT_LIMITS, schedulers: tuple[str, ...] = contract.SCHEDULERS) -> GenerationRequest:
        """Return ``self`` if every field is valid, else raise ``InvalidRequestError``."""
        check_text(self.prompt, "prompt")
        check_text(self.negative_prompt, "negative_prompt")
        check_seed(self.seed)
        check_steps(self.steps)
        check_guidance(self.guidance_scale)
        check_side(self.height, "height", limits)
        check_side(self.width, "width", limits)
        check_scheduler(self.scheduler, "scheduler", schedulers)
        check_guidance_rescale(self.guidance_rescale)
        return self
