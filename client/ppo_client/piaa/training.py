"""Training a stored user's preference model: served embeddings, priors from other users, a CV estimate.

A user teaches a model with three signals (``SIGNALS``): ratings, choices among shown images and a
one-sentence description. ``bayes`` learns from all three; the other methods from ratings only, and
say so: they refuse a ``signals`` that asks for more, and log what they leave out by default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppo_client.errors import ConfigurationError, StoreError
from ppo_client.head import PreferenceHead
from ppo_client.piaa import choices as choice_model
from ppo_client.piaa.choices import ChoiceData
from ppo_client.piaa.description import DescribedTaste, read_description, split_description
from ppo_client.piaa.embeddings import embed_stored, sac_users
from ppo_client.piaa.methods import (
    DEFAULT_CONFIG,
    MULTI_SIGNAL,
    NEEDS_PRIOR,
    MethodConfig,
    Priors,
    Task,
    adapt,
    adapt_bayes,
    fit_priors,
    lone_bayes_priors,
)
from ppo_client.piaa.metrics import mae, spearman
from ppo_client.sac import read_sac
from ppo_client.store import UserStore

logger = logging.getLogger(__name__)
CV_FOLDS = 5
MIN_RATINGS = 5
SIGNALS = ("ratings", "choices", "description")


@dataclass(frozen=True)
class UserSignals:
    """What a user has taught: ratings (possibly none), choices and a description."""

    ratings: Task
    choices: ChoiceData | None = None
    description: DescribedTaste | None = None
    description_version: int | None = None


@dataclass(frozen=True)
class TrainedModel:
    model_id: int
    head: PreferenceHead
    metrics: dict
    params: dict


def user_task(client, store: UserStore, name: str) -> Task:
    ratings = store.ratings(name)
    if not ratings:
        return Task(np.zeros((0, client.encoder_info().dim)), np.zeros(0))
    x = embed_stored(client, store, [r.image_hash for r in ratings])
    return Task(x, np.array([r.rating for r in ratings], dtype=np.float64))


def user_choices(client, store: UserStore, name: str) -> ChoiceData | None:
    """The user's choices with served embeddings of every shown image; a choice whose image is no
    longer in the store, or whose chosen image was not shown, is left out with a warning."""
    hashes: dict[str, int] = {}
    shown_rows, answers = [], []
    choices = store.choices(name)
    present = store.present({h for choice in choices for h in choice.shown})
    for choice in choices:
        if any(h not in present for h in choice.shown) or (choice.outcome == "chosen" and choice.chosen not in choice.shown):
            logger.warning("choice %s of %s left out: an image is missing or the chosen one was not shown", choice.id, name)
            continue
        for h in choice.shown:
            hashes.setdefault(h, len(hashes))
        shown_rows.append(tuple(hashes[h] for h in choice.shown))
        answers.append(choice.shown.index(choice.chosen) if choice.outcome == "chosen"
                       else choice_model.NONE if choice.outcome == "none" else choice_model.SAME)
    if not answers:
        return None
    x = embed_stored(client, store, list(hashes))
    return ChoiceData(x, tuple(shown_rows), tuple(answers))


def user_description(client, store: UserStore, name: str) -> tuple[int, DescribedTaste] | None:
    """The user's latest description: its version and its reading through the served ``clip_text``
    model (None: no description, or no phrase in it)."""
    description = store.description(name)
    if description is None:
        return None
    described = read_description(split_description(description.text), lambda texts: client.embed_texts(texts).embeddings)
    if described is None:
        logger.warning("the description of %s has no phrase to learn from: %r", name, description.text)
        return None
    return description.version, described


def _requested(signals: frozenset[str] | None) -> frozenset[str]:
    if signals is None:
        return frozenset(SIGNALS)
    unknown = sorted(set(signals) - set(SIGNALS))
    if unknown or not signals:
        raise ConfigurationError(f"signals must be some of {', '.join(SIGNALS)}; got {', '.join(sorted(signals)) or 'none'}")
    return frozenset(signals)


def user_signals(client, store: UserStore, name: str, method: str, signals: frozenset[str] | None = None) -> UserSignals:
    """What ``method`` will learn from: the signals asked for (None: every one the user has) that the
    method can use. A method asked explicitly for a signal it cannot use is refused, naming it."""
    requested = _requested(signals)
    if method not in MULTI_SIGNAL:
        refused = sorted(requested - {"ratings"})
        if signals is not None and refused:
            raise ConfigurationError(f"method {method!r} cannot learn from {' or '.join(refused)}; it learns from "
                                     f"ratings only; use bayes, or --signals ratings")
        ignored = [f"{len(store.choices(name))} choices" if store.choices(name) else "",
                   "a description" if store.description(name) is not None else ""]
        if any(ignored):
            logger.info("%s learns from ratings only: it ignores %s of %s", method, " and ".join(i for i in ignored if i), name)
        requested = frozenset({"ratings"})
    ratings = user_task(client, store, name) if "ratings" in requested else None
    choices = user_choices(client, store, name) if "choices" in requested else None
    description = user_description(client, store, name) if "description" in requested else None
    if ratings is None:
        dim = choices.x.shape[1] if choices is not None else (len(description[1].features) if description else client.encoder_info().dim)
        ratings = Task(np.zeros((0, dim)), np.zeros(0))
    if description is None:
        return UserSignals(ratings, choices)
    return UserSignals(ratings, choices, description[1], description[0])


def prior_tasks(client, store: UserStore, name: str, prior_sac: Path | None, images_root: Path | None) -> list[Task]:
    """Training users for the priors: a SAC-format set if given, else every other user in the store
    with their description, if any (what teaches ``bayes`` to read descriptions)."""
    if prior_sac is not None:
        # the user's own rater, if they were imported from this very file, must not shape their prior
        own = {r.source.rsplit(":", 1)[-1] for r in store.ratings(name) if r.source.startswith(f"sac:{Path(prior_sac).name}:")}
        users, embeddings = sac_users(read_sac(prior_sac), images_root or Path(prior_sac).parent, client, store)
        return [Task(embeddings[u.rows], u.ratings) for u in users if str(u.uid) not in own]
    others = [u.name for u in store.users() if u.name != name and u.ratings >= MIN_RATINGS]
    tasks = []
    for other in others:
        task, described = user_task(client, store, other), user_description(client, store, other)
        tasks.append(task if described is None else Task(task.x, task.y, described[1].features))
    return tasks


def priors_for(method: str, tasks: list[Task], shots: int, dim: int, config: MethodConfig = DEFAULT_CONFIG) -> Priors | None:
    """What ``method`` adapts from: priors learned from ``tasks`` (other users); ``bayes`` with fewer
    than two of them falls back to a weak prior, so a person alone in a store can still train it."""
    if method not in NEEDS_PRIOR:
        return None
    if method == "bayes":
        return bayes_priors(tasks, shots, dim, config)
    return fit_priors(tasks, shots, [method], config)


def bayes_priors(tasks: list[Task], shots: int, dim: int, config: MethodConfig = DEFAULT_CONFIG) -> Priors:
    """``bayes``' priors (``priors_for``): learned from ``tasks``, or a weak prior with fewer than two."""
    if len(tasks) < 2:
        return lone_bayes_priors(dim)
    return fit_priors(tasks, shots, ["bayes"], config)


def _cross_validated(method: str, task: Task, tasks: list[Task], config: MethodConfig,
                     user: UserSignals | None = None) -> dict:
    """SROCC and MAE of held-out predictions, ``CV_FOLDS``-fold over the user's own ratings; a user's
    choices and description stay in every fold's training data."""
    n = len(task.y)
    if n < MIN_RATINGS:
        return {"cv_srocc": None, "cv_mae": None, "cv_folds": 0}
    choices = user.choices if user is not None else None
    description = user.description if user is not None else None
    order = np.random.default_rng(config.seed).permutation(n)
    predicted = np.zeros(n)
    for fold in np.array_split(order, min(CV_FOLDS, n)):
        train = np.setdiff1d(order, fold)
        priors = priors_for(method, tasks, len(train), task.x.shape[1], config)
        head = adapt(method, priors, task.x[train], task.y[train], config, choices=choices, description=description)
        predicted[fold] = head.score(task.x[fold])
    return {"cv_srocc": spearman(predicted, task.y), "cv_mae": mae(predicted, task.y), "cv_folds": min(CV_FOLDS, n)}


def _cross_validated_choices(priors: Priors, user: UserSignals, config: MethodConfig) -> dict:
    """Held-out choice accuracy: ``CV_FOLDS``-fold over the user's choices, each fold's choices
    predicted (the chosen image ranked first among those shown) by a head trained on the ratings, the
    description and the other folds' choices. Only "chosen" answers are scored. The priors are the
    ones of the whole training set (not re-learnt per fold)."""
    choices = user.choices
    if choices is None or choices.counts["chosen"] < 2:
        return {}
    order = np.random.default_rng(config.seed).permutation(len(choices))
    hits, scored = 0.0, 0
    folds = np.array_split(order, min(CV_FOLDS, len(choices)))
    for fold in folds:
        train = choices.subset(np.setdiff1d(order, fold))
        head, _ = adapt_bayes(priors, user.ratings.x, user.ratings.y, config,
                              choices=train if len(train) else None, description=user.description)
        held_out = choices.subset(fold)
        accuracy = choice_model.accuracy(head.score, held_out)
        if accuracy is not None:
            count = held_out.counts["chosen"]
            hits, scored = hits + accuracy * count, scored + count
    return {"cv_choice_accuracy": hits / scored if scored else None, "cv_choice_folds": len(folds)}


def train_user(
    client, store: UserStore, name: str, method: str, *, signals: frozenset[str] | None = None,
    prior_sac: Path | None = None, images_root: Path | None = None, config: MethodConfig = DEFAULT_CONFIG,
) -> TrainedModel:
    """Train ``method`` for user ``name`` from ``signals`` (None: every signal the user has that the
    method can use) and save it with cross-validated metrics."""
    user = user_signals(client, store, name, method, signals)
    task = user.ratings
    choice_count = len(user.choices) if user.choices is not None else 0
    if method in MULTI_SIGNAL:
        if len(task.y) < MIN_RATINGS and not choice_count and user.description is None:
            raise StoreError(f"user {name!r} has {len(task.y)} ratings and no choice or description to learn from; "
                             f"training needs at least {MIN_RATINGS} ratings, some choices or a description")
    elif len(task.y) < MIN_RATINGS:
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
    # the priors' hyperparameters are chosen for the user's number of answers (ratings and choices)
    shots = max(len(task.y) + choice_count, 1) if method in MULTI_SIGNAL else len(task.y)
    metrics = _cross_validated(method, task, tasks, config, user if method in MULTI_SIGNAL else None)
    dim = task.x.shape[1]
    encoder = client.encoder_info().encoder_id
    covariance, used = None, ["ratings"] if len(task.y) else []
    params = {"seed": config.seed, "ratings": int(len(task.y)), "prior_users": len(tasks),
              "prior": str(prior_sac) if prior_sac else ("store" if len(tasks) >= 2 or method not in NEEDS_PRIOR else "weak")}
    if method in MULTI_SIGNAL:
        priors = bayes_priors(tasks, shots, dim, config)
        head, posterior = adapt_bayes(priors, task.x, task.y, config, choices=user.choices, description=user.description)
        covariance = posterior.total_covariance
        metrics.update(_cross_validated_choices(priors, user, config))
        params["choices"] = choice_count
        if user.choices is not None:
            used.append("choices")
            params["choice_outcomes"] = user.choices.counts
            params["choice_temperature"] = posterior.temperature
        if user.description is not None:
            used.append("description")
            phrases, learnt = user.description.phrases, priors.bayes_description
            reading = ({"read": "zero-shot", "strength": config.bayes_description_strength} if learnt is None else
                       {"read": "learnt", "from_users": int(len(learnt.features)), "kappa": learnt.noise(user.description.features),
                        "novelty": learnt.novelty(user.description.features)})
            params["description"] = {"version": user.description_version, "likes": list(phrases.likes),
                                     "dislikes": list(phrases.dislikes), **reading}
    else:
        head = adapt(method, priors_for(method, tasks, shots, dim, config), task.x, task.y, config)
    params["signals"] = used
    head = PreferenceHead(head.kind, head.arrays, k=head.k, meta={**head.meta, "encoder": encoder, "user": name})
    model_id = store.save_model(name, method, encoder, head, params, metrics, covariance=covariance)
    logger.info("trained %s for %s from %s: %s", method, name, ", ".join(used), metrics)
    return TrainedModel(model_id, head, metrics, params)
