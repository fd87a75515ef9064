"""How a virtual user answers the questions that are quicker than a rating: which of a few images
they prefer, and one sentence saying what they like.

**Choices.** A persona shown k images (2 to 4) picks the one with the highest *noisy score*: its
true score plus the same Gaussian noise its ratings carry (``persona.noise`` on the 1-10 scale),
before any rounding. A choice is then exactly as noisy as the two ratings it stands for, so the
persona's choices are as consistent as its ratings (``choice_retest`` measures the agreement of two
independent picks from the same slates). With ``none_below`` a persona answers "none of them" when
every noisy score of the slate is below it (``None``).

**Descriptions.** Written from the persona's weights by templates, none tuned per persona: the
attributes with the largest weights (by magnitude) become phrases, a positive weight as a liked
phrase for the attribute's high end, a negative weight as either a liked phrase for its low end or a
disliked phrase for its high end (``PHRASES``). ``TEMPLATES`` holds the phrasings; the seed picks one,
so the same persona can say the same taste in different words.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ppo_demo.attributes import ATTRIBUTES
from ppo_demo.personas import Persona, true_scores

PHRASES: dict[str, tuple[str, str | None]] = {
    "brightness": ("bright light scenes", "dark scenes"),
    "warmth": ("warm colours", "cool colours"),
    "saturation": ("saturated colours", "muted colours"),
    "contrast": ("strong contrast", "soft low contrast"),
    "sharpness": ("sharp crisp detail", "soft blurry pictures"),
    "grain": ("grainy texture", "clean smooth surfaces"),
    "colourfulness": ("colourful pictures", "plain colourless pictures"),
    "object_area": ("big bold shapes", "small shapes"),
    "object_count": ("many objects", "a single object"),
    "clutter": ("busy cluttered scenes", "clean minimal scenes"),
    "pattern_energy": ("busy patterns", "plain backgrounds"),
    "roundness": ("round shapes", "angular shapes"),
    "squareness": ("square boxy shapes", "organic shapes"),
    "colour_count": ("many different colours", "few colours"),
    "red": ("red", None),
    "orange": ("orange", None),
    "yellow": ("yellow", None),
    "green": ("green", None),
    "blue": ("blue", None),
    "purple": ("purple", None),
    "white": ("white", None),
    "black": ("black", None),
}
"""Each attribute's (high end, low end) in words, without commas or "and" (a reader splits a sentence
into phrases there); colours have no words for their absence."""

TEMPLATES: tuple[tuple[str, str], ...] = (
    ("I like {likes}", "; no {dislike}"),
    ("I love {likes}", ", not {dislike}"),
    ("{likes} please", ", without {dislike}"),
    ("Show me {likes}", ". I dislike {dislike}"),
)
"""Phrasings of one taste: the liked phrases, then each disliked one after its cue (no, not,
without, dislike), so a reader can tell them apart phrase by phrase."""
PHRASES_PER_DESCRIPTION = 4


def choose(persona: Persona, attrs: np.ndarray, rng: np.random.Generator, *, none_below: float | None = None) -> int | None:
    """Index of the image a persona picks among the rows of ``attrs`` [k, attributes], or None for
    "none of them" (only with ``none_below``)."""
    scores = true_scores(persona, attrs)
    noisy = scores + rng.normal(0.0, persona.noise, scores.shape) if persona.noise > 0 else scores
    if none_below is not None and noisy.max() < none_below:
        return None
    return int(np.argmax(noisy))


def choice_retest(persona: Persona, slates: Sequence[np.ndarray], seed: int) -> float:
    """Share of slates on which two independent picks agree (1.0: a perfectly consistent chooser)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([choose(persona, s, rng) == choose(persona, s, rng) for s in slates]))


def describe(persona: Persona, seed: int = 0) -> str:
    """One sentence of the persona's taste, in one of ``TEMPLATES``' phrasings chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    weights = persona.weight_vector
    strongest = np.argsort(-np.abs(weights), kind="stable")[:PHRASES_PER_DESCRIPTION]
    likes, dislikes = [], []
    for column in strongest:
        if weights[column] == 0:
            continue
        high, low = PHRASES[ATTRIBUTES[column]]
        if weights[column] > 0:
            likes.append(high)
        elif low is not None and (rng.random() < 0.5 or not likes):
            likes.append(low)
        else:
            dislikes.append(high)
    if not likes:  # every strong weight was a colour to avoid: say what is left to like
        likes.append("other colours")
    opening, cue = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    likes_text = likes[0] if len(likes) == 1 else ", ".join(likes[:-1]) + f" and {likes[-1]}"
    return opening.format(likes=likes_text) + "".join(cue.format(dislike=d) for d in dislikes)
