"""Which images to show a person side by side so that their pick teaches their ``bayes`` model most.

A slate of k images (2 to 4) is worth the information its answer carries about the head (BALD):
``I = H[E_theta p(answer | theta)] - E_theta H[p(answer | theta)]``, in nats, the answers being each
image, "same" and "none of them" under the choice model of ``piaa.choices``. The expectation is over
heads drawn from the posterior (a taste cluster by its weight, then the cluster's Gaussian). A slate
is high in information when the model is unsure which image the person prefers *and* each plausible
head would pick clearly: the answer then tells the heads apart.

Slates are built greedily: from a shortlist of the images whose utility the model is least sure of,
each step adds the image that raises ``I`` most. An image whose embedding is too close to one already
in the slate (cosine above ``max_similarity``) is never added: near-duplicates side by side teach
little and make a person's pick arbitrary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppo_client.piaa.choices import ChoiceModel, answer_probabilities, default_temperature
from ppo_client.piaa.methods import BayesPosterior, design

SAMPLES = 256
SHORTLIST = 24
MAX_SIMILARITY = 0.97


@dataclass(frozen=True)
class Slate:
    indices: tuple[int, ...]
    """Rows of the pool, in the order to show them."""
    information: float
    """Expected information of the answer about the head, in nats."""

    @property
    def why(self) -> str:
        return (f"the model cannot yet tell which of these you prefer: your pick is worth {self.information:.2f} "
                "nats to it, the most of any slate it could show")


def choice_model(posterior: BayesPosterior) -> ChoiceModel:
    """The choice model the posterior was learnt with (or the one its rating noise implies)."""
    return ChoiceModel(posterior.temperature or default_temperature(posterior.noise))


def posterior_samples(posterior: BayesPosterior, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, D + 1] heads drawn from the posterior mixture."""
    clusters = rng.choice(len(posterior.weights), size=count, p=posterior.weights / posterior.weights.sum())
    spread = np.linalg.cholesky(posterior.covariance + 1e-9 * np.eye(len(posterior.covariance)))
    return posterior.heads[clusters] + rng.standard_normal((count, spread.shape[0])) @ spread.T


def information(utilities: np.ndarray, model: ChoiceModel) -> float:
    """Expected information of the answer to one slate, from its images' utilities [k, S] under S heads."""
    p = answer_probabilities(utilities.T, model)  # [S, k + 2]
    mean = p.mean(axis=0)
    return float(_entropy(mean) - _entropy(p).mean())


def most_informative_slate(
    posterior: BayesPosterior, x_pool: np.ndarray, k: int, rng: np.random.Generator, *,
    samples: int = SAMPLES, shortlist: int = SHORTLIST, max_similarity: float = MAX_SIMILARITY,
) -> Slate:
    """The slate of ``k`` pool images (rows of ``x_pool``) whose answer would teach the model most."""
    if not 2 <= k <= 4:
        raise ValueError(f"a slate shows 2 to 4 images, not {k}")
    if len(x_pool) < k:
        raise ValueError(f"a slate of {k} needs {k} images; the pool has {len(x_pool)}")
    heads = posterior_samples(posterior, samples, rng)
    utilities = design(x_pool) @ heads.T  # [n, S]
    candidates = np.argsort(-utilities.std(axis=1), kind="stable")[: max(shortlist, k)]
    unit = x_pool / np.maximum(np.linalg.norm(x_pool, axis=1, keepdims=True), 1e-12)
    model = choice_model(posterior)
    slate: list[int] = []
    best = 0.0
    while len(slate) < k:
        scored = []
        for i in candidates:
            if i in slate or (slate and float(np.max(unit[slate] @ unit[i])) > max_similarity):
                continue
            trial = slate + [int(i)]
            value = information(utilities[trial], model) if len(trial) >= 2 else float(utilities[i].std())
            scored.append((value, int(i)))
        if not scored:  # the shortlist is all near-copies: widen to the whole pool
            candidates = np.arange(len(x_pool))
            max_similarity = 1.0
            continue
        best, chosen = max(scored)
        slate.append(chosen)
    return Slate(tuple(slate), best)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=-1)
