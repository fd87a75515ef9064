"""Prompts a person would keep: no contradictions, a length budget, keywords that come and go.

Keyword edits used to only append, so a run's prompts piled up "warm colors ... cool colors" and
"blurry ... sharp focus". Here each contradiction group (``vocabulary.CONFLICTS``) allows one side
per prompt, prompts stay within ``MAX_WORDS`` words, and a keyword edit adds, removes or replaces.

A prompt is read as its base (the text before the first comma, the subject) and its keywords (the
comma-separated segments after it). ``PromptRules.tidy`` repairs what can be repaired without
rewriting words: a conflicting or surplus *keyword segment* is dropped, the latest wins; a prompt
whose conflict sits inside its base is refused (``None``). The person's own prompt is
never changed, and what it holds is allowed (``PromptRules.for_prompt``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ppo_client.optimize.vocabulary import CONFLICTS, MODIFIERS

MAX_WORDS = 32
"""Word budget of a rendered prompt: about 45 CLIP tokens, well inside the 77-token window."""
SLACK_WORDS = 12
"""A person's long prompt keeps room for this many words of rewrites beyond its own."""
EDITS = ("add", "remove", "replace")


def words(text: str) -> int:
    return len(text.split())


def split(prompt: str) -> tuple[str, list[str]]:
    """(base, keywords): the first comma-separated segment and the rest, stripped, empty ones dropped."""
    parts = [p.strip() for p in prompt.split(",")]
    return parts[0], [p for p in parts[1:] if p]


def join(base: str, keywords: Sequence[str]) -> str:
    return ", ".join([base, *keywords]) if keywords else base


@lru_cache(maxsize=None)
def _pattern(phrase: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])", re.IGNORECASE)


def sides_in(text: str) -> dict[int, set[int]]:
    """Which sides of which contradiction groups the text mentions: {group: {side, ...}}."""
    found: dict[int, set[int]] = {}
    for g, group in enumerate(CONFLICTS):
        for s, side in enumerate(group):
            if any(_pattern(phrase).search(text) for phrase in side):
                found.setdefault(g, set()).add(s)
    return found


def contradictions(text: str) -> list[tuple[int, str, str]]:
    """(group, phrase, phrase) for phrases of two sides of one group that both occur in the text."""
    pairs = []
    for g, sides in sides_in(text).items():
        if len(sides) > 1:
            hits = [next(p for p in CONFLICTS[g][s] if _pattern(p).search(text)) for s in sorted(sides)]
            pairs += [(g, hits[0], other) for other in hits[1:]]
    return pairs


@dataclass(frozen=True)
class PromptRules:
    """What a run's prompts must respect, given the person's own prompt: its words and its
    contradictions (if any) are theirs, so the budget leaves room for them and what they hold is
    not counted against a rewrite."""

    max_words: int = MAX_WORDS
    given: tuple[tuple[int, tuple[int, ...]], ...] = ()
    """(group, sides) the person's prompt mentions."""
    subject: str = ""
    """The person's prompt."""

    @classmethod
    def for_prompt(cls, initial: str) -> PromptRules:
        given = tuple((g, tuple(sorted(sides))) for g, sides in sorted(sides_in(initial).items()))
        return cls(max(MAX_WORDS, words(initial) + SLACK_WORDS), given, initial)

    def allowed(self, group: int, sides: set[int]) -> bool:
        return len(sides) < 2 or sides <= set(dict(self.given).get(group, ()))

    def problems(self, prompt: str) -> list[str]:
        """What is wrong with a prompt, in words (empty: nothing)."""
        found = [f"holds both '{a}' and '{b}'" for g, a, b in contradictions(prompt) if not self.allowed(g, sides_in(prompt)[g])]
        if words(prompt) > self.max_words:
            found.append(f"has {words(prompt)} words (budget {self.max_words})")
        return found

    def tidy(self, prompt: str) -> str | None:
        """The prompt without contradictions and within the budget, or None where that needs a rewrite.

        The base's phrases come first; keyword segments are then read from the last, and one whose
        side contradicts what is already taken is dropped (the latest keyword wins); then the
        earliest keywords go until the budget holds."""
        base, keywords = split(prompt)
        taken = {g: set(sides) for g, sides in sides_in(base).items()}
        kept: list[str] = []
        for keyword in reversed(keywords):
            mine = sides_in(keyword)
            if any(not self.allowed(g, taken.get(g, set()) | sides) for g, sides in mine.items()):
                continue
            for g, sides in mine.items():
                taken.setdefault(g, set()).update(sides)
            kept.append(keyword)
        kept.reverse()
        while kept and words(join(base, kept)) > self.max_words:
            kept.pop(0)
        result = join(base, kept)
        return None if self.problems(result) else result

    def edit(self, prompt: str, rng: np.random.Generator, count: int | None = None, *, ops: Sequence[str] = EDITS,
             vocabulary: Sequence[str] = MODIFIERS) -> str | None:
        """``count`` keyword edits (default 1-3), each one of ``ops``: add, remove or replace a
        keyword; a prompt without keywords can only gain one. The result goes through ``tidy`` (an
        added keyword wins over the side it contradicts); the base is never edited."""
        base, keywords = split(prompt)
        for _ in range(count or int(rng.integers(1, 4))):
            op = ops[int(rng.integers(len(ops)))] if keywords else "add"
            if op in ("remove", "replace"):
                keywords.pop(int(rng.integers(len(keywords))))
            if op in ("add", "replace"):
                present = {k.lower() for k in keywords}
                choices = [w for w in vocabulary if w not in present]
                if choices:
                    keywords.append(choices[int(rng.integers(len(choices)))])
        return self.tidy(join(base, keywords))
