"""Which image a person should rate next: the one whose rating would teach their ``bayes`` model the
most, not a random one.

The model is the same Bayesian mixture the ``bayes`` method trains (priors from the store's other
users, or a weak prior for a person alone). An image's score is its predictive variance: how unsure
the model is of the rating it would get, from the head's posterior spread and from disagreement
between taste clusters. A batch is chosen greedily, each pick shrinking the posterior as its rating
would (the shrinkage does not depend on the rating's value), so near-duplicates are not asked twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ppo_client.piaa.embeddings import embed_stored
from ppo_client.piaa.methods import MethodConfig, Priors, bayes_posterior, design
from ppo_client.piaa.training import MIN_RATINGS, bayes_priors, prior_tasks
from ppo_client.store import PoolImage, UserStore

logger = logging.getLogger(__name__)
ORDERS = ("active", "random")


@dataclass(frozen=True)
class Candidate:
    image: PoolImage
    why: str
    predicted: float | None = None
    spread: float | None = None


class PriorCache:
    """Priors from the store's other users, refitted only when their ratings change (fitting them is
    the slow part: hyperparameters are tuned on simulated few-shot tasks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple, Priors] = {}

    def get(self, client, store: UserStore, user: str, dim: int, shots: int) -> Priors:
        others = tuple(sorted((u.name, u.ratings) for u in store.users() if u.name != user and u.ratings >= MIN_RATINGS))
        bucket = 1 << max(2, int(np.ceil(np.log2(max(shots, 1)))))  # 4, 8, 16 ...: priors are tuned per shot count
        key = (others, bucket, dim)
        with self._lock:
            if key not in self._cache:
                tasks = prior_tasks(client, store, user, None, None) if len(others) >= 2 else []
                self._cache[key] = bayes_priors(tasks, bucket, dim, MethodConfig())  # a weak prior with fewer than two others
            return self._cache[key]


def candidates(store: UserStore, user: str, exclude: Sequence[str] = ()) -> list[PoolImage]:
    rated = {r.image_hash for r in store.ratings(user)}
    skip = set(exclude)
    return [image for image in store.pool() if image.image_hash not in rated and image.image_hash not in skip]


def choose(
    store: UserStore, client, user: str, count: int, *, order: str = "active", exclude: Sequence[str] = (),
    priors: PriorCache | None = None, rng: np.random.Generator | None = None,
) -> list[Candidate]:
    """Up to ``count`` pool images the user has not rated (nor skipped: ``exclude``), in ``order``."""
    pool = candidates(store, user, exclude)
    if not pool or count < 1:
        return []
    if order == "random":
        rng = rng or np.random.default_rng()
        picks = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
        return [Candidate(pool[i], "random order") for i in picks]
    ratings = store.ratings(user)
    x_pool = embed_stored(client, store, [p.image_hash for p in pool])
    x_rated = embed_stored(client, store, [r.image_hash for r in ratings]) if ratings else None
    dim = x_pool.shape[1]
    prior = (priors or PriorCache()).get(client, store, user, dim, len(ratings))
    return [Candidate(pool[i], why, m, s) for i, why, m, s in most_informative(prior, x_rated, [r.rating for r in ratings], x_pool, count)]


def most_informative(prior: Priors, x_rated: np.ndarray | None, y_rated: Sequence[float], x_pool: np.ndarray,
                     count: int) -> list[tuple[int, str, float, float]]:
    """Indices into ``x_pool`` of the ``count`` images whose ratings would teach the model most, each
    with the reason, the predicted rating and its spread."""
    if x_rated is None or len(y_rated) == 0:
        posterior = bayes_posterior(prior, np.zeros((0, x_pool.shape[1])), np.zeros(0))
    else:
        posterior = bayes_posterior(prior, x_rated, np.asarray(y_rated, dtype=np.float64))
    mean, variance = posterior.predictive(x_pool)
    between = variance - np.einsum("nd,de,ne->n", _design(x_pool), posterior.covariance, _design(x_pool))
    covariance = posterior.covariance.copy()
    a = _design(x_pool)
    chosen: list[tuple[int, str, float, float]] = []
    available = np.ones(len(x_pool), dtype=bool)
    for _ in range(min(count, len(x_pool))):
        score = np.einsum("nd,de,ne->n", a, covariance, a) + between
        score[~available] = -np.inf
        i = int(np.argmax(score))
        spread = float(np.sqrt(max(variance[i], 0.0)))
        chosen.append((i, f"the model is least sure of this one (predicts {mean[i]:.1f} \u00b1 {spread:.1f})", float(mean[i]), spread))
        available[i] = False
        column = covariance @ a[i]
        covariance = covariance - np.outer(column, column) / (posterior.noise + a[i] @ column)
    return chosen


def _design(x: np.ndarray) -> np.ndarray:
    return design(x)
