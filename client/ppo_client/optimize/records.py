"""What one iteration leaves behind: a line of ``iterations.jsonl``, as typed values.

The file stays plain JSON (one object per line, the field names below), so other tools read it as
they always did; in the code a record is an ``IterationRecord`` and each rendered prompt a
``RenderedPrompt``. Every text in a record that came from the LLM (prompts, feedback, replies) is
clean text (``ppo_client.text.clean``): no escape sequences, control or bidi characters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class RenderedPrompt:
    """One prompt rendered with the run's seeds, and what the user's learned taste made of it."""

    prompt: str
    scores: list[float]
    """The learned score of each seed's image."""
    score: float
    """Their mean: the prompt's score."""
    images: list[str]
    """Image files, relative to the run folder, one per seed."""
    best: int
    """Index of the best-scored image."""
    embeddings: list[list[float]]
    description: str = ""
    """Zero-shot tags of the best image (text-only feedback reads them)."""
    true_scores: list[float] | None = None
    """Known true taste of each image (the demo world), where the run has a judge."""
    true_score: float | None = None
    predicted: float | None = None
    """The screen's prediction of ``score``, where the prompt was screened."""
    initial: bool = False
    """The user's own prompt (iteration 0)."""
    proposer: str = ""
    """Which proposer made it (``llm``, ``evo``, ``ga``, ``random``, ``fallback``); empty for the
    user's own prompt and in runs recorded before proposers were named."""
    preview_score: float | None = None
    """Its mean learned score at the preview's few steps, where it was previewed."""

    @property
    def best_image(self) -> str:
        return self.images[self.best]

    def to_dict(self) -> dict:
        out = asdict(self)
        for optional in ("true_scores", "true_score", "predicted", "preview_score"):
            if out[optional] is None:
                del out[optional]
        if not self.initial:
            del out["initial"]
        if not self.proposer:
            del out["proposer"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RenderedPrompt:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Timings:
    propose_s: float = 0.0
    """Asking the proposer, the LLM and the screen included."""
    llm_s: float = 0.0
    """Of that, waiting for the LLM."""
    render_s: float = 0.0
    """Rendering and scoring this iteration's prompts, the images' saving and tagging included."""
    server_s: float = 0.0
    """Of that, the generate-and-score calls (all in flight together)."""
    total_s: float = 0.0


@dataclass
class IterationRecord:
    iteration: int
    seeds: list[int]
    prompts: list[RenderedPrompt]
    feedback: str = ""
    """The LLM's feedback on the previous iteration's images (the ``s+p+f`` contexts), as clean text."""
    llm_calls: list[dict] = field(default_factory=list)
    """Each LLM exchange: purpose, reply (clean text with its lines, bounded), ``reply_chars`` (the
    reply's length as sent), seconds, attempts (and the structured-output dialect, ``fits_schema``)."""
    llm_prompts: int = 0
    """Prompts the LLM gave in the shape asked for (no more prompts than asked, no hidden characters)."""
    repaired_prompts: int = 0
    """Prompts repaired out of replies that were not."""
    fallback_prompts: int = 0
    """Keyword edits filling in for prompts the LLM did not give."""
    structured: str = ""
    """The structured-output dialect of the last prompt request."""
    screen: dict = field(default_factory=dict)
    """The screen's choice (``screen.Screener.choose``) and its calibration; empty when off."""
    pool: dict = field(default_factory=dict)
    """The mix optimizer's pool: per proposer its share, candidates, rendered prompts and any error."""
    preview: dict = field(default_factory=dict)
    """The previews: steps, each previewed prompt's score, and the rank correlation of the preview
    scores with the full renders' (``calibration``); empty when off."""
    cost: dict = field(default_factory=dict)
    """``cost.Cost``: UNet evaluations of full renders and previews, images, LLM tokens."""
    timings: Timings = field(default_factory=Timings)

    @property
    def best(self) -> RenderedPrompt:
        return max(self.prompts, key=lambda p: p.score)

    @property
    def calibration(self) -> float | None:
        return self.screen.get("calibration") if self.screen else None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["prompts"] = [p.to_dict() for p in self.prompts]
        out["timings"] = asdict(self.timings)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> IterationRecord:
        """Raises ``KeyError``/``TypeError``/``ValueError`` on a line that is not a record."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["prompts"] = [RenderedPrompt.from_dict(p) for p in data["prompts"]]
        timings = data.get("timings") or {}
        values["timings"] = Timings(**{f.name: float(timings[f.name]) for f in fields(Timings) if f.name in timings})
        for name in ("screen", "pool", "preview", "cost"):
            values[name] = data.get(name) or {}
        return cls(**values)


def all_prompts(records: list[IterationRecord]) -> list[tuple[int, RenderedPrompt]]:
    """Every rendered prompt with its iteration, in order."""
    return [(r.iteration, p) for r in records for p in r.prompts]
