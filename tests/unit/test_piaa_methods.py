"""The few-shot methods and the evaluation protocol on a synthetic population with known structure."""

import json

import numpy as np
import pytest

from ppo_client.piaa import methods as m
from ppo_client.piaa.evaluation import EvalConfig, UserData, evaluate, markdown_table
from ppo_client.piaa.metrics import rankdata, spearman

DIM = 12


def population(users: int = 30, images: int = 200, seed: int = 0):
    """Users from three taste clusters (linear in the embedding) rating with noise and a personal bias."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(images, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    centres = rng.normal(size=(3, DIM)) * 6
    centres -= centres.mean(axis=0)  # no taste everyone shares
    out = []
    for uid in range(users):
        w = centres[uid % 3] + rng.normal(size=DIM)
        rows = rng.choice(images, size=rng.integers(60, 120), replace=False)
        truth = x[rows] @ w + 5.5 + rng.normal() * 0.5
        ratings = np.clip(np.round(truth + rng.normal(size=len(rows)) * 0.8), 1, 10)
        out.append(UserData(uid, rows, ratings, truth))
    return out, x


def test_rank_correlation_matches_known_values_with_ties():
    np.testing.assert_allclose(rankdata([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486833, rel=1e-6)  # scipy's value
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_the_maml_inner_jacobian_is_exact():
    rng = np.random.default_rng(1)
    a, y, theta = m.design(rng.normal(size=(10, 4))), rng.normal(size=10), rng.normal(size=5)
    _, jacobian = m._inner(theta, a, y, steps=4, lr=0.1)
    eps = 1e-6
    numeric = np.stack([(m._inner(theta + eps * e, a, y, 4, 0.1)[0] - m._inner(theta - eps * e, a, y, 4, 0.1)[0]) / (2 * eps)
                        for e in np.eye(5)], axis=1)
    np.testing.assert_allclose(jacobian, numeric, atol=1e-6)


def test_every_method_is_deterministic_for_a_seed():
    users, x = population()
    tasks = [m.Task(x[u.rows], u.ratings) for u in users[:20]]
    user = users[25]
    heads = []
    for _ in range(2):
        priors = m.fit_priors(tasks, 10, m.METHODS, m.MethodConfig(seed=3, maml_meta_steps=50))
        heads.append([m.adapt(name, priors, x[user.rows][:10], user.ratings[:10]).to_bytes() for name in m.METHODS])
    assert heads[0] == heads[1]


def test_methods_that_need_a_prior_say_so():
    with pytest.raises(ValueError, match="needs priors"):
        m.adapt("finetune", None, np.ones((3, DIM)), np.ones(3))
    with pytest.raises(ValueError, match="unknown method"):
        m.adapt("forest", None, np.ones((3, DIM)), np.ones(3))


def test_the_evaluation_learns_personal_taste_and_the_cluster_prior_helps_most():
    users, x = population()
    config = EvalConfig(shots=(10, 40), splits=2, train_fraction=0.5)
    result = evaluate(users, x, config, m.MethodConfig(maml_meta_steps=100))
    r = result.results
    assert set(r) == set(m.METHODS)
    for method in m.METHODS:
        for shots in ("10", "40"):
            entry = r[method][shots]
            assert {"srocc_mean", "srocc_std", "mse_mean", "mae_mean", "true_srocc_mean", "users"} <= set(entry)
    # taste differs between clusters, so one prior for everyone ranks poorly; personal methods do well
    assert r["general"]["10"]["srocc_mean"] < 0.4
    assert r["finetune"]["40"]["srocc_mean"] > 0.6
    best_baseline = max(r[k]["10"]["srocc_mean"] for k in ("knn", "finetune", "maml"))
    assert r["bayes"]["10"]["srocc_mean"] > best_baseline
    assert r["bayes"]["10"]["true_srocc_mean"] > r["bayes"]["10"]["srocc_mean"]  # ratings are noisy
    assert 0.5 < result.noise_ceiling_srocc < 1.0
    json.dumps(result.to_json())
    table = markdown_table(result)
    assert "| bayes | 10 |" in table and "Noise ceiling" in table
