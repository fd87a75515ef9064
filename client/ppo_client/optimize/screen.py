"""Screening: guess a candidate prompt's score from its CLIP text embedding, render only the best.

Rendering costs a diffusion run per image; embedding a prompt's text costs one text-encoder pass.
The served CLIP puts texts and images in one space, so the user's head applied to a prompt's *text*
embedding says something about its images, but texts and images sit apart in that space (the
modality gap), so the map is learnt per run from the prompts already rendered: a Gaussian process
on the rendered texts' measured scores, around their mean, whose kernel sums three parts:

- the head's text scores, ``w * (head(t) - c) (head(u) - c)``: a weight on the head learnt from the
  renders, whatever its scale or sign there;
- a linear kernel on the centred embeddings: what the prompts' wording says across the run;
- a local one, ``exp((cos(t, u) - 1) / length)``: at the run's fixed seeds a prompt's images look
  like those of the prompts worded nearly like it, so a candidate one keyword away from a rendered
  prompt tends to score like it, seed by seed, in a way no global map of the text can say.

The prediction averages the Gaussian processes of every head weight, length and ridge on a small
grid, with equal weights: a run's tens of renders cannot tell these settings apart (choosing one
by leave-one-out error or by marginal likelihood, or weighting them by it, ranked the next renders
worse on replayed runs, ``benchmarks/screen_replay.py``). Each one's signal scale is its maximum-likelihood value given
its ridge, ``tau2 = r' (K + ridge I)^-1 r / n``, and its noise ``ridge * tau2``; the ensemble's
variance is that of the mixture. Refit every iteration. With fewer than 3 renders the head alone
predicts, shifted by the renders' mean gap to it, and the prior's scale is set so its spread
matches the spread of the head's own predictions over the candidates.

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
HEAD_WEIGHTS = (0.0, 0.1, 1.0, 10.0)
"""Weights of the head's kernel, against the local kernel's 1 (0: the head has no say)."""
MAX_SIMILARITY = 0.98
DIVERSITY = 0.5
"""Weight of the in-batch diversity penalty, in units of the spread of the candidates' predicted means."""


@dataclass(frozen=True)
class Kernel:
    """One kernel of the ensemble and what the renders made of it: its gram's eigendecomposition
    serves every ridge at the cost of one."""

    length: float
    head_weight: float
    values: np.ndarray
    vectors: np.ndarray
    alphas: np.ndarray
    """Dual weights [ridges, n], one row per ridge on ``RIDGE_GRID``."""
    tau2: np.ndarray
    """Signal variance per ridge."""


@dataclass(frozen=True)
class Predictor:
    head: PreferenceHead
    offset: float
    """The renders' mean score (with fewer than 3: their mean gap to the head's text scores)."""
    mean: np.ndarray
    """Centre of the rendered texts' embeddings."""
    support: np.ndarray
    """Text embeddings of the rendered prompts (empty: the head alone predicts)."""
    support_head: np.ndarray
    """The head's scores of ``support``, less ``head_centre``."""
    head_centre: float = 0.0
    kernels: tuple[Kernel, ...] = ()

    def _cross(self, texts: np.ndarray, heads: np.ndarray, kernel: Kernel) -> np.ndarray:
        return _gram(texts, self.support, heads, self.support_head, self.mean, kernel.length, kernel.head_weight)

    def members(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each member's predictions [members, m] (kernel by kernel, ridge by ridge; without kernels
        the head's [m]), and the head's scores of the texts [m]."""
        texts = np.asarray(texts, np.float64)
        heads = self.head.score(texts.astype(np.float32)).astype(np.float64)
        if not self.kernels:
            return heads + self.offset, heads
        means = [self.offset + self._cross(texts, heads - self.head_centre, k) @ k.alphas.T for k in self.kernels]
        return np.concatenate(means, axis=1).T, heads  # [members, m]

    def __call__(self, texts: np.ndarray) -> np.ndarray:
        means, _ = self.members(texts)
        return means if not self.kernels else means.mean(axis=0)

    def posterior(self, texts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The predicted means [m], their posterior covariance [m, m] and the observation noise."""
        texts = np.asarray(texts, np.float64)
        means, heads = self.members(texts)
        if not self.kernels:
            z = texts - texts.mean(axis=0)
            prior = z @ z.T
            scale = float(np.mean(np.diag(prior))) if len(z) else 0.0
            spread = float(np.var(means)) if len(means) > 1 else 0.0
            tau2 = spread / scale if scale > 1e-12 and spread > 0 else 1.0
            cov = tau2 * prior
            return means, (cov + cov.T) / 2, float(tau2 * RIDGE_GRID[len(RIDGE_GRID) // 2])
        centred = heads - self.head_centre
        second = np.zeros((len(texts), len(texts)))
        noise = 0.0
        for k in self.kernels:
            prior = _gram(texts, texts, centred, centred, self.mean, k.length, k.head_weight)
            projected = self._cross(texts, centred, k) @ k.vectors
            for ridge, tau2 in zip(RIDGE_GRID, k.tau2, strict=True):
                second += tau2 * (prior - (projected / (k.values + ridge)) @ projected.T)
                noise += ridge * tau2
        count = len(means)
        mean = means.mean(axis=0)
        cov = (second + means.T @ means) / count - np.outer(mean, mean)  # the mixture's covariance
        return mean, (cov + cov.T) / 2, float(max(noise / count, 1e-12))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _gram(x: np.ndarray, y: np.ndarray, hx: np.ndarray, hy: np.ndarray, mean: np.ndarray, length: float,
          head_weight: float) -> np.ndarray:
    """The kernel between text embeddings [m, d] and [n, d] with their centred head scores (see the
    module's docstring)."""
    return ((x - mean) @ (y - mean).T + head_weight * np.outer(hx, hy)
            + np.exp((_unit(x) @ _unit(y).T - 1.0) / length))


def fit(head: PreferenceHead, texts: np.ndarray, scores: np.ndarray) -> Predictor:
    """The ensemble of Gaussian processes from text embeddings [n, d] to scores [n] (see the
    module's docstring)."""
    texts = np.asarray(texts, np.float64)
    scores = np.asarray(scores, np.float64)
    h = head.score(texts.astype(np.float32)).astype(np.float64)
    mean = texts.mean(axis=0) if len(texts) else np.zeros(texts.shape[1:])
    if len(scores) < 3:
        offset = float(np.mean(scores - h)) if len(scores) else 0.0
        return Predictor(head, offset, mean, texts[:0], np.zeros(0))
    offset = float(np.mean(scores))
    residual = scores - offset
    centre = float(np.mean(h))
    kernels = []
    for length in LENGTHS:
        for weight in HEAD_WEIGHTS:
            values, vectors = np.linalg.eigh(_gram(texts, texts, h - centre, h - centre, mean, length, weight))
            values = np.clip(values, 0.0, None)
            projected = vectors.T @ residual
            alphas = np.stack([vectors @ (projected / (values + ridge)) for ridge in RIDGE_GRID])
            tau2 = np.maximum(alphas @ residual / len(residual), 1e-12)  # maximum likelihood given the ridge
            kernels.append(Kernel(length, weight, values, vectors, alphas, tau2))
    return Predictor(head, offset, mean, texts, h - centre, centre, tuple(kernels))


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
            "candidates": len(prompts), "fitted_on": len(rendered),
            "members": len(predictor.kernels) * len(RIDGE_GRID),
            "exploration": self.exploration,
            "predicted": [float(predicted[i]) for i in chosen],
            "sd": [float(sd[i]) for i in chosen],
            "mean_rank": [int(rank[i]) for i in chosen],
            "candidate_predicted": [float(v) for v in predicted],
            "candidate_sd": [float(v) for v in sd],
        }
