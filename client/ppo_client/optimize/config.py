"""The configuration of one optimization run: every default lives here, and the CLI reads them."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from ppo_client import contract
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest, check_guidance, check_steps

MAX_ITERATIONS = 100
MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 1000
MAX_SCREEN = 8


class Optimizer(str, enum.Enum):
    """Where the prompts come from: the LLM (the paper), or a baseline with the same image budget."""

    LLM = "llm"
    RANDOM = "random"
    GA = "ga"

    def __str__(self) -> str:
        return self.value


class Context(str, enum.Enum):
    """What the LLM sees of the run so far (the paper's context sets): nothing but the current
    prompts, the sorted history of scores and prompts, plus text feedback, plus the images."""

    NONE = "none"
    SCORES_PROMPTS = "s+p"
    FEEDBACK = "s+p+f"
    IMAGES = "s+p+f+I"

    def __str__(self) -> str:
        return self.value

    @property
    def feedback(self) -> bool:
        return self in (Context.FEEDBACK, Context.IMAGES)

    @property
    def images(self) -> bool:
        return self is Context.IMAGES


class SubjectAnchor(str, enum.Enum):
    """``on``: the schema makes each LLM prompt start with the user's subject (the text before its
    first comma) followed by comma-separated phrases; ``off``: free rewrites; ``auto``: on for the
    embedded 135M model, whose free rewrites mostly stray from the subject, off for other endpoints."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"

    def __str__(self) -> str:
        return self.value


def _choice(kind: type[enum.Enum], name: str, value) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        raise InvalidRequestError(name, f"must be one of {', '.join(m.value for m in kind)}, got {value!r}") from None


@dataclass(frozen=True)
class RunConfig:
    user: str = ""
    prompt: str = ""
    iterations: int = 10
    n_prompts: int = 4
    seeds: int = 2
    context: Context = Context.FEEDBACK
    optimizer: Optimizer = Optimizer.LLM
    steps: int = GenerationRequest.steps
    guidance_scale: float = GenerationRequest.guidance_scale
    seed: int = 0
    top_k: int = 20
    subject_guard: float = 0.5
    """Reject rewrites whose CLIP text similarity to the user's prompt is below this (0: off)."""
    high_rating_quantile: float = 0.75
    """The user's 'high-rated' images (for max sim) are those rated at or above this quantile."""
    structured_output: bool = True
    """Ask the LLM for replies constrained to a JSON schema, in the dialect its endpoint honours."""
    screen: int = 0
    """K: ask for K x N candidates and render the N whose calibrated text-embedding prediction is
    best (``screen.py``); 0 renders what is proposed, as the paper does."""
    subject_anchor: SubjectAnchor = SubjectAnchor.AUTO

    def __post_init__(self) -> None:
        # values read back from JSON or given as plain strings become the enums
        for name, kind in (("context", Context), ("optimizer", Optimizer), ("subject_anchor", SubjectAnchor)):
            object.__setattr__(self, name, _choice(kind, name, getattr(self, name)))

    def checked(self) -> RunConfig:
        if not self.prompt.strip():
            raise InvalidRequestError("prompt", "is empty")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequestError("prompt", f"has {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        for name, value, low, high in (
            ("iterations", self.iterations, 1, MAX_ITERATIONS),
            ("n_prompts", self.n_prompts, 1, MAX_PROMPTS),
            ("seeds", self.seeds, 1, contract.MAX_PROMPTS_PER_REQUEST),
            ("screen", self.screen, 0, MAX_SCREEN),
        ):
            if not low <= value <= high:
                raise InvalidRequestError(name, f"must be between {low} and {high}, got {value}")
        if not 0 <= self.subject_guard < 1:
            raise InvalidRequestError("subject_guard", "must be in [0, 1)")
        check_steps(self.steps, "steps")
        check_guidance(self.guidance_scale, "guidance_scale")
        return self

    @property
    def seed_values(self) -> list[int]:
        return [self.seed * 1000 + j for j in range(self.seeds)]

    def to_dict(self) -> dict:
        return {f.name: (getattr(self, f.name).value if isinstance(getattr(self, f.name), enum.Enum) else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Raises ``TypeError`` on an unknown field, ``InvalidRequestError`` on an unknown choice."""
        return cls(**data)
