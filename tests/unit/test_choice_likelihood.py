"""The choice likelihood (multinomial logit with ties and "none") and bayes learning from choices."""

import numpy as np
import pytest

from ppo_client.piaa import methods as m
from ppo_client.piaa.choices import NONE, SAME, ChoiceData, ChoiceModel, log_likelihood

DIM = 6


def _unit(rng, n, dim=DIM):
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _simulated(rng, w, events, k=4, temperature=0.3, images=60):
    """Choices of a person whose utilities are ``x @ w`` plus Gumbel noise (argmax = the logit model)."""
    x = _unit(rng, images)
    shown = [tuple(rng.choice(images, size=k, replace=False)) for _ in range(events)]
    answers = [int(np.argmax(x[list(s)] @ w + temperature * rng.gumbel(size=k))) for s in shown]
    return ChoiceData(x, tuple(shown), tuple(answers))


def test_gradient_and_hessian_match_finite_differences_for_every_answer_kind():
    rng = np.random.default_rng(0)
    x = _unit(rng, 7)
    data = ChoiceData(x, ((0, 1), (2, 3, 4), (1, 5, 6, 0), (3, 4), (0, 2, 6)), (1, 0, SAME, NONE, 2))
    model = ChoiceModel(temperature=0.7, tie_weight=0.4, reference=1.0)
    theta = rng.normal(size=DIM + 1)
    _, gradient, hessian = log_likelihood(theta, data, model)
    eps = 1e-6
    numeric_gradient = np.array([(log_likelihood(theta + eps * e, data, model)[0]
                                  - log_likelihood(theta - eps * e, data, model)[0]) / (2 * eps) for e in np.eye(DIM + 1)])
    numeric_hessian = np.stack([(log_likelihood(theta + eps * e, data, model)[1]
                                 - log_likelihood(theta - eps * e, data, model)[1]) / (2 * eps) for e in np.eye(DIM + 1)])
    np.testing.assert_allclose(gradient, numeric_gradient, atol=1e-6)
    np.testing.assert_allclose(hessian, numeric_hessian, atol=1e-5)
    assert np.all(np.linalg.eigvalsh(hessian) <= 1e-9)  # concave


def test_a_pair_is_bradley_terry_with_a_tie_and_a_none_alternative():
    x = np.eye(2)
    data = ChoiceData(x, ((0, 1),), (0,))
    model = ChoiceModel(temperature=1.0, tie_weight=0.5, reference=0.0)
    theta = np.array([2.0, 1.0, 0.0])
    value, _, _ = log_likelihood(theta, data, model)
    expected = np.exp(2.0) / (np.exp(2.0) + np.exp(1.0) + 0.5 * np.exp(1.5) + 1.0)
    assert value == pytest.approx(np.log(expected))


def test_a_known_head_is_recovered_from_synthetic_choices():
    rng = np.random.default_rng(1)
    w = rng.normal(size=DIM) * 3
    data = _simulated(rng, w, events=300)
    posterior = m.bayes_posterior(m.lone_bayes_priors(DIM), np.zeros((0, DIM)), np.zeros(0), choices=data)
    learnt = posterior.mean[:-1]
    assert learnt @ w / np.linalg.norm(learnt) / np.linalg.norm(w) > 0.95
    assert posterior.temperature is not None


def test_all_ties_leave_a_flat_head_and_deterministic_choices_a_confident_one():
    rng = np.random.default_rng(2)
    w = rng.normal(size=DIM) * 3
    priors = m.lone_bayes_priors(DIM)
    deterministic = _simulated(rng, w, events=200, temperature=1e-3)
    ties = ChoiceData(deterministic.x, deterministic.shown, (SAME,) * len(deterministic))
    empty = np.zeros((0, DIM)), np.zeros(0)
    flat = m.bayes_posterior(priors, *empty, choices=ties)
    confident = m.bayes_posterior(priors, *empty, choices=deterministic)
    assert np.linalg.norm(flat.mean[:-1]) < 0.25 * np.linalg.norm(confident.mean[:-1])
    _, prior_variance = m.bayes_posterior(priors, *empty).predictive(deterministic.x)
    _, variance = confident.predictive(deterministic.x)
    assert np.mean(variance) < 0.2 * np.mean(prior_variance)
    # and a temperature far above the utilities' spread teaches almost nothing: the prior comes back
    hot = m.bayes_posterior(priors, *empty, choices=deterministic, config=m.MethodConfig(bayes_temperature_factors=(1e4,)))
    np.testing.assert_allclose(hot.mean, priors.bayes_means[0], atol=0.1)  # the prior sd is 3
    np.testing.assert_allclose(hot.covariance, priors.bayes_covariance, rtol=0.02, atol=0.02)


def _conjugate_posterior(priors, x, y):
    """bayes' posterior as it was computed before choices (ratings only, in closed form)."""
    a, noise, covariance = m.design(x), priors.bayes_noise, priors.bayes_covariance
    precision = np.linalg.inv(covariance)
    posterior_cov = np.linalg.inv(precision + a.T @ a / noise)
    marginal = a @ covariance @ a.T + noise * np.eye(len(y))
    marginal_inv = np.linalg.inv(marginal)
    _, logdet = np.linalg.slogdet(marginal)
    log_weights, heads = [], []
    for mean, weight in zip(priors.bayes_means, priors.bayes_weights, strict=True):
        residual = y - a @ mean
        log_weights.append(np.log(weight + 1e-12) - 0.5 * residual @ marginal_inv @ residual - 0.5 * logdet)
        heads.append(posterior_cov @ (precision @ mean + a.T @ y / noise))
    weights = np.exp(np.array(log_weights) - max(log_weights))
    return np.stack(heads), weights / weights.sum(), posterior_cov


def test_with_ratings_only_bayes_is_the_conjugate_posterior_as_before():
    rng = np.random.default_rng(3)
    heads = rng.normal(size=(40, DIM + 1)) + np.repeat(rng.normal(size=(4, DIM + 1)) * 4, 10, axis=0)
    priors = m.Priors(10, heads.mean(0), 5, 0, bayes_noise=0.8, **m._bayes_prior(heads, 4, 0.1, seed=0))
    x = _unit(rng, 12)
    y = x @ heads[5, :-1] + heads[5, -1] + rng.normal(size=12) * 0.5
    posterior = m.bayes_posterior(priors, x, y)
    expected_heads, expected_weights, expected_cov = _conjugate_posterior(priors, x, y)
    np.testing.assert_allclose(posterior.heads, expected_heads, atol=1e-8)
    np.testing.assert_allclose(posterior.weights, expected_weights, atol=1e-8)
    np.testing.assert_allclose(posterior.covariance, expected_cov, atol=1e-8)
    assert posterior.temperature is None


def test_methods_other_than_bayes_refuse_choices_naming_them():
    rng = np.random.default_rng(4)
    data = _simulated(rng, np.ones(DIM), events=3)
    with pytest.raises(ValueError, match="cannot learn from choices"):
        m.adapt("knn", None, _unit(rng, 5), np.arange(5.0), choices=data)
