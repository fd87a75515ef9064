"""Virtual users: raters whose true taste is known, to make rating data and to judge optimized images.

A persona is a small JSON spec (format version 1; see also ``docs/demo-world/personas.md``)::

    {
      "version": 1,
      "name": "ana",
      "archetype": "warm-minimalist",
      "weights": {"warmth": 1.0, "clutter": -0.8, "pattern_energy": -0.8},
      "bias": 0.2,
      "scale": 1.6,
      "noise": 1.2
    }

``name`` and ``archetype`` are non-empty strings (the archetype is a label; any string is allowed).
``weights`` maps attribute names of ``attributes.ATTRIBUTES`` to numbers (missing ones count as 0, at
least one must be non-zero). ``bias`` is a number: the rater's personal offset (people grade on a curve).
``scale`` is a positive number: how strongly taste spreads their ratings. ``noise`` is a non-negative
number: the standard deviation of rating noise on the 1-10 scale. All seven fields are required; an
unknown or missing field, a weight that is not a number (booleans are not numbers), an unknown
attribute, or a value out of range raises ``PersonaError`` naming the field (``weights.<attribute>``
for a weight).

Rating. Attributes are standardized with fixed population statistics (``ATTRIBUTE_MEANS`` and
``ATTRIBUTE_STDS``: procedural scenes, see ``attribute_statistics``), clipped to +-5, and combined into a
utility ``u = w . z / |w|`` (about unit variance whatever the weights' magnitude). The noise-free taste is
``true_score = 1 + 9 * sigmoid(scale * u + bias)`` in [1, 10]; a rating is ``round(true_score +
N(0, noise))`` clipped to 1..10. Default noise levels are calibrated so that two independent ratings of
the same images by one persona correlate at about 0.7 (real raters' test-retest reliability).

Archetypes (``ARCHETYPES``) are base tastes; ``default_persona(name)`` is the archetype itself and
``make_persona(name, seed)`` a person of that archetype (jittered weights, small weights on every other
attribute, personal bias and scale), deterministic from the seed. ``population(n, seed)`` draws users
evenly across archetypes. Measured on 300 held-out scenes: personas of different archetypes barely
agree (mean Spearman correlation of true scores about -0.1), personas of one archetype agree (about
0.8), and a persona's true scores spread with a standard deviation of about 2.2 over 1-10.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ppo_demo.attributes import ATTRIBUTES, measure, measure_many
from ppo_demo.errors import PersonaError
from ppo_demo.scenes import example

VERSION = 1
FIELDS = ("version", "name", "archetype", "weights", "bias", "scale", "noise")
Z_CLIP = 5.0
"""Standardized attributes are clipped to +-Z_CLIP so one extreme attribute cannot decide a score alone."""

_POPULATION: dict[str, tuple[float, float]] = {
    "brightness": (0.4870, 0.2037),
    "warmth": (0.5717, 0.2047),
    "saturation": (0.6335, 0.2615),
    "contrast": (0.2255, 0.1132),
    "sharpness": (0.6748, 0.1975),
    "grain": (0.0900, 0.1708),
    "colourfulness": (0.5905, 0.2308),
    "object_area": (0.1289, 0.0658),
    "object_count": (0.3411, 0.1485),
    "clutter": (0.4122, 0.2922),
    "pattern_energy": (0.2257, 0.1919),
    "roundness": (0.6673, 0.2078),
    "squareness": (0.6390, 0.2018),
    "colour_count": (0.2724, 0.0928),
    "red": (0.1230, 0.2789),
    "orange": (0.1300, 0.2779),
    "yellow": (0.1465, 0.2988),
    "green": (0.1140, 0.2720),
    "blue": (0.1396, 0.2946),
    "purple": (0.1204, 0.2793),
    "white": (0.1271, 0.2748),
    "black": (0.0995, 0.2378),
}
"""(mean, std) of each attribute over procedural scenes: ``attribute_statistics(range(2000))``, i.e.
``measure_many`` over ``scenes.example(seed)`` for seeds 0..1999, rounded to 4 decimals. Re-measure and
update these if ``attributes`` or ``scenes`` change (a unit test checks they still match)."""
ATTRIBUTE_MEANS = np.array([_POPULATION[name][0] for name in ATTRIBUTES])
ATTRIBUTE_STDS = np.array([_POPULATION[name][1] for name in ATTRIBUTES])

ARCHETYPES: dict[str, dict[str, float]] = {
    "warm-minimalist": {
        "warmth": 1.0, "orange": 0.3, "blue": -0.3,
        "clutter": -0.7, "pattern_energy": -0.8, "object_count": -0.6, "colour_count": -0.4, "grain": -0.3,
    },
    "vivid-maximalist": {
        "saturation": 0.7, "colourfulness": 1.0, "clutter": 0.6, "pattern_energy": 0.7,
        "object_count": 0.6, "colour_count": 0.6, "white": -0.4, "black": -0.3,
    },
    "dark-moody": {
        "brightness": -1.0, "saturation": -0.5, "colourfulness": -0.3, "black": 0.6, "purple": 0.4,
        "blue": 0.3, "yellow": -0.4, "sharpness": -0.3,
    },
    "clean-geometric": {
        "sharpness": 1.0, "contrast": 0.7, "squareness": 0.6, "roundness": -0.4, "grain": -0.8,
        "object_area": 0.3, "pattern_energy": -0.3,
    },
    "pastel-soft": {
        "brightness": 0.9, "saturation": -0.8, "contrast": -0.6, "sharpness": -0.4, "white": 0.5,
        "black": -0.6, "grain": -0.3,
    },
    "organic-green": {
        "green": 1.0, "yellow": 0.3, "roundness": 0.7, "squareness": -0.3, "object_area": 0.5, "blue": 0.2,
        "red": -0.3,
    },
}  # fmt: skip
"""Base taste of each archetype: weights on standardized attributes (before a persona's jitter)."""

LOGIT_SPREAD = 1.4
"""Target standard deviation of ``scale * u`` over procedural scenes: true scores then spread over most of
1-10 (standard deviation about 2) without piling up at the ends."""
DEFAULT_SCALE: dict[str, float] = {
    "warm-minimalist": 1.029, "vivid-maximalist": 1.061, "dark-moody": 1.045,
    "clean-geometric": 1.381, "pastel-soft": 1.195, "organic-green": 1.496,
}  # fmt: skip
DEFAULT_NOISE: dict[str, float] = {
    "warm-minimalist": 1.557, "vivid-maximalist": 1.499, "dark-moody": 1.493,
    "clean-geometric": 1.573, "pastel-soft": 1.33, "organic-green": 1.479,
}  # fmt: skip
"""Scale and rating noise of each archetype's default persona: ``calibrate_archetype(name, attrs)`` with
``attrs`` the attributes of ``scenes.example(seed)`` for seeds 0..1999, rounded to 3 decimals."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PersonaError(name, f"must be a non-empty string, got {value!r}")
    return value


def _check_number(name: str, value: Any, *, minimum: float | None = None, strict: bool = False) -> float:
    if not _is_number(value):
        raise PersonaError(name, f"must be a finite number, got {type(value).__name__} {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise PersonaError(name, f"must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def _check_weights(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise PersonaError("weights", f"must be a mapping of attribute name to number, got {type(value).__name__}")
    weights = {}
    for key, weight in value.items():
        if key not in ATTRIBUTES:
            raise PersonaError(f"weights.{key}", f"unknown attribute {key!r} (known: {', '.join(ATTRIBUTES)})")
        weights[key] = _check_number(f"weights.{key}", weight)
    if not any(weights.values()):
        raise PersonaError("weights", "at least one weight must be non-zero")
    return {name: weights[name] for name in ATTRIBUTES if name in weights}


@dataclass(frozen=True)
class Persona:
    """One virtual user's taste and rating habits; validated on construction."""

    name: str
    archetype: str
    weights: Mapping[str, float]
    bias: float
    scale: float
    noise: float
    version: int = VERSION

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or self.version != VERSION:
            raise PersonaError("version", f"must be {VERSION}, got {self.version!r}")
        _check_text("name", self.name)
        _check_text("archetype", self.archetype)
        object.__setattr__(self, "weights", MappingProxyType(_check_weights(self.weights)))
        object.__setattr__(self, "bias", _check_number("bias", self.bias))
        object.__setattr__(self, "scale", _check_number("scale", self.scale, minimum=0.0, strict=True))
        object.__setattr__(self, "noise", _check_number("noise", self.noise, minimum=0.0))

    def __hash__(self) -> int:
        return hash((self.name, self.archetype, tuple(self.weights.items()), self.bias, self.scale, self.noise))

    @property
    def weight_vector(self) -> np.ndarray:
        """Weights in ``ATTRIBUTES`` order (zeros for missing ones)."""
        return np.array([self.weights.get(name, 0.0) for name in ATTRIBUTES])

    @classmethod
    def from_dict(cls, data: Any) -> Persona:
        """Validate a parsed spec: unknown and missing fields are named in the error."""
        if not isinstance(data, Mapping):
            raise PersonaError("persona", f"spec must be a JSON object, got {type(data).__name__}")
        for key in data:
            if key not in FIELDS:
                raise PersonaError(str(key), f"unknown field (expected: {', '.join(FIELDS)})")
        for key in FIELDS:
            if key not in data:
                raise PersonaError(key, "missing field")
        return cls(**{key: data[key] for key in FIELDS})

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "archetype": self.archetype,
            "weights": dict(self.weights),
            "bias": self.bias,
            "scale": self.scale,
            "noise": self.noise,
        }


def load_persona(path: str | Path) -> Persona:
    """Read and validate a persona JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PersonaError(str(path), f"not valid JSON: {error}") from error
    return Persona.from_dict(data)


def save_persona(persona: Persona, path: str | Path) -> None:
    Path(path).write_text(json.dumps(persona.to_dict(), indent=2) + "\n", encoding="utf-8")


# --- rating ---


def _matrix(attrs: Mapping[str, float] | np.ndarray) -> np.ndarray:
    if isinstance(attrs, Mapping):
        return np.array([[attrs[name] for name in ATTRIBUTES]], dtype=np.float64)
    matrix = np.atleast_2d(np.asarray(attrs, dtype=np.float64))
    if matrix.ndim != 2 or matrix.shape[1] != len(ATTRIBUTES):
        raise ValueError(f"expected attributes of shape [n, {len(ATTRIBUTES)}], got {np.shape(attrs)}")
    return matrix


def utility(persona: Persona, attrs: Mapping[str, float] | np.ndarray) -> np.ndarray:
    """Standardized linear utility ``w . z / |w|`` per row of ``attrs`` (about unit variance)."""
    z = np.clip((_matrix(attrs) - ATTRIBUTE_MEANS) / ATTRIBUTE_STDS, -Z_CLIP, Z_CLIP)
    w = persona.weight_vector
    return z @ w / np.linalg.norm(w)


def true_scores(persona: Persona, attrs: Mapping[str, float] | np.ndarray) -> np.ndarray:
    """Noise-free scores in [1, 10] for each row of an attribute matrix [n, len(ATTRIBUTES)]."""
    logits = persona.scale * utility(persona, attrs) + persona.bias
    return 1.0 + 9.0 * 0.5 * (1.0 + np.tanh(logits / 2.0))  # sigmoid, without exp overflow


def true_score(persona: Persona, attrs: Mapping[str, float] | np.ndarray) -> float:
    """Noise-free taste for one image's attributes (a ``measure`` dict or one row), in [1, 10]."""
    scores = true_scores(persona, attrs)
    if scores.shape != (1,):
        raise ValueError("true_score takes one image's attributes; use true_scores for many")
    return float(scores[0])


def rate_many(persona: Persona, attrs: Mapping[str, float] | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer ratings 1..10: true score plus Gaussian noise, rounded and clipped."""
    scores = true_scores(persona, attrs)
    noisy = scores + rng.normal(0.0, persona.noise, scores.shape) if persona.noise > 0 else scores
    return np.clip(np.rint(noisy), 1, 10).astype(np.int64)


def rate(persona: Persona, attrs: Mapping[str, float] | np.ndarray, rng: np.random.Generator) -> int:
    """One noisy rating 1..10 of one image's attributes, as a real rater would give it."""
    ratings = rate_many(persona, attrs, rng)
    if ratings.shape != (1,):
        raise ValueError("rate takes one image's attributes; use rate_many for many")
    return int(ratings[0])


def score_image(persona: Persona, image: Any) -> float:
    """The persona's noise-free score of any RGB image: the judge of an optimized image."""
    return true_score(persona, measure(image))


def test_retest(persona: Persona, images_attrs: np.ndarray | Sequence[Mapping[str, float]], seed: int) -> float:
    """Pearson correlation of two independent noisy ratings of the same images (nan if one is constant).

    Real raters reach about 0.6-0.8; ``DEFAULT_NOISE`` is calibrated to 0.7 on procedural scenes.
    """
    if isinstance(images_attrs, Sequence) and images_attrs and isinstance(images_attrs[0], Mapping):
        matrix = np.concatenate([_matrix(row) for row in images_attrs])
    else:
        matrix = np.asarray(images_attrs)
    rng = np.random.default_rng(seed)
    first, second = rate_many(persona, matrix, rng), rate_many(persona, matrix, rng)
    if first.std() == 0 or second.std() == 0:
        return float("nan")
    return float(np.corrcoef(first, second)[0, 1])


test_retest.__test__ = False  # type: ignore[attr-defined]  # pytest reads it: a library function, not a test


def calibrate_noise(
    persona: Persona, images_attrs: np.ndarray, *, target: float = 0.7, seeds: Iterable[int] = range(20)
) -> float:
    """Noise level whose mean test-retest correlation over ``seeds`` is ``target`` (bisection)."""
    seeds = list(seeds)
    low, high = 0.0, 10.0
    for _ in range(30):
        middle = (low + high) / 2
        trial = replace(persona, noise=middle)
        reliability = np.nanmean([test_retest(trial, images_attrs, seed) for seed in seeds])
        low, high = (middle, high) if reliability > target else (low, middle)
    return (low + high) / 2


def calibrate_archetype(archetype: str, images_attrs: np.ndarray) -> tuple[float, float]:
    """(scale, noise) of an archetype's default persona: utility spread ``LOGIT_SPREAD``, test-retest 0.7."""
    persona = Persona(archetype, archetype, _archetype_weights(archetype), 0.0, 1.0, 0.0)
    scale = LOGIT_SPREAD / float(utility(persona, images_attrs).std())
    persona = replace(persona, scale=round(scale, 3))
    return round(scale, 3), round(calibrate_noise(persona, images_attrs), 3)


def attribute_statistics(seeds: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations of every attribute over ``example(seed)`` images.

    How ``ATTRIBUTE_MEANS``/``ATTRIBUTE_STDS`` were made (seeds 0..1999); a test re-measures a few hundred.
    """
    matrix = measure_many(example(seed)[0] for seed in seeds)
    return matrix.mean(axis=0), matrix.std(axis=0)


# --- archetypes and populations ---

WEIGHT_JITTER = 0.25
"""Log-normal sigma multiplying each base weight: how much one person's emphasis differs from another's."""
QUIRK_SD = 0.15
"""Standard deviation of a small personal weight added to every attribute (a favourite colour, say)."""
BIAS_SD = 0.4
"""Standard deviation of the personal offset (clipped to +-1 on the logit scale: about +-2 rating points)."""
SCALE_SD = 0.15
"""Log-normal sigma of the personal scale around the archetype's default (clipped to +-0.3)."""


def _archetype_weights(archetype: str) -> dict[str, float]:
    if archetype not in ARCHETYPES:
        raise PersonaError("archetype", f"unknown archetype {archetype!r} (known: {', '.join(ARCHETYPES)})")
    return ARCHETYPES[archetype]


def default_persona(archetype: str) -> Persona:
    """The archetype itself: base weights, no bias, default scale, calibrated noise."""
    weights = _archetype_weights(archetype)
    return Persona(archetype, archetype, weights, 0.0, DEFAULT_SCALE[archetype], DEFAULT_NOISE[archetype])


def make_persona(archetype: str, seed: int, name: str | None = None) -> Persona:
    """A person of ``archetype``: jittered weights, personal bias and scale; deterministic from ``seed`` (>= 0).

    The noise follows the scale (ratings spread with it) so test-retest reliability stays near 0.7.
    """
    base = _archetype_weights(archetype)
    rng = np.random.default_rng([zlib.crc32(archetype.encode()), int(seed)])
    quirks = rng.normal(0.0, QUIRK_SD, len(ATTRIBUTES))
    factors = np.exp(rng.normal(0.0, WEIGHT_JITTER, len(ATTRIBUTES)))
    weights = {
        attribute: round(float(base.get(attribute, 0.0) * factors[i] + quirks[i]), 3)
        for i, attribute in enumerate(ATTRIBUTES)
    }
    bias = round(float(np.clip(rng.normal(0.0, BIAS_SD), -1.0, 1.0)), 3)
    default_scale = DEFAULT_SCALE[archetype]
    scale = round(float(default_scale * np.exp(np.clip(rng.normal(0.0, SCALE_SD), -0.3, 0.3))), 3)
    noise = round(DEFAULT_NOISE[archetype] * scale / default_scale, 3)
    return Persona(name or f"{archetype}-{seed}", archetype, weights, bias, scale, noise)


def population(n: int, seed: int) -> list[Persona]:
    """``n`` virtual users spread evenly over the archetypes (order shuffled), deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    names = list(ARCHETYPES)
    order = [names[i % len(names)] for i in range(n)]
    rng.shuffle(order)
    seeds = rng.integers(0, 2**31 - 1, n)
    return [make_persona(a, int(s), name=f"user-{i:03d}-{a}") for i, (a, s) in enumerate(zip(order, seeds, strict=True))]
