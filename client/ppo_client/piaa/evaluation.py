"""The standard few-shot PIAA protocol on a SAC-format rating set.

For each of ``splits`` random splits, users are divided into training and test users; priors are
learned on the training users only; each test user's method is fitted on K of their ratings and
tested on the rest. Figures are averaged over splits per user, then over users. Where the set
carries the virtual users' noise-free taste (the demo world), predictions are also correlated with it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ppo_client.piaa.methods import DEFAULT_CONFIG, METHODS, MethodConfig, Task, adapt, fit_priors
from ppo_client.piaa.metrics import mae, mse, spearman

logger = logging.getLogger(__name__)

PAPER_SAC = {"maml": {"srocc": 0.44, "mse": 9.79, "mae": 2.67}, "finetune": {"srocc": 0.45}, "knn": {"srocc": 0.12}}
"""The source paper's PIAA figures on the real SAC set (its Table 3); they are not shot-specific."""


@dataclass(frozen=True)
class EvalConfig:
    shots: tuple[int, ...] = (10, 100)
    splits: int = 10
    methods: tuple[str, ...] = METHODS
    train_fraction: float = 0.5
    min_query: int = 10
    """A test user takes part at K shots only with at least K + this many ratings."""
    seed: int = 0

    def checked(self) -> EvalConfig:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not self.shots or min(self.shots) < 1:
            raise ValueError("shots must be positive integers")
        if self.splits < 1 or not 0 < self.train_fraction < 1:
            raise ValueError("splits must be >= 1 and train fraction between 0 and 1")
        return self


@dataclass(frozen=True)
class UserData:
    uid: int
    rows: np.ndarray
    """Indices into the embedding matrix."""
    ratings: np.ndarray
    truth: np.ndarray | None = None


@dataclass
class EvalResult:
    config: EvalConfig
    users: int
    images: int
    embedding_dim: int
    has_truth: bool
    noise_ceiling_srocc: float | None = None
    """Mean SROCC of the noise-free taste itself against the ratings: what a perfect model would reach."""
    results: dict = field(default_factory=dict)
    """method -> str(shots) -> figures"""

    def to_json(self) -> dict:
        return {
            "config": asdict(self.config),
            "users": self.users,
            "images": self.images,
            "embedding_dim": self.embedding_dim,
            "has_truth": self.has_truth,
            "noise_ceiling_srocc": self.noise_ceiling_srocc,
            "results": self.results,
            "paper_sac": PAPER_SAC,
        }


def evaluate(
    users: Sequence[UserData],
    embeddings: np.ndarray,
    config: EvalConfig = EvalConfig(),
    method_config: MethodConfig = DEFAULT_CONFIG,
    on_split: Callable[[], None] | None = None,
) -> EvalResult:
    config = config.checked()
    has_truth = all(u.truth is not None for u in users)
    # per (method, shots, metric): uid -> list of per-split values
    values: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    split_means: dict[tuple, list[float]] = defaultdict(list)
    for split in range(config.splits):
        rng = np.random.default_rng([config.seed, split])
        order = rng.permutation(len(users))
        cut = max(1, int(round(config.train_fraction * len(users))))
        train = [users[i] for i in order[:cut]]
        test = [users[i] for i in order[cut:]]
        tasks = [Task(embeddings[u.rows], u.ratings) for u in train]
        for shots in config.shots:
            priors = fit_priors(tasks, shots, config.methods, _split_config(method_config, split))
            per_split: dict[tuple, list[float]] = defaultdict(list)
            for user in test:
                if len(user.ratings) < shots + config.min_query:
                    continue
                pick = np.random.default_rng([config.seed, split, shots, user.uid]).permutation(len(user.ratings))
                support, query = pick[:shots], pick[shots:]
                x = embeddings[user.rows]
                for method in config.methods:
                    head = adapt(method, priors, x[support], user.ratings[support], method_config)
                    predicted = head.score(x[query]).astype(np.float64)
                    figures = {
                        "srocc": spearman(predicted, user.ratings[query]),
                        "mse": mse(predicted, user.ratings[query]),
                        "mae": mae(predicted, user.ratings[query]),
                    }
                    if has_truth:
                        figures["true_srocc"] = spearman(predicted, user.truth[query])
                    for metric, value in figures.items():
                        values[(method, shots, metric)][user.uid].append(value)
                        per_split[(method, shots, metric)].append(value)
            for key, vals in per_split.items():
                split_means[key].append(float(np.mean(vals)))
        if on_split:
            on_split()

    ceiling = float(np.mean([spearman(u.truth, u.ratings) for u in users if u.truth is not None])) if has_truth else None
    result = EvalResult(config, len(users), len(embeddings), int(embeddings.shape[1]), has_truth, ceiling)
    for (method, shots, metric), by_user in values.items():
        entry = result.results.setdefault(method, {}).setdefault(str(shots), {"users": len(by_user)})
        user_means = [float(np.mean(v)) for v in by_user.values()]
        entry[f"{metric}_mean"] = float(np.mean(user_means))
        entry[f"{metric}_std"] = float(np.std(split_means[(method, shots, metric)]))
        entry[f"{metric}_user_std"] = float(np.std(user_means))
    return result


def _split_config(config: MethodConfig, split: int) -> MethodConfig:
    return replace(config, seed=config.seed * 1000 + split)


def markdown_table(result: EvalResult) -> str:
    truth = result.has_truth
    head = "| method | shots | test users | SROCC | MSE | MAE |" + (" SROCC vs true taste |" if truth else "")
    rule = "|---|---:|---:|---:|---:|---:|" + ("---:|" if truth else "")
    lines = [head, rule]
    for method in result.config.methods:
        for shots in result.config.shots:
            e = result.results.get(method, {}).get(str(shots))
            if not e:
                continue
            row = (
                f"| {method} | {shots} | {e['users']} | {e['srocc_mean']:.3f} ± {e['srocc_std']:.3f} | "
                f"{e['mse_mean']:.2f} | {e['mae_mean']:.2f} |"
            )
            if truth:
                row += f" {e['true_srocc_mean']:.3f} |"
            lines.append(row)
    if result.noise_ceiling_srocc is not None:
        lines.append("")
        lines.append(
            f"Noise ceiling: the virtual users' true taste itself reaches SROCC {result.noise_ceiling_srocc:.3f} "
            "against their ratings."
        )
    return "\n".join(lines) + "\n"
