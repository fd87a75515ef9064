"""Active slates: the pick that would teach the model most, without near-copies side by side."""

from __future__ import annotations

import numpy as np
import pytest

from ppo_client.piaa.active import information, most_informative_slate, posterior_samples
from ppo_client.piaa.choices import ChoiceModel
from ppo_client.piaa.methods import BayesPosterior

DIM = 6


def posterior(spread: float, clusters: int = 1, seed: int = 0) -> BayesPosterior:
    rng = np.random.default_rng(seed)
    heads = np.concatenate([rng.normal(size=(clusters, DIM)), np.full((clusters, 1), 5.5)], axis=1)
    return BayesPosterior(heads, np.full(clusters, 1.0 / clusters), spread**2 * np.eye(DIM + 1), noise=1.0, temperature=0.5)


def pool(n: int = 40, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_answer_the_model_can_already_predict_carries_no_information():
    same_heads = np.tile(np.array([[9.0], [1.0], [5.0]]), (1, 64))  # every head agrees on the utilities
    assert information(same_heads, ChoiceModel(0.5)) == pytest.approx(0.0, abs=1e-9)
    split = np.array([[9.0] * 32 + [1.0] * 32, [1.0] * 32 + [9.0] * 32])  # heads disagree, each sure
    assert information(split, ChoiceModel(0.5)) == pytest.approx(np.log(2), abs=0.01)


def test_samples_follow_the_posterior_mixture():
    post = posterior(0.3, clusters=2)
    heads = posterior_samples(post, 20_000, np.random.default_rng(0))
    np.testing.assert_allclose(heads.mean(axis=0), post.mean, atol=0.03)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_chosen_slate_is_worth_more_than_random_slates(k):
    post, x = posterior(1.0, clusters=3), pool()
    rng = np.random.default_rng(2)
    slate = most_informative_slate(post, x, k, rng)
    assert len(set(slate.indices)) == k
    heads = posterior_samples(post, 2000, np.random.default_rng(3))
    u = x @ heads[:, :DIM].T + heads[:, DIM]
    model = ChoiceModel(0.5)
    chosen = information(u[list(slate.indices)], model)
    random_slates = [information(u[list(rng.choice(len(x), k, replace=False))], model) for _ in range(200)]
    assert chosen > np.quantile(random_slates, 0.9), (chosen, np.median(random_slates))
    assert "nats" in slate.why


def test_near_copies_are_never_shown_side_by_side():
    x = pool(20)
    copies = np.concatenate([x, x + 1e-4])  # every image twice
    slate = most_informative_slate(posterior(1.0, clusters=3), copies, 4, np.random.default_rng(0))
    unit = copies[list(slate.indices)] / np.linalg.norm(copies[list(slate.indices)], axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert similarity[~np.eye(4, dtype=bool)].max() < 0.97


def test_a_pool_of_identical_images_still_gives_a_slate_and_a_bad_size_is_refused():
    x = np.tile(pool(1), (5, 1))
    assert len(most_informative_slate(posterior(1.0), x, 2, np.random.default_rng(0)).indices) == 2
    with pytest.raises(ValueError, match="2 to 4"):
        most_informative_slate(posterior(1.0), pool(), 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="the pool has 1"):
        most_informative_slate(posterior(1.0), pool(1), 2, np.random.default_rng(0))
