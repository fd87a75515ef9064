"""Every text the optimizer sends to an LLM, in one place.

Following OPRO: the history lists (prompt, score) pairs sorted ascending so the best comes last, and
the model is asked for new prompts different from all of them with higher scores. Replies are
requested as a JSON object ``{"prompts": [...]}``, constrained to ``prompts_schema`` where the
endpoint honours a schema; ``parsing`` also accepts lists, lines and quotes.
"""

from __future__ import annotations

import re
from typing import Sequence

SYSTEM = (
    "You write prompts for a text-to-image model. You answer only with a JSON object holding a list of prompt strings, "
    'for example {"prompts": ["a red apple on a table, soft light", "a green apple, studio photo"]}.'
)
PROMPT_PATTERN = "^[A-Za-z][A-Za-z0-9 ,'-]{9,199}$"
"""A prompt in plain words: no line breaks, colons, brackets or quotes, so no room for chatter,
numbering or a nested list (a small model fills a schema's strings with all of those)."""


PHRASE_PATTERN = "(, [A-Za-z0-9 '-]{2,40}){1,6}"
_REGEX_SPECIAL = set("\\^$.|?*+()[]{}/")


def _literal(text: str) -> str:
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


_ANCHORABLE = re.compile(r"[\w ,.'()?!&+/-]+")


def anchorable(subject: str) -> bool:
    """Whether a subject can open a pattern safely: no quotes, backslashes or control characters,
    which a sampler's grammar would have to escape inside a JSON string."""
    return bool(_ANCHORABLE.fullmatch(subject))


def prompts_schema(n: int, anchor: str | None = None) -> dict:
    """Exactly ``n`` prompts of plain words; with ``anchor``, each is the anchor followed by 1-6
    comma-separated phrases."""
    pattern = f"^{_literal(anchor)}{PHRASE_PATTERN}$" if anchor else PROMPT_PATTERN
    return {
        "type": "object",
        "properties": {"prompts": {"type": "array", "items": {"type": "string", "pattern": pattern}, "minItems": n, "maxItems": n}},
        "required": ["prompts"],
        "additionalProperties": False,
    }


def anchored(anchor: str) -> str:
    """What the request says when the schema anchors each prompt on the subject."""
    return f'Each prompt starts with "{anchor}", then adds a few short comma-separated phrases.'


def diversify(prompt: str, n: int) -> str:
    return (
        f'Rewrite this text-to-image prompt in {n} different ways: "{prompt}".\n'
        "Keep its subject, vary the style, colours, light, background and composition.\n"
        f'Answer with a JSON object {{"prompts": [...]}} holding {n} prompts.'
    )


def _history(history: Sequence[tuple[str, float]]) -> str:
    return "\n".join(f'prompt: "{p}"\nscore: {s:.2f}' for p, s in history)


def propose(
    initial: str, n: int, *, current: Sequence[str], history: Sequence[tuple[str, float]] | None,
    feedback: str | None, with_images: bool,
) -> str:
    """The optimizer's request for one iteration; what it carries is the context ablation."""
    parts = [f'We are improving text-to-image prompts for the subject "{initial}".']
    if history is None:  # context "none": only the current prompts
        parts.append("Current prompts:\n" + "\n".join(f'"{p}"' for p in current))
        parts.append(f"Write {n} new, better prompts for this subject, different from these.")
    else:
        parts.append(
            "Below are earlier prompts with the scores (1 to 10) a person's taste gave their images, "
            "worst first and best last:\n" + _history(history)
        )
        if feedback:
            parts.append("Feedback on the latest images:\n" + feedback)
        if with_images:
            parts.append("The attached images are the best image of each latest prompt, in the same order.")
        parts.append(
            f"Write {n} new prompts for the same subject that are different from all prompts above "
            "and would get higher scores."
        )
    parts.append(f'Answer with a JSON object {{"prompts": [...]}} holding {n} prompts, nothing else.')
    return "\n\n".join(parts)


def evolve(initial: str, parents: Sequence[tuple[str, float | None]], n: int) -> str:
    """EvoPrompt's operators, asked of the LLM: cross two parents over, then mutate the child. With
    one parent (nothing scored yet) only the mutation."""
    parts = [f'We are improving text-to-image prompts for the subject "{initial}".']
    if len(parents) > 1:
        parts.append(
            "Parent prompts with the scores (1 to 10) a person's taste gave their images, worst first and best last:\n"
            + "\n".join(f'prompt: "{p}"' + ("" if s is None else f"\nscore: {s:.2f}") for p, s in parents)
        )
        parts.append(
            f"Make {n} child prompts. For each child: 1. cross over: take the subject and combine phrases from two of the "
            "parents, preferring the better ones; 2. mutate: change, add or drop one phrase so the child differs from every parent."
        )
    else:
        parts.append(f'Parent prompt: "{parents[0][0]}"')
        parts.append(
            f"Make {n} child prompts. For each child, mutate the parent: keep its subject, change, add or drop one or two phrases."
        )
    parts.append(f'Answer with a JSON object {{"prompts": [...]}} holding {n} prompts, nothing else.')
    return "\n\n".join(parts)


def feedback(items: Sequence[tuple[str, float, str]], *, with_images: bool) -> str:
    """Ask for improvement directions from (prompt, score, description) triples."""
    lines = [
        "A person's taste scored images made from these prompts (1 = dislikes, 10 = loves). "
        + ("The images are attached in the same order." if with_images else "Each image is described in words.")
    ]
    for i, (prompt, score, description) in enumerate(items, 1):
        lines.append(f'{i}. prompt "{prompt}", score {score:.2f}' + (f", image shows: {description}" if description else ""))
    lines.append(
        "In two or three short sentences, say what the high-scoring images have that the low-scoring "
        "ones lack, and what to change in the prompts to raise the score."
    )
    return "\n".join(lines)


def feedback_system() -> str:
    return "You are an art director who explains what a viewer likes. Be short and concrete."
