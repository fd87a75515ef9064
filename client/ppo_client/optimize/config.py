"""The configuration of one optimization run: every default lives here, and the CLI reads them."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from ppo_client import checks, contract, text
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest, check_guidance, check_scheduler, check_steps
from ppo_client.optimize.cost import unet_evaluations

MAX_ITERATIONS = 100
MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 1000
MAX_SCREEN = 64
"""K x N candidates a screened iteration asks for: keyword proposers make hundreds at no cost (the
LLM's are slow, which is the user's choice), and each costs one text embedding."""
KEYWORD_SCREEN = 32
"""The default K of ``ga`` and ``random``: true taste per UNet evaluation rose with K up to 32 and
held at 64 (docs/optimization.md#defaults-and-why)."""
LLM_SCREEN = 4
"""The default K of ``llm`` and ``mix``, the K they were measured at."""
MAX_PREVIEW = 4
MAX_EXPLORATION = 5.0
MAX_SEED = 2**32 - 1
"""A run's images use seeds ``seed * 1000 + j`` (and the app's comparisons a fixed offset above
them), so the run seed is bounded well inside the server's int64 seed range."""


class Optimizer(str, enum.Enum):
    """Where the prompts come from: the LLM (the paper), a baseline with the same budget, or ``mix``:
    one candidate pool filled by the LLM, LLM-driven crossover and mutation, the keyword GA and
    random keywords, each proposer's share set by how its past prompts scored (``mix.py``)."""

    LLM = "llm"
    RANDOM = "random"
    GA = "ga"
    MIX = "mix"

    def __str__(self) -> str:
        return self.value

    @property
    def uses_llm(self) -> bool:
        return self in (Optimizer.LLM, Optimizer.MIX)

    @property
    def default_screen(self) -> int:
        """K where none is given: keyword proposers make candidates for free, so the screen chooses
        from many; every candidate of the LLM's is a generation, so it chooses from 4 x N."""
        return LLM_SCREEN if self.uses_llm else KEYWORD_SCREEN


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


BEFORE_THE_FIELD = {"optimizer": "llm", "context": "s+p+f", "screen": 0, "exploration": 0.0}
"""What a run folder whose config lacks one of these fields was run with: the defaults before the
field was added or its default moved."""


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
    context: Context = Context.SCORES_PROMPTS
    optimizer: Optimizer = Optimizer.GA
    """The default arm, the keyword GA with the greedy screen choosing from 32 x N candidates
    (``screen`` 32, ``exploration`` 0), gained the most true taste per UNet evaluation of any arm
    measured with the embedded LLM, with no LLM to wait for (docs/optimization.md#defaults-and-why).
    With an LLM endpoint of one's own, ``mix``."""
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
    screen: int = KEYWORD_SCREEN
    """K: ask for K x N candidates and render the N whose calibrated text-embedding prediction is
    best (``screen.py``); 0 renders what is proposed, as the paper does. The CLI and the app take
    ``Optimizer.default_screen`` where K is not given."""
    subject_anchor: SubjectAnchor = SubjectAnchor.AUTO
    exploration: float = 0.0
    """The screen's UCB weight: it renders the candidates with the best ``mean + exploration * sd``
    of the predicted score, a batch at a time, each pick lowering the uncertainty of (and penalising)
    candidates like it; 0, the greedy best-predicted choice, is the default arm's (1 is the mix's
    measured setting)."""
    preview_steps: int = 0
    """With a screen: preview ``preview x N`` of the screened candidates at this many denoising steps
    (same pipeline, same seeds), score them with the user's head and render the N best in full; 0: off."""
    preview: int = 2
    """How many candidates per rendered prompt are previewed (with ``preview_steps``)."""
    preview_scheduler: str = "euler_a"
    """The scheduler of the previews (a name from ``contract.SCHEDULERS``; empty: the pipeline's own,
    as the full renders). Euler ancestral at 3 steps ranked the demo pipeline's full PNDM renders best
    per UNet evaluation; PNDM's own few-step previews ranked them worst
    (``benchmarks/results/optimize/preview_fidelity.md``)."""
    unet_budget: int = 0
    """Stop before an iteration that would take the run's UNet evaluations (previews and full
    renders) over this; 0: ``iterations`` alone decides."""

    def __post_init__(self) -> None:
        # values read back from JSON or given as plain strings become the enums
        for name, kind in (("context", Context), ("optimizer", Optimizer), ("subject_anchor", SubjectAnchor)):
            object.__setattr__(self, name, _choice(kind, name, getattr(self, name)))

    def checked(self) -> RunConfig:
        """The config if every field is in range; the first that is not is an ``InvalidRequestError``
        naming it. The CLI, the app and a resumed run folder all pass through here."""
        for name in ("user", "prompt"):
            if not isinstance(getattr(self, name), str):
                raise InvalidRequestError(name, f"must be text, got {type(getattr(self, name)).__name__}")
        if not self.prompt.strip():
            raise InvalidRequestError("prompt", "is empty")
        if text.hidden(self.prompt):
            raise InvalidRequestError("prompt", "contains control or format characters (escape codes, NUL, bidi overrides ...)")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequestError("prompt", f"has {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        iterations = checks.integer(self.iterations, "iterations", 1, MAX_ITERATIONS)
        n_prompts = checks.integer(self.n_prompts, "n_prompts", 1, MAX_PROMPTS)
        seeds = checks.integer(self.seeds, "seeds", 1, contract.MAX_PROMPTS_PER_REQUEST)
        screen = checks.integer(self.screen, "screen", 0, MAX_SCREEN)
        seed = checks.integer(self.seed, "seed", 0, MAX_SEED)
        top_k = checks.integer(self.top_k, "top_k", 1, 10_000)
        preview_steps = checks.integer(self.preview_steps, "preview_steps", 0, contract.MAX_STEPS)
        preview = checks.integer(self.preview, "preview", 1, MAX_PREVIEW)
        unet_budget = checks.integer(self.unet_budget, "unet_budget", 0, 10**9)
        exploration = checks.number(self.exploration, "exploration", 0.0, MAX_EXPLORATION)
        if self.optimizer is Optimizer.MIX and screen < 2:
            raise InvalidRequestError("screen", "the mix optimizer renders the best of a pool of candidates: give a screen of 2 or more")
        if preview_steps and screen < 2:
            raise InvalidRequestError("preview_steps", "previews choose among screened candidates: give a screen of 2 or more")
        subject_guard = checks.number(self.subject_guard, "subject_guard", 0.0, 0.99)
        high_rating_quantile = checks.number(self.high_rating_quantile, "high_rating_quantile", 0.0, 1.0)
        steps = check_steps(self.steps, "steps")
        guidance_scale = check_guidance(self.guidance_scale, "guidance_scale")
        preview_scheduler = check_scheduler(self.preview_scheduler, "preview_scheduler")
        if preview_steps >= steps:
            raise InvalidRequestError("preview_steps", f"must be fewer than the full render's {steps} steps")
        if not isinstance(self.structured_output, bool):
            raise InvalidRequestError("structured_output", "must be true or false")
        checked = dataclasses.replace(
            self, iterations=iterations, n_prompts=n_prompts, seeds=seeds, screen=screen, seed=seed, top_k=top_k,
            preview_steps=preview_steps, preview=preview, unet_budget=unet_budget, exploration=exploration,
            subject_guard=subject_guard, high_rating_quantile=high_rating_quantile, steps=steps,
            guidance_scale=guidance_scale, preview_scheduler=preview_scheduler,
        )
        if checked.unet_budget and checked.unet_budget < checked.planned_unet(0):
            raise InvalidRequestError("unet_budget", f"{checked.unet_budget} UNet evaluations do not pay for iteration 0, "
                                                     f"which needs {checked.planned_unet(0)}")
        return checked

    def planned_unet(self, iteration: int, scheduler: str = "") -> int:
        """The most UNet evaluations iteration ``iteration`` can spend (``cost.unet_evaluations``): its
        full renders (the user's own prompt too in iteration 0) and, with previews, ``preview x N``
        previews. ``scheduler``: the full renders' (empty: counted as the dearest)."""
        prompts = self.n_prompts + (1 if iteration == 0 else 0)
        full = unet_evaluations(self.steps, prompts * self.seeds, self.guidance_scale, scheduler)
        previews = 0
        if self.preview_steps and self.screen > 1:
            previews = unet_evaluations(self.preview_steps, self.preview * self.n_prompts * self.seeds, self.guidance_scale,
                                        self.preview_scheduler or scheduler)
        return full + previews

    @property
    def seed_values(self) -> list[int]:
        return [self.seed * 1000 + j for j in range(self.seeds)]

    def to_dict(self) -> dict:
        return {f.name: (getattr(self, f.name).value if isinstance(getattr(self, f.name), enum.Enum) else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Raises ``TypeError`` on an unknown field, ``InvalidRequestError`` on an unknown choice. A run
        written before a field existed resumes with what it was run with, not today's default."""
        return cls(**{**BEFORE_THE_FIELD, **data})
