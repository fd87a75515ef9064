"""The likelihood of a person's choices among shown images, under a linear head's utilities.

A choice event shows k images (2 to 4) and the person answers one of them, "none of them" or
"same" (no preference). Each image's utility is its predicted rating ``u_i = design(x_i) @ theta``.
Every event is one multinomial logit (Plackett-Luce's first stage; Bradley-Terry when k = 2) over
k + 2 alternatives with temperature ``tau`` (in rating points):

    P(answer a) = exp(z_a) / sum_b exp(z_b),   z_i = u_i / tau                   (image i chosen)
                                               z_same = mean_i(u_i) / tau + log(nu)  (Davidson's tie)
                                               z_none = reference / tau          (every image below it)

- "same" is Davidson's tie: likeliest when the shown utilities are equal, less so the more they
  differ; ``nu`` (``tie_weight``) sets how often people say "same" about equal images.
- "none" is an alternative whose utility is a fixed ``reference`` rating; since every image's
  utility carries the user's bias while the reference does not, "none" answers teach the bias (the
  person's reference level relative to the scale) as well as the weights.
- Both alternatives are in every event, so the likelihood is a proper distribution over answers
  and evidences for different temperatures are comparable.

The logits are linear in ``theta``, so the log-likelihood is concave and its Hessian is exact:
``-sum_e A_e^T (diag p_e - p_e p_e^T) A_e / tau^2``, with ``A_e`` the event's alternative rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

OUTCOMES = ("chosen", "none", "same")
NONE = -1
"""``ChoiceData.answers`` value of a "none of them" answer."""
SAME = -2
"""``ChoiceData.answers`` value of a "same" (no preference) answer."""


@dataclass(frozen=True)
class ChoiceModel:
    temperature: float
    """Logit scale in rating points: small means choices follow utilities closely."""
    tie_weight: float = 0.5
    """Davidson's nu: P(same | k equal utilities) = nu / (k + nu + exp((reference - u) / tau))."""
    reference: float = 5.5
    """The utility of "none of them": the middle of the 1-10 rating scale."""


@dataclass(frozen=True)
class ChoiceData:
    """A user's choice events over a set of embedded images."""

    x: np.ndarray
    """[m, D] embeddings of every image shown in some event."""
    shown: tuple[tuple[int, ...], ...]
    """Per event, the rows of ``x`` shown (2 to 4)."""
    answers: tuple[int, ...]
    """Per event, the position in ``shown`` of the chosen image, or ``NONE`` / ``SAME``."""

    def __post_init__(self) -> None:
        if len(self.shown) != len(self.answers):
            raise ValueError(f"{len(self.shown)} events but {len(self.answers)} answers")
        for shown, answer in zip(self.shown, self.answers, strict=True):
            if not 2 <= len(shown) <= 4:
                raise ValueError(f"a choice shows 2 to 4 images, got {len(shown)}")
            if answer not in (NONE, SAME) and not 0 <= answer < len(shown):
                raise ValueError(f"answer {answer} is not one of the {len(shown)} shown images")

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def counts(self) -> dict[str, int]:
        none, same = self.answers.count(NONE), self.answers.count(SAME)
        return {"chosen": len(self) - none - same, "none": none, "same": same}

    def subset(self, events: Sequence[int] | np.ndarray) -> ChoiceData:
        return ChoiceData(self.x, tuple(self.shown[e] for e in events), tuple(self.answers[e] for e in events))


def _alternatives(data: ChoiceData, model: ChoiceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per event, the alternatives' design rows [E, K, D + 1] and utility offsets [E, K], a mask of
    real alternatives [E, K] and the answered alternative [E]. Alternatives: the shown images, then
    "same", then "none"; padded to the largest event."""
    a = np.hstack([np.asarray(data.x, dtype=np.float64), np.ones((len(data.x), 1))])
    slots = max(len(s) for s in data.shown) + 2
    rows = np.zeros((len(data), slots, a.shape[1]))
    offsets = np.zeros((len(data), slots))
    mask = np.zeros((len(data), slots), dtype=bool)
    answer = np.zeros(len(data), dtype=int)
    tie = model.temperature * np.log(model.tie_weight)
    for e, (shown, chosen) in enumerate(zip(data.shown, data.answers, strict=True)):
        k = len(shown)
        rows[e, :k] = a[list(shown)]
        rows[e, k] = rows[e, :k].mean(axis=0)
        offsets[e, k] = tie
        offsets[e, k + 1] = model.reference  # its design row stays zero
        mask[e, : k + 2] = True
        answer[e] = k if chosen == SAME else k + 1 if chosen == NONE else chosen
    return rows, offsets, mask, answer


def log_likelihood(theta: np.ndarray, data: ChoiceData, model: ChoiceModel) -> tuple[float, np.ndarray, np.ndarray]:
    """The choices' log-likelihood at ``theta`` [D + 1], its gradient and its (exact) Hessian."""
    theta = np.asarray(theta, dtype=np.float64)
    if not len(data):
        return 0.0, np.zeros_like(theta), np.zeros((len(theta), len(theta)))
    rows, offsets, mask, answer = _alternatives(data, model)
    tau = model.temperature
    logits = np.where(mask, (rows @ theta + offsets) / tau, -np.inf)
    top = logits.max(axis=1, keepdims=True)
    weights = np.exp(logits - top)
    normaliser = weights.sum(axis=1, keepdims=True)
    p = weights / normaliser
    events = np.arange(len(answer))
    value = float(np.sum(logits[events, answer] - top[:, 0] - np.log(normaliser[:, 0])))
    expected = np.einsum("ek,ekd->ed", p, rows)  # [E, D + 1] the alternatives' mean row under p
    gradient = (rows[events, answer] - expected).sum(axis=0) / tau
    flat, flat_p = rows.reshape(-1, rows.shape[2]), p.reshape(-1)
    hessian = -((flat * flat_p[:, None]).T @ flat - expected.T @ expected) / tau**2
    return value, gradient, hessian


def probabilities(theta: np.ndarray, data: ChoiceData, model: ChoiceModel) -> list[np.ndarray]:
    """Per event, the probability of each answer: the shown images in order, then "same", then "none"."""
    rows, offsets, mask, _ = _alternatives(data, model)
    logits = np.where(mask, (rows @ np.asarray(theta, dtype=np.float64) + offsets) / model.temperature, -np.inf)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return [p[e, : len(s) + 2] for e, s in enumerate(data.shown)]


def answer_probabilities(utilities: np.ndarray, model: ChoiceModel) -> np.ndarray:
    """Probabilities of the answers to one slate under many heads at once: ``utilities`` [..., k] (the
    shown images' utilities per head) gives [..., k + 2] (the images in order, then "same", then
    "none"), the same logit as ``probabilities``."""
    u = np.asarray(utilities, dtype=np.float64)
    same = u.mean(axis=-1, keepdims=True) / model.temperature + np.log(model.tie_weight)
    none = np.full(u.shape[:-1] + (1,), model.reference / model.temperature)
    logits = np.concatenate([u / model.temperature, same, none], axis=-1)
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def accuracy(utilities_of, data: ChoiceData) -> float | None:
    """Share of "chosen" events whose chosen image has the highest predicted utility (``utilities_of``
    maps embeddings [n, D] to utilities [n]); "none" and "same" answers are not counted. None when
    there is no "chosen" event."""
    scores = np.asarray(utilities_of(data.x), dtype=np.float64)
    hits = [int(np.argmax(scores[list(shown)]) == answer)
            for shown, answer in zip(data.shown, data.answers, strict=True) if answer >= 0]
    return float(np.mean(hits)) if hits else None


def default_temperature(noise_variance: float) -> float:
    """The logit scale that matches rating noise: if a person picks the image with the highest noisy
    rating (Gaussian noise of variance ``noise_variance``), the Gumbel noise of a logit has the same
    variance when its scale is ``sqrt(6 * variance) / pi``."""
    return float(np.sqrt(6.0 * max(noise_variance, 1e-6)) / np.pi)
