"""A person's one-sentence description of their taste, as a direction in CLIP's embedding space.

``split_description`` splits the text offline by a simple rule into liked and disliked phrases:
clauses are separated by ``;``, ``.``, ``,``, "and" and "but"; a clause that starts with a
dislike cue (no, not, without, hate, dislike, avoid, don't like, ...) is disliked, one that starts
with a like cue (I like, love, prefer, ...) is liked, and a clause without a cue keeps the polarity
of the clause before it ("no yellow, clutter"), flipped after "but" ("no yellow but blue"); a new
sentence (``;`` or ``.``) starts liked. Cues and filler words are stripped from the phrase.

``read_description`` embeds the phrases as text (CLIP text and image embeddings share a space)
once, for two readings of them (``DescribedTaste``):

- the zero-shot *direction*, the unit vector mean(liked) - mean(disliked) (``description_direction``;
  a side with no phrase is replaced by a neutral phrase, which removes what every text embedding has
  in common), used when nobody's description can teach more;
- the *features*, sum(liked) - sum(disliked) of the unit phrase embeddings, additive in phrases, which
  ``piaa.methods`` maps to a head with a map learnt from other users' descriptions and ratings (a
  text tower may not know what "grainy" looks like, but people who say it rate alike).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

NEUTRAL = "an image"
"""Stands in for the side of a description with no phrase."""
_DISLIKE = ("i don't like", "i do not like", "i dont like", "don't like", "do not like", "dont like",
            "i can't stand", "can't stand", "i hate", "hate", "i dislike", "dislike", "i avoid", "avoid",
            "not a fan of", "never", "without", "nothing", "not", "no", "less")
_LIKE = ("i really like", "i like", "i love", "i prefer", "i enjoy", "i want", "i'm into", "show me", "give me",
         "like", "love", "prefer", "enjoy", "want", "more", "lots of", "a lot of")
_FILLER = ("please", "also", "really", "some", "any", "too", "much", "very much")
_SENTENCES = re.compile(r"[;.!?\n]+")
_CLAUSES = re.compile(r"(,|\band\b|\bbut\b|\bor\b)")


@dataclass(frozen=True)
class Phrases:
    likes: tuple[str, ...]
    dislikes: tuple[str, ...]


def _strip_cue(clause: str, cues: tuple[str, ...]) -> tuple[str, bool]:
    for cue in sorted(cues, key=len, reverse=True):
        if clause == cue or clause.startswith(cue + " "):
            return clause[len(cue):].strip(), True
    return clause, False


def _clean(phrase: str) -> str:
    words = phrase.split()
    while words and words[0] in _FILLER:
        words = words[1:]
    while words and words[-1] in _FILLER:
        words = words[:-1]
    return " ".join(words).strip(" '\"")


def split_description(text: str) -> Phrases:
    """Liked and disliked phrases of a description, in order, each once."""
    likes: list[str] = []
    dislikes: list[str] = []
    for sentence in _SENTENCES.split(text.lower()):
        liked, after_but = True, False
        for part in _CLAUSES.split(sentence):
            part = " ".join(part.replace("\u2019", "'").split())
            if part in (",", "and", "or"):
                continue
            if part == "but":
                after_but = True
                continue
            clause, disliked = _strip_cue(part, _DISLIKE)
            if disliked:
                liked = False
            else:
                clause, cued = _strip_cue(clause, _LIKE)
                liked = True if cued else (not liked if after_but else liked)
            after_but = False
            phrase = _clean(clause)
            target = likes if liked else dislikes
            if phrase and phrase not in target:
                target.append(phrase)
    return Phrases(tuple(likes), tuple(dislikes))


@dataclass(frozen=True)
class DescribedTaste:
    """A description as the model reads it."""

    phrases: Phrases
    direction: np.ndarray
    """[D] the zero-shot unit direction from disliked to liked phrases."""
    features: np.ndarray
    """[D] sum of the liked minus sum of the disliked unit phrase embeddings."""


def _unit_rows(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _readings(phrases: Phrases, vectors: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(direction or None, features) from unit embeddings of likes, dislikes and ``NEUTRAL``, in that order."""
    likes, dislikes, neutral = vectors[: len(phrases.likes)], vectors[len(phrases.likes):-1], vectors[-1]
    features = likes.sum(axis=0) - dislikes.sum(axis=0)
    direction = (likes.mean(axis=0) if len(likes) else neutral) - (dislikes.mean(axis=0) if len(dislikes) else neutral)
    norm = float(np.linalg.norm(direction))
    return (direction / norm if norm > 1e-9 else None), features


def read_description(phrases: Phrases, embed_texts: Callable[[list[str]], np.ndarray]) -> DescribedTaste | None:
    """Both readings of ``phrases`` (one ``embed_texts`` call: texts to embeddings [N, D]), or None
    when the description has no phrase or its sides cancel."""
    if not phrases.likes and not phrases.dislikes:
        return None
    vectors = _unit_rows(embed_texts([*phrases.likes, *phrases.dislikes, NEUTRAL]))
    direction, features = _readings(phrases, vectors)
    return None if direction is None else DescribedTaste(phrases, direction, features)


def description_direction(phrases: Phrases, embed_texts: Callable[[list[str]], np.ndarray]) -> np.ndarray | None:
    """The zero-shot unit direction [D] from disliked to liked phrases, or None when the description
    has no phrase."""
    described = read_description(phrases, embed_texts)
    return None if described is None else described.direction
