"""Training a stored user's preference model: served embeddings, priors from other users, a CV estimate."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppo_client.errors import StoreError
from ppo_client.piaa.embeddings import embed_files, sac_users
from ppo_client.piaa.head import PreferenceHead
from ppo_client.piaa.methods import NEEDS_PRIOR, MethodConfig, Priors, Task, adapt, fit_priors, lone_bayes_priors
from ppo_client.piaa.metrics import mae, spearman
from ppo_client.sac import read_sac
from ppo_client.store import UserStore

logger = logging.getLogger(__name__)
CV_FOLDS = 5
MIN_RATINGS = 5


@dataclass(frozen=True)
class TrainedModel:
    model_id: int
    head: PreferenceHead
    metrics: dict
    params: dict


def user_task(client, store: UserStore, name: str) -> Task:
    ratings = store.ratings(name)
    x = embed_files(client, store, [r.image_path for r in ratings], [r.image_hash for r in ratings])
    return Task(x, np.array([r.rating for r in ratings], dtype=np.float64))


def prior_tasks(client, store: UserStore, name: str, prior_sac: Path | None, images_root: Path | None) -> list[Task]:
    """Training users for the priors: a SAC-format set if given, else every other user in the store."""
    if prior_sac is not None:
        # the user's own rater, if they were imported from this very file, must not shape their prior
        own = {r.source.rsplit(":", 1)[-1] for r in store.ratings(name) if r.source.startswith(f"sac:{Path(prior_sac).name}:")}
        users, embeddings = sac_users(read_sac(prior_sac), images_root or Path(prior_sac).parent, client, store)
        return [Task(embeddings[u.rows], u.ratings) for u in users if str(u.uid) not in own]
    others = [u.name for u in store.users() if u.name != name and u.ratings >= MIN_RATINGS]
    return [user_task(client, store, other) for other in others]


def priors_for(method: str, tasks: list[Task], shots: int, dim: int, config: MethodConfig = MethodConfig()) -> Priors | None:
    """What ``method`` adapts from: priors learned from ``tasks`` (other users); ``bayes`` with fewer
    than two of them falls back to a weak prior, so a person alone in a store can still train it."""
    if method not in NEEDS_PRIOR:
        return None
    if method == "bayes" and len(tasks) < 2:
        return lone_bayes_priors(dim)
    return fit_priors(tasks, shots, [method], config)


def _cross_validated(method: str, task: Task, tasks: list[Task], config: MethodConfig) -> dict:
    """SROCC and MAE of held-out predictions, ``CV_FOLDS``-fold over the user's own ratings."""
    n = len(task.y)
    order = np.random.default_rng(config.seed).permutation(n)
    predicted = np.zeros(n)
    for fold in np.array_split(order, min(CV_FOLDS, n)):
        train = np.setdiff1d(order, fold)
        priors = priors_for(method, tasks, len(train), task.x.shape[1], config)
        predicted[fold] = adapt(method, priors, task.x[train], task.y[train], config).score(task.x[fold])
    return {"cv_srocc": spearman(predicted, task.y), "cv_mae": mae(predicted, task.y), "cv_folds": min(CV_FOLDS, n)}


def train_user(
    client, store: UserStore, name: str, method: str, *, prior_sac: Path | None = None,
    images_root: Path | None = None, config: MethodConfig = MethodConfig(),
) -> TrainedModel:
    task = user_task(client, store, name)
    if len(task.y) < MIN_RATINGS:
        raise StoreError(f"user {name!r} has {len(task.y)} ratings; training needs at least {MIN_RATINGS}")
    tasks = []
    if method in NEEDS_PRIOR:
        tasks = prior_tasks(client, store, name, prior_sac, images_root)
        if len(tasks) < 2 and method != "bayes":
            raise StoreError(
                f"method {method!r} learns a prior from other users: the store has {len(tasks)} other users with "
                f"at least {MIN_RATINGS} ratings; import more users, pass --prior-sac, or use bayes or knn"
            )
        if len(tasks) < 2:
            logger.info("no other users to learn a prior from: bayes starts from a weak prior")
    metrics = _cross_validated(method, task, tasks, config)
    priors = priors_for(method, tasks, len(task.y), task.x.shape[1], config)
    encoder = client.encoder_info().encoder_id
    head = adapt(method, priors, task.x, task.y, config)
    head = PreferenceHead(head.kind, head.arrays, k=head.k, meta={**head.meta, "encoder": encoder, "user": name})
    params = {"seed": config.seed, "ratings": int(len(task.y)), "prior_users": len(tasks),
              "prior": str(prior_sac) if prior_sac else ("store" if len(tasks) >= 2 or method not in NEEDS_PRIOR else "weak")}
    model_id = store.save_model(name, method, encoder, head, params, metrics)
    logger.info("trained %s for %s: %s", method, name, metrics)
    return TrainedModel(model_id, head, metrics, params)
