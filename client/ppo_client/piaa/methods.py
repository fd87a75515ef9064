"""Few-shot preference methods on image embeddings: priors learned from many users, adapted to one.

All methods work on unit-length CLIP embeddings and end in a ``PreferenceHead`` the server can apply:

- ``general``: one ridge head on every training user's ratings (the non-personal prior);
- ``knn``: similarity-weighted mean rating of the user's most similar rated images;
- ``finetune``: the general head fine-tuned by gradient descent on the user's ratings;
- ``maml``: a head initialisation meta-learned over training users (second-order MAML, exact for a
  linear head) adapted by a few gradient steps;
- ``bayes`` (this project's): a Bayesian linear head under a prior learned from the training
  users' own heads: a mixture of Gaussians (taste clusters found by k-means, each with the
  within-cluster covariance). A handful of ratings then only has to say which cluster the user
  resembles and how they differ from it, in the directions in which people are seen to differ; the
  bias column carries each user's personal offset (people grade on a curve). It learns from three
  signals at once: ratings (Gaussian likelihood), choices among shown images (multinomial logit,
  ``piaa.choices``) and a description (``piaa.description``). Each cluster's posterior is a Laplace
  approximation (exact with ratings only), and clusters are re-weighted by their Laplace evidence.

  A description is read as a noisy measurement of the head: training users who have both a
  description and ratings teach a map from a description's features to a head (kernel ridge, its
  penalty chosen by leave-one-out) and how noisy it is (``DescriptionMap.kappa``, in units of the
  prior covariance, estimated from the leave-one-out errors). The noise grows with how
  unlike every training description a description is (the regression's own predictive variance),
  so a taste the training users never voiced is trusted less. The description pulls every cluster
  towards the head it predicts and narrows it; it does not re-weight the clusters (its measurement
  lives in the few directions descriptions span, and scoring clusters on all of them made a wrong
  first guess hard for later answers to undo: measured in ``benchmarks/taste_signals.py``). With
  fewer described training users than ``MIN_DESCRIBED`` there is nothing to learn from, and the
  description shifts the prior mean along its zero-shot CLIP direction instead.

Hyperparameters each baseline depends on (knn's k, finetune's step count, bayes' shrinkage) are
chosen on the training users at the same shot count, never on test users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np

from ppo_client.head import PreferenceHead
from ppo_client.piaa.choices import ChoiceData, ChoiceModel, default_temperature, log_likelihood
from ppo_client.piaa.description import DescribedTaste
from ppo_client.piaa.metrics import spearman

T = TypeVar("T")

METHODS = ("general", "knn", "finetune", "maml", "bayes")
NEEDS_PRIOR = ("general", "finetune", "maml", "bayes")
MULTI_SIGNAL = ("bayes",)
"""Methods that learn from choices and a description as well as ratings."""
MIN_DESCRIBED = 5
"""Training users with a description (and ratings) needed to learn what descriptions say."""


@dataclass(frozen=True)
class Task:
    """One user's rated images: embeddings [n, D] and ratings [n], and the features of their
    description (``DescribedTaste.features``), if they gave one."""

    x: np.ndarray
    y: np.ndarray
    description: np.ndarray | None = None


@dataclass(frozen=True)
class MethodConfig:
    seed: int = 0
    general_ridge: float = 1e-3
    """L2 penalty per rating on the general head's weights (not its bias)."""
    knn_k_grid: tuple[int, ...] = (1, 3, 5, 10, 20)
    finetune_steps_grid: tuple[int, ...] = (0, 10, 50, 200, 1000)
    finetune_lr: float = 0.5
    """Step size as a fraction of 2 / (largest curvature), the stable limit."""
    maml_inner_steps: int = 20
    maml_inner_lr: float = 0.5
    """With 5 steps at 0.25 adaptation barely moves (SROCC 0.28 / 0.37 at 10 / 100 shots on the demo
    set, against 0.36 / 0.56 with these); 50 steps at 0.9 diverge."""
    maml_meta_steps: int = 400
    maml_tasks_per_step: int = 8
    maml_outer_lr: float = 3e-3
    bayes_user_ridge: float = 0.1
    bayes_shrinkage_grid: tuple[float, ...] = (0.02, 0.1, 0.3)
    bayes_clusters_grid: tuple[int, ...] = (1, 3, 6, 10)
    bayes_temperature_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    """Choice temperatures tried, as multiples of the one that matches the prior's rating noise; the
    user's own choices pick one by the Laplace evidence."""
    bayes_tie_weight: float = 0.5
    """Davidson's nu for "same" answers (``ChoiceModel.tie_weight``)."""
    bayes_description_strength: float = 2.0
    """Without described training users: how far a description moves the prior mean along its
    zero-shot direction, in prior standard deviations of the head along it (a default, learnt from
    nobody)."""
    bayes_description_ridge_grid: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    bayes_newton_steps: int = 50
    tuning_tasks: int = 60
    """Simulated few-shot tasks drawn from training users to choose hyperparameters."""


DEFAULT_CONFIG = MethodConfig()
"""The hyperparameters every method uses unless given others."""


@dataclass(frozen=True)
class Priors:
    """Everything learned from training users for one shot count."""

    shots: int
    general: np.ndarray
    """[D + 1]: weights then bias."""
    knn_k: int
    finetune_steps: int
    maml: np.ndarray | None = None
    bayes_means: np.ndarray | None = None
    """[C, D + 1]: the centres of C taste clusters among training users' heads."""
    bayes_weights: np.ndarray | None = None
    bayes_covariance: np.ndarray | None = None
    """Spread of heads around their cluster's centre (shrunk towards isotropic)."""
    bayes_noise: float = 1.0
    bayes_shrinkage: float = 0.0
    bayes_description: "DescriptionMap | None" = None


@dataclass(frozen=True)
class DescriptionMap:
    """What training users' descriptions say about their heads."""

    features: np.ndarray
    """[U, D] the described training users' description features."""
    coefficients: np.ndarray
    """[U, D + 1] kernel ridge coefficients (``_kernel``)."""
    ridge: float
    kappa: float
    """The predicted head's noise covariance for a typical training description, as a multiple of
    the prior covariance."""
    gram_inverse: np.ndarray
    """[U, U] (features features^T + ridge I)^-1."""
    typical_novelty: float
    """The median leave-one-out novelty of the training descriptions."""

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The head [D + 1] a description with these features predicts."""
        return _kernel(self.features, np.asarray(features, dtype=np.float64)[None])[:, 0] @ self.coefficients

    def novelty(self, features: np.ndarray) -> float:
        """The share of the description's features that the training descriptions leave unexplained
        (the linear kernel's predictive variance over its prior variance, 0 to 1)."""
        return _novelty(np.asarray(features, dtype=np.float64), self.features, self.gram_inverse)

    def noise(self, features: np.ndarray) -> float:
        """``kappa`` for this description: larger the less like the training descriptions it is."""
        return self.kappa * max(self.novelty(features), 1e-3) / max(self.typical_novelty, 1e-3)


def design(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.hstack([x, np.ones((len(x), 1))])


def _linear_head(theta: np.ndarray, method: str, **meta) -> PreferenceHead:
    return PreferenceHead.linear(theta[:-1], float(theta[-1]), method=method, **meta)


def _predict(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return design(x) @ theta


# --- the adaptation step of every method, given priors ---


def _knn_predict(support_x, support_y, x, k):
    return PreferenceHead.knn(support_x, support_y, k=k).score(x)


def _finetune(theta: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, lr_fraction: float) -> np.ndarray:
    a = design(x)
    curvature = 2.0 / len(a) * (a.T @ a)
    lr = lr_fraction * 2.0 / max(float(np.linalg.eigvalsh(curvature)[-1]), 1e-12)
    rhs = 2.0 / len(a) * (a.T @ y)
    theta = theta.copy()
    for _ in range(steps):
        theta -= lr * (curvature @ theta - rhs)
    return theta


def _inner(theta: np.ndarray, a: np.ndarray, y: np.ndarray, steps: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` gradient steps on the squared error; also returns d(theta_out)/d(theta_in)."""
    curvature = 2.0 / len(a) * (a.T @ a)
    rhs = 2.0 / len(a) * (a.T @ y)
    step = np.eye(len(theta)) - lr * curvature
    jacobian = np.linalg.matrix_power(step, steps)
    for _ in range(steps):
        theta = theta - lr * (curvature @ theta - rhs)
    return theta, jacobian


@dataclass(frozen=True)
class BayesPosterior:
    """The user's head under the mixture prior: each taste cluster's Gaussian posterior, weighted by
    how well that cluster explains the user's ratings and choices."""

    heads: np.ndarray
    """[C, D + 1] each cluster's posterior mean head."""
    weights: np.ndarray
    """[C] posterior cluster probabilities."""
    covariance: np.ndarray
    """[D + 1, D + 1] the clusters' posterior covariances averaged under ``weights`` (with ratings
    only they are all equal): the spread of a head within its cluster."""
    noise: float
    temperature: float | None = None
    """The choice temperature the user's choices chose (None: no choices)."""

    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.heads

    @property
    def total_covariance(self) -> np.ndarray:
        """The covariance of the head under the whole mixture: within clusters plus between them."""
        spread = self.heads - self.mean
        return self.covariance + (spread * self.weights[:, None]).T @ spread

    def predictive(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of a rating of each embedding in ``x`` (the mixture's; rating noise
        excluded): what a rating would teach the model about these images."""
        a = design(x)
        per_cluster = a @ self.heads.T
        mean = per_cluster @ self.weights
        within = np.einsum("nd,de,ne->n", a, self.covariance, a)
        between = ((per_cluster - mean[:, None]) ** 2) @ self.weights
        return mean, within + between


@dataclass(frozen=True)
class _Laplace:
    head: np.ndarray
    covariance: np.ndarray
    log_evidence: float


def _laplace(mean: np.ndarray, precision: np.ndarray, prior_logdet: float, a: np.ndarray, y: np.ndarray,
             noise: float, choices: ChoiceData | None, model: ChoiceModel | None, steps: int) -> _Laplace:
    """One cluster's posterior: the mode of log N(theta; mean, precision^-1) + the ratings' Gaussian
    log-likelihood + the choices' log-likelihood (Newton with backtracking; the objective is concave),
    the inverse Hessian there, and the Laplace estimate of the log evidence (exact without choices)."""
    quadratic = precision + a.T @ a / noise
    linear = precision @ mean + a.T @ y / noise
    theta = np.linalg.solve(quadratic, linear)
    hessian = quadratic
    choice_value = 0.0
    if choices is not None and len(choices):
        if model is None:
            raise ValueError("choices need a choice model (a positive choice temperature)")

        def objective(t: np.ndarray) -> float:
            return float(-0.5 * t @ quadratic @ t + linear @ t + log_likelihood(t, choices, model)[0])

        for _ in range(steps):
            choice_value, gradient, choice_hessian = log_likelihood(theta, choices, model)
            hessian = quadratic - choice_hessian
            step = np.linalg.solve(hessian, linear - quadratic @ theta + gradient)
            current, size = objective(theta), 1.0
            while objective(theta + size * step) < current - 1e-10 and size > 1e-4:
                size /= 2
            theta = theta + size * step
            if np.max(np.abs(size * step)) < 1e-9:
                break
        choice_value, _, choice_hessian = log_likelihood(theta, choices, model)
        hessian = quadratic - choice_hessian
    residual: np.ndarray = y - a @ theta
    rating_value = -0.5 * residual @ residual / noise - 0.5 * len(y) * np.log(2 * np.pi * noise)
    offset = theta - mean
    _, hessian_logdet = np.linalg.slogdet(hessian)
    log_evidence = (-0.5 * offset @ precision @ offset + rating_value + choice_value
                    - 0.5 * prior_logdet - 0.5 * hessian_logdet)
    return _Laplace(theta, np.linalg.inv(hessian), float(log_evidence))


def description_shift(priors: Priors, direction: np.ndarray, strength: float) -> np.ndarray:
    """The prior mean shift [D + 1] a description gives: ``strength`` prior standard deviations of the
    head along the described unit direction (the bias is not moved)."""
    d = np.append(np.asarray(direction, dtype=np.float64), 0.0)
    spread = float(np.sqrt(max(d @ priors.bayes_covariance @ d, 0.0)))
    return strength * spread * d


@dataclass(frozen=True)
class _Mixture:
    means: np.ndarray
    covariance: np.ndarray
    log_weights: np.ndarray


def _measured(mixture: _Mixture, target: np.ndarray, kappa: float) -> _Mixture:
    """The mixture after observing ``target`` = head + N(0, kappa * covariance), per cluster, the
    cluster weights kept (see the module's docstring)."""
    offsets = target - mixture.means
    return _Mixture(mixture.means + offsets / (1.0 + kappa), mixture.covariance * (kappa / (1.0 + kappa)),
                    mixture.log_weights)


def _prior_mixture(priors: Priors, description: DescribedTaste | None, config: MethodConfig) -> _Mixture:
    means, covariance, weights = priors.bayes_means, priors.bayes_covariance, priors.bayes_weights
    if means is None or covariance is None or weights is None:
        raise ValueError("these priors hold no bayes prior: learn them with 'bayes' among the methods")
    mixture = _Mixture(means, covariance, np.log(weights + 1e-12))
    if description is None:
        return mixture
    learnt = priors.bayes_description
    if learnt is None:
        shift = description_shift(priors, description.direction, config.bayes_description_strength)
        return _Mixture(mixture.means + shift, mixture.covariance, mixture.log_weights)
    return _measured(mixture, learnt.predict(description.features), learnt.noise(description.features))


def bayes_posterior(priors: Priors, x: np.ndarray, y: np.ndarray, *, choices: ChoiceData | None = None,
                    description: DescribedTaste | None = None, config: MethodConfig = DEFAULT_CONFIG) -> BayesPosterior:
    """The user's posterior from ratings (``x``, ``y``), choices and a description (any of them may
    be empty); with ratings only it is the exact conjugate posterior."""
    return _mixture_posterior(_prior_mixture(priors, description, config), priors.bayes_noise, x, y, choices, config)


def _mixture_posterior(mixture: _Mixture, noise: float, x: np.ndarray, y: np.ndarray, choices: ChoiceData | None,
                       config: MethodConfig) -> BayesPosterior:
    a, covariance, means = design(x), mixture.covariance, mixture.means
    y = np.asarray(y, dtype=np.float64)
    precision = np.linalg.inv(covariance)
    _, prior_logdet = np.linalg.slogdet(covariance)
    prior_weights = np.exp(mixture.log_weights - mixture.log_weights.max())
    prior_weights /= prior_weights.sum()
    has_choices = choices is not None and len(choices) > 0
    temperatures = ([f * default_temperature(noise) for f in config.bayes_temperature_factors]
                    if has_choices else [None])
    best: tuple[float, float | None, list[_Laplace], np.ndarray] | None = None
    for temperature in temperatures:
        model = ChoiceModel(temperature, config.bayes_tie_weight, reference=float(means[:, -1] @ prior_weights)) \
            if temperature else None
        fits = [_laplace(mean, precision, prior_logdet, a, y, noise, choices if has_choices else None, model,
                         config.bayes_newton_steps) for mean in means]
        log_weights = mixture.log_weights + np.array([f.log_evidence for f in fits])
        total = float(log_weights.max() + np.log(np.exp(log_weights - log_weights.max()).sum()))
        if best is None or total > best[0] + 1e-9:
            best = (total, temperature, fits, log_weights)
    if best is None:
        raise ValueError("config.bayes_temperature_factors is empty: give at least one choice temperature factor")
    _, temperature, fits, log_weights = best
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    within = sum(w * f.covariance for w, f in zip(weights, fits, strict=True))
    return BayesPosterior(np.stack([f.head for f in fits]), weights, within, float(noise), temperature)


def _bayes_posterior(priors: Priors, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Posterior mean head under the mixture prior."""
    return bayes_posterior(priors, x, y).mean


def lone_bayes_priors(dim: int, *, rating_mean: float = 5.5, weight_sd: float = 3.0, bias_sd: float = 2.0,
                      noise_sd: float = 1.5) -> Priors:
    """A weak prior for a person with nobody else in the store: one cluster, zero weights around a
    mid-scale bias. Embeddings are unit length, so a weight spread of 3 lets one direction move a
    rating by a few points."""
    covariance = np.diag([weight_sd**2] * dim + [bias_sd**2])
    means = np.zeros((1, dim + 1))
    means[0, -1] = rating_mean
    return Priors(0, means[0], 5, 0, bayes_means=means, bayes_weights=np.ones(1), bayes_covariance=covariance,
                  bayes_noise=noise_sd**2)


def adapt(method: str, priors: Priors | None, x: np.ndarray, y: np.ndarray, config: MethodConfig = DEFAULT_CONFIG,
          *, choices: ChoiceData | None = None, description: DescribedTaste | None = None) -> PreferenceHead:
    """The user's head from their ratings (``x`` embeddings, ``y`` ratings) and the priors; ``bayes``
    also from choices and a description (``piaa.description``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in NEEDS_PRIOR and priors is None:
        raise ValueError(f"method {method!r} needs priors learned from other users")
    for signal, given in (("choices", choices is not None and len(choices) > 0), ("description", description is not None)):
        if given and method not in MULTI_SIGNAL:
            raise ValueError(f"method {method!r} cannot learn from {signal}; only {', '.join(MULTI_SIGNAL)} can")
    meta = {"shots": int(len(y))}
    if method == "knn" or priors is None:  # knn is the one method that goes without priors (checked above)
        k = priors.knn_k if priors else 5
        return PreferenceHead.knn(x, y, k=min(k, len(y)), method="knn", **meta)
    if method == "general":
        return _linear_head(priors.general, "general", **meta)
    if method == "finetune":
        return _linear_head(_finetune(priors.general, x, y, priors.finetune_steps, config.finetune_lr), "finetune", **meta)
    if method == "maml":
        if priors.maml is None:
            raise ValueError("these priors hold no maml initialisation: learn them with 'maml' among the methods")
        theta, _ = _inner(priors.maml, design(x), y, config.maml_inner_steps, config.maml_inner_lr)
        return _linear_head(theta, "maml", **meta)
    return adapt_bayes(priors, x, y, config, choices=choices, description=description)[0]


def adapt_bayes(priors: Priors, x: np.ndarray, y: np.ndarray, config: MethodConfig = DEFAULT_CONFIG, *,
                choices: ChoiceData | None = None, description: DescribedTaste | None = None) -> tuple[PreferenceHead, BayesPosterior]:
    """``bayes``' head (the posterior mean) and the posterior it comes from."""
    posterior = bayes_posterior(priors, x, y, choices=choices, description=description, config=config)
    meta = {"shots": int(len(y))}
    if choices is not None and len(choices):
        meta["choices"] = len(choices)
    return _linear_head(posterior.mean, "bayes", **meta), posterior


# --- learning the priors from training users ---


def _episodes(tasks: Sequence[Task], shots: int, count: int, rng: np.random.Generator) -> list[tuple[Task, np.ndarray, np.ndarray]]:
    """Simulated few-shot tasks: (task, support indices, query indices)."""
    usable = [t for t in tasks if len(t.y) >= shots + 5]
    episodes = []
    for _ in range(count if usable else 0):
        task = usable[rng.integers(len(usable))]
        order = rng.permutation(len(task.y))
        episodes.append((task, order[:shots], order[shots:]))
    return episodes


def _choose(grid: Sequence[T], episodes: list[tuple[Task, np.ndarray, np.ndarray]],
            predict: Callable[[T, np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> T:
    """The grid value with the best mean query SROCC over the episodes."""
    best, best_score = grid[0], -np.inf
    for value in grid:
        scores = [spearman(predict(value, t.x[s], t.y[s], t.x[q]), t.y[q]) for t, s, q in episodes]
        score = float(np.mean(scores)) if scores else 0.0
        if score > best_score + 1e-9:
            best, best_score = value, score
    return best


def fit_general(tasks: Sequence[Task], ridge: float) -> np.ndarray:
    a = design(np.concatenate([t.x for t in tasks]))
    y = np.concatenate([t.y for t in tasks])
    penalty = ridge * len(y) * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(a.T @ a + penalty, a.T @ y)


def _fit_maml(tasks: Sequence[Task], init: np.ndarray, shots: int, config: MethodConfig, rng) -> np.ndarray:
    theta = init.copy()
    first, second = np.zeros_like(theta), np.zeros_like(theta)
    beta1, beta2 = 0.9, 0.999
    for step in range(1, config.maml_meta_steps + 1):
        grad = np.zeros_like(theta)
        episodes = _episodes(tasks, shots, config.maml_tasks_per_step, rng)
        for task, support, query in episodes:
            adapted, jacobian = _inner(theta, design(task.x[support]), task.y[support], config.maml_inner_steps, config.maml_inner_lr)
            aq = design(task.x[query])
            grad += jacobian.T @ (2.0 / len(query) * aq.T @ (aq @ adapted - task.y[query]))
        grad /= max(len(episodes), 1)
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad * grad
        theta -= config.maml_outer_lr * (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + 1e-8)
    return theta


def _user_heads(tasks: Sequence[Task], ridge: float) -> tuple[np.ndarray, float]:
    """Each training user's own ridge head [U, D + 1] and the mean residual variance."""
    heads, residuals = [], []
    for task in tasks:
        a = design(task.x)
        theta = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ task.y)
        heads.append(theta)
        residuals.append(float(np.mean((a @ theta - task.y) ** 2)))
    return np.stack(heads), float(np.mean(residuals))


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 5,
            iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Centres [k, D] and each point's label [n] of the best of ``restarts`` runs (the first of equal inertia)."""
    runs = (_kmeans_run(points, k, rng, iterations) for _ in range(restarts))
    _, centres, labels = min(runs, key=lambda run: run[0])
    return centres, labels


def _kmeans_run(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int) -> tuple[float, np.ndarray, np.ndarray]:
    """One k-means run from random centres: its inertia, centres and labels."""
    centres = points[rng.choice(len(points), k, replace=False)]
    for _ in range(iterations):
        labels = np.argmin(((points[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        centres = np.stack([points[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
    return float(((points - centres[labels]) ** 2).sum()), centres, labels


def _bayes_prior(heads: np.ndarray, clusters: int, shrinkage: float, seed: int) -> dict:
    clusters = max(1, min(clusters, len(heads) - 1)) if len(heads) > 1 else 1
    centres, labels = _kmeans(heads, clusters, np.random.default_rng(seed))
    spread = heads - centres[labels]
    covariance = spread.T @ spread / max(len(heads) - clusters, 1)
    floor = max(np.trace(covariance) / len(covariance), 1e-6)
    covariance = (1 - shrinkage) * covariance + shrinkage * floor * np.eye(len(covariance))
    weights = np.bincount(labels, minlength=clusters) / len(labels)
    return {"bayes_means": centres, "bayes_weights": weights, "bayes_covariance": covariance}


def _fit_bayes(tasks: Sequence[Task], shots: int, general: np.ndarray, config: MethodConfig, rng) -> dict:
    # the cluster count and shrinkage are chosen with heads from half of the training users and
    # episodes from the other half, so a user's own head never helps predict that user
    order = rng.permutation(len(tasks))
    half = max(1, len(tasks) // 2)
    heads_a, noise_a = _user_heads([tasks[i] for i in order[:half]], config.bayes_user_ridge)
    held_out = _episodes([tasks[i] for i in order[half:]], shots, config.tuning_tasks, rng)
    grid = [(k, s) for k in config.bayes_clusters_grid for s in config.bayes_shrinkage_grid]

    candidates = {
        choice: Priors(shots, general, 0, 0, bayes_noise=noise_a, **_bayes_prior(heads_a, *choice, config.seed))
        for choice in grid
    }

    def predict(choice, sx, sy, qx):
        return _predict(_bayes_posterior(candidates[choice], sx, sy), qx)

    clusters, shrinkage = _choose(grid, held_out, predict)
    heads, noise = _user_heads(tasks, config.bayes_user_ridge)
    fields = {"bayes_noise": noise, "bayes_shrinkage": float(shrinkage), **_bayes_prior(heads, clusters, shrinkage, config.seed)}
    described = [i for i, t in enumerate(tasks) if t.description is not None]
    if len(described) >= MIN_DESCRIBED:
        fields["bayes_description"] = _fit_description_map([tasks[i] for i in described], heads[described],
                                                           fields["bayes_covariance"], config)
    return fields


def _novelty(features: np.ndarray, known: np.ndarray, gram_inverse: np.ndarray) -> float:
    energy = float(features @ features)
    if energy <= 1e-12:
        return 1.0
    k = known @ features
    return float(np.clip((energy - k @ gram_inverse @ k) / energy, 0.0, 1.0))


INTERCEPT = 1e4
"""The constant feature's kernel weight: large, so the intercept (the mean head) is all but unpenalized."""


def _kernel(known: np.ndarray, features: np.ndarray) -> np.ndarray:
    """[U, N] the linear kernel with a constant feature, so the map has an intercept."""
    return known @ features.T + INTERCEPT


def _loo_heads(features: np.ndarray, heads: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Kernel ridge from features to heads: (coefficients, each user's leave-one-out prediction of
    their own head), the latter exact by the linear smoother's closed form."""
    kernel = _kernel(features, features)
    inverse = np.linalg.inv(kernel + ridge * np.eye(len(kernel)))
    smoother = kernel @ inverse
    leverage = np.clip(np.diag(smoother), 0.0, 1.0 - 1e-9)[:, None]
    return inverse @ heads, (smoother @ heads - leverage * heads) / (1.0 - leverage)


def _fit_description_map(tasks: Sequence[Task], heads: np.ndarray, covariance: np.ndarray,
                         config: MethodConfig) -> DescriptionMap:
    """The map from description features to heads, its penalty chosen by how well each user's
    leave-one-out predicted head ranks their own ratings, and ``kappa`` by maximum likelihood from
    the leave-one-out errors: the median of |predicted - own head|^2 / trace(prior covariance),
    each divided by that description's own novelty scale (so nobody's own head helps predict them,
    and the noise does not depend on how many answers come after, unlike a choice made on
    few-shot episodes, which swung from 0.1 to 10 between shot counts)."""
    features = np.stack([t.description for t in tasks if t.description is not None]).astype(np.float64)  # all are described

    def loo_quality(ridge):
        _, predicted = _loo_heads(features, heads, ridge)
        return float(np.mean([spearman(design(t.x) @ h, t.y) for t, h in zip(tasks, predicted, strict=True)]))

    ridge = max(config.bayes_description_ridge_grid, key=loo_quality)
    coefficients, predicted = _loo_heads(features, heads, ridge)
    gram_inverse = np.linalg.inv(features @ features.T + ridge * np.eye(len(features)))
    # each user's novelty against the others: how far their own description is from everybody else's
    novelty = []
    for i in range(len(features)):
        others = np.delete(features, i, axis=0)
        novelty.append(_novelty(features[i], others, np.linalg.inv(others @ others.T + ridge * np.eye(len(others)))))
    typical = float(np.median(novelty))
    errors = ((predicted - heads) ** 2).sum(axis=1) / np.trace(covariance)
    scales = np.maximum(novelty, 1e-3) / max(typical, 1e-3)
    kappa = float(np.median(errors / scales))
    return DescriptionMap(features, coefficients, float(ridge), kappa, gram_inverse, typical)


def fit_priors(tasks: Sequence[Task], shots: int, methods: Sequence[str], config: MethodConfig = DEFAULT_CONFIG) -> Priors:
    """Learn what ``methods`` need from training users, for adapting on ``shots`` ratings."""
    if not tasks:
        raise ValueError("learning priors needs at least one training user with ratings")
    rng = np.random.default_rng(config.seed)
    episodes = _episodes(tasks, shots, config.tuning_tasks, rng)
    general = fit_general(tasks, config.general_ridge)
    knn_k = 5
    if "knn" in methods:
        knn_k = _choose(config.knn_k_grid, episodes, lambda k, sx, sy, qx: _knn_predict(sx, sy, qx, min(k, len(sy))))
    steps = 0
    if "finetune" in methods:
        steps = _choose(
            config.finetune_steps_grid, episodes,
            lambda n, sx, sy, qx: _predict(_finetune(general, sx, sy, n, config.finetune_lr), qx),
        )
    maml = _fit_maml(tasks, general, shots, config, rng) if "maml" in methods else None
    fields = {}
    if "bayes" in methods:
        fields = _fit_bayes(tasks, shots, general, config, rng)
    return Priors(shots, general, int(knn_k), int(steps), maml, **fields)
