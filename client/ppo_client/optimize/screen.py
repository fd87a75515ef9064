"""Screening: guess a candidate prompt's score from its CLIP text embedding, render only the best.

Rendering costs a diffusion run per image; embedding a prompt's text costs one text-encoder pass.
The served CLIP puts texts and images in one space, so the user's head applied to a prompt's *text*
embedding says something about its images, but texts and images sit apart in that space (the
modality gap), so the map is calibrated per run on the prompts already rendered:

    predicted(t) = a * head(t) + b + r(t)

``a, b`` by least squares on (head of each rendered prompt's text, its measured score), ``a = 1``
while the renders cannot tell (fewer than 3, or the head scores their texts alike); ``r`` is a
kernel ridge regression of what is left on the rendered texts. Its kernel is the sum of a linear
one on the centred embeddings (what the prompts' wording says across the run) and a local one,
``exp((cos(t, u) - 1) / length)``: at the run's fixed seeds a prompt's images look like those of
the prompts worded nearly like it, so a candidate one keyword away from a rendered prompt tends to
score like it, seed by seed, in a way no global map of the text can say. The length and the ridge
are chosen together by exact leave-one-out error. Refit every iteration.

The residual model is read as a Gaussian process with that kernel (kernel ridge is its posterior
mean), so each prediction comes with a variance: the signal scale ``tau2 = r' (K + ridge I)^-1 r / n``
is its maximum-likelihood value given the ridge, and the noise is ``ridge * tau2``. Before 3 prompts
are rendered the prior's scale is set so its spread matches the spread of the head's own
predictions over the candidates.

With ``exploration`` above 0 the batch is chosen one pick at a time by an upper confidence bound,
``mean + exploration * sd`` minus a diversity penalty (``DIVERSITY`` times the spread of the means,
times the candidate's largest positive correlation, in centred embeddings, with a pick already
made); after each pick the posterior is conditioned on it as if observed (GP-BUCB), which lowers
the variance of candidates like it. With 0 the batch is the best predicted first, as before.
Either way no text that is a near-copy of a pick (cosine above ``max_similarity``) is taken while
anything else is left.

How far to trust it is measured, not assumed: each iteration records the rank correlation between
the predictions for the prompts it rendered and their measured scores (``calibration``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ppo_client.head import PreferenceHead
from ppo_client.optimize.records import IterationRecord
from ppo_client.piaa import metrics

RIDGE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
LENGTHS = (0.003, 0.01, 0.03, 0.1, 0.3)
"""Length scales of the local kernel, in units of 1 - cosine."""
MAX_SIMILARITY = 0.98
DIVERSITY = 0.5
"""Weight of the in-batch diversity penalty, in units of the spread of the candidates' predicted means."""


@dataclass(frozen=True)
class Predictor:
    a: float
    b: float
    mean: np.ndarray
    support: np.ndarray
    """Text embeddings of the rendered prompts."""
    alpha: np.ndarray
    """Dual ridge weights of the residual."""
    ridge: float
    head: PreferenceHead
    tau2: float = 0.0
    """Signal variance of the residual's Gaussian process (0: none fitted yet, see ``posterior``)."""
    length: float | None = None
    """The local kernel's length scale; None: the linear kernel alone (a predictor with nothing fitted)."""

    def kernel(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return kernel(x, y, self.mean, self.length)

    def __call__(self, texts: np.ndarray) -> np.ndarray:
        base = self.a * self.head.score(texts) + self.b
        if not len(self.alpha):
            return base
        return base + self.kernel(np.asarray(texts, np.float64), self.support) @ self.alpha

    def posterior(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The predicted means [m], their posterior covariance [m, m] and the observation noise."""
        texts = np.asarray(texts, np.float64)
        mean = self(texts.astype(np.float32)).astype(np.float64)
        cov: np.ndarray
        if len(self.support):
            prior = self.kernel(texts, texts)
            cross = self.kernel(texts, self.support)
            inner = self.kernel(self.support, self.support) + self.ridge * np.eye(len(self.support))
            cov = self.tau2 * np.asarray(prior - cross @ np.linalg.solve(inner, cross.T))
            noise = self.ridge * self.tau2
        else:
            z = texts - texts.mean(axis=0)
            prior = z @ z.T
            scale = float(np.mean(np.diag(prior))) if len(z) else 0.0
            spread = float(np.var(mean)) if len(mean) > 1 else 0.0
            tau2 = spread / scale if scale > 1e-12 and spread > 0 else 1.0
            cov = tau2 * prior
            noise = tau2 * RIDGE_GRID[len(RIDGE_GRID) // 2]
        return mean, (cov + cov.T) / 2, float(max(noise, 1e-12))


def kernel(x: np.ndarray, y: np.ndarray, mean: np.ndarray, length: float | None) -> np.ndarray:
    """The residual's kernel between text embeddings [m, d] and [n, d] (see the module's docstring)."""
    linear = (x - mean) @ (y - mean).T
    if length is None:
        return linear
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # noqa: E731
    return linear + np.exp((unit(x) @ unit(y).T - 1.0) / length)


def fit(head: PreferenceHead, texts: np.ndarray, scores: np.ndarray) -> Predictor:
    """The calibrated map from text embeddings [n, d] to scores [n] (see the module's docstring)."""
    texts = np.asarray(texts, np.float64)
    scores = np.asarray(scores, np.float64)
    h = head.score(texts.astype(np.float32)).astype(np.float64)
    if len(scores) >= 3 and np.std(h) > 1e-9:
        a = max(float(np.polyfit(h, scores, 1)[0]), 0.0)  # a head that ranks these texts backwards gets no say
    else:
        a = 1.0  # nothing to calibrate on yet: rank by the head itself
    b = float(np.mean(scores - a * h)) if len(scores) else 0.0
    residual = scores - (a * h + b)
    mean = texts.mean(axis=0) if len(texts) else np.zeros(texts.shape[1:])
    if len(scores) < 3:
        return Predictor(float(a), b, mean, texts[:0], np.zeros(0), 0.0, head)
    fits = []
    for length in LENGTHS:
        gram = kernel(texts, texts, mean, length)
        for ridge in RIDGE_GRID:
            inverse = np.linalg.inv(gram + ridge * np.eye(len(gram)))
            alpha = inverse @ residual
            loo = alpha / np.diag(inverse)  # exact leave-one-out residuals of kernel ridge
            fits.append((float(np.mean(loo**2)), length, ridge, alpha))
    error, length, ridge, alpha = min(fits, key=lambda fitted: fitted[0])  # the first of equal errors
    tau2 = max(float(residual @ alpha) / len(residual), 1e-12)  # maximum likelihood given the ridge
    if error >= float(np.mean(residual**2)):  # the residual model does worse than none out of sample
        alpha = np.zeros_like(alpha)
    return Predictor(float(a), b, mean, texts, alpha, ridge, head, tau2, length)


def select(prompts: Sequence[str], predicted: np.ndarray, texts: np.ndarray, n: int,
           max_similarity: float = MAX_SIMILARITY) -> list[int]:
    """Indices of up to ``n`` prompts, best predicted first, no two texts nearer than ``max_similarity``
    (near-copies are only taken when nothing else is left)."""
    order = [int(i) for i in np.argsort(-np.asarray(predicted), kind="stable")]
    unit = texts / np.maximum(np.linalg.norm(texts, axis=1, keepdims=True), 1e-12)
    chosen: list[int] = []
    for i in order:
        if len(chosen) == n:
            break
        if all(float(unit[i] @ unit[j]) <= max_similarity for j in chosen):
            chosen.append(i)
    for i in order:
        if len(chosen) == n:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


def acquire(mean: np.ndarray, cov: np.ndarray, noise: float, texts: np.ndarray, n: int, exploration: float, *,
            diversity: float = DIVERSITY, max_similarity: float = MAX_SIMILARITY) -> list[int]:
    """Indices of up to ``n`` candidates, picked one at a time by ``mean + exploration * sd`` less the
    diversity penalty, the posterior conditioned on each pick (see the module's docstring)."""
    mean = np.asarray(mean, np.float64)
    cov = np.array(cov, np.float64)
    texts = np.asarray(texts, np.float64)
    unit = texts / np.maximum(np.linalg.norm(texts, axis=1, keepdims=True), 1e-12)
    centred = texts - texts.mean(axis=0)
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    spread = float(np.std(mean)) if len(mean) > 1 else 0.0
    chosen: list[int] = []
    for _ in range(min(n, len(mean))):
        value = mean + exploration * np.sqrt(np.clip(np.diag(cov), 0.0, None))
        free = np.ones(len(mean), bool)
        free[chosen] = False
        if chosen:
            value = value - diversity * spread * np.clip((centred @ centred[chosen].T).max(axis=1), 0.0, None)
            distinct = free & ((unit @ unit[chosen].T).max(axis=1) <= max_similarity)
            if distinct.any():  # near-copies only when nothing else is left
                free = distinct
        i = int(np.flatnonzero(free)[np.argmax(value[free])])
        chosen.append(i)
        column = cov[:, i].copy()
        cov -= np.outer(column, column) / (column[i] + noise)
    return chosen


def calibration(predicted: Sequence[float], measured: Sequence[float]) -> float | None:
    """Rank correlation of predicted and measured scores; None where it says nothing (under 3 pairs,
    or one side constant)."""
    x, y = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return metrics.spearman(x, y)


class Screener:
    """``--screen K``: each iteration asks for K x N candidates and renders the N this run's
    calibrated predictor chooses (in the first, with nothing rendered, the head alone predicts).
    Text embeddings come from the served CLIP, one request per iteration for what it has not
    embedded yet."""

    def __init__(self, client, head: PreferenceHead, factor: int, exploration: float = 0.0) -> None:
        self.client, self.head, self.factor, self.exploration = client, head, factor, exploration
        self._texts: dict[str, np.ndarray] = {}

    def _embed(self, prompts: Sequence[str]) -> np.ndarray:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._texts]
        if missing:
            embeddings = np.asarray(self.client.embed_texts(missing).embeddings, np.float32)
            self._texts.update(zip(missing, embeddings, strict=True))
        return np.stack([self._texts[p] for p in prompts])

    def choose(self, records: Sequence[IterationRecord], prompts: Sequence[str], n: int) -> tuple[list[int], dict]:
        """Which of ``prompts`` to render (or preview), and what the record keeps about the choice:
        each chosen candidate's predicted mean and sd, and ``mean_rank``, its place among all the
        candidates by predicted mean (0: best), which says when exploration chose it."""
        rendered = [(p.prompt, p.score) for r in records for p in r.prompts]
        texts = self._embed(prompts)
        seen = self._embed([p for p, _ in rendered]) if rendered else texts[:0]
        predictor = fit(self.head, seen, np.array([s for _, s in rendered]))
        predicted, cov, noise = predictor.posterior(texts)
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        if self.exploration > 0:
            chosen = acquire(predicted, cov, noise, texts, n, self.exploration)
        else:
            chosen = select(prompts, predicted, texts, n)
        rank = np.empty(len(predicted), int)
        rank[np.argsort(-predicted, kind="stable")] = np.arange(len(predicted))
        return chosen, {
            "candidates": len(prompts), "fitted_on": len(rendered), "a": predictor.a, "ridge": predictor.ridge,
            "length": predictor.length,
            "exploration": self.exploration,
            "predicted": [float(predicted[i]) for i in chosen],
            "sd": [float(sd[i]) for i in chosen],
            "mean_rank": [int(rank[i]) for i in chosen],
            "candidate_predicted": [float(v) for v in predicted],
            "candidate_sd": [float(v) for v in sd],
        }
