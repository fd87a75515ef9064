"""Virtual users: strict specs, calibrated noise, and tastes that are learnable yet personal."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from ppo_client.errors import PPOError
from ppo_demo.attributes import ATTRIBUTES, measure, measure_many
from ppo_demo.errors import PersonaError
from ppo_demo.personas import (
    ARCHETYPES,
    ATTRIBUTE_MEANS,
    ATTRIBUTE_STDS,
    Persona,
    attribute_statistics,
    default_persona,
    load_persona,
    make_persona,
    population,
    rate,
    rate_many,
    save_persona,
    score_image,
    test_retest,
    true_score,
    true_scores,
)
from ppo_demo.scenes import example

SPEC = {
    "version": 1,
    "name": "ana",
    "archetype": "warm-minimalist",
    "weights": {"warmth": 1.0, "clutter": -0.7, "pattern_energy": -0.8},
    "bias": 0.2,
    "scale": 1.1,
    "noise": 1.5,
}


@pytest.fixture(scope="module")
def held_out() -> np.ndarray:
    """Attributes of 300 procedural scenes the constants were not measured on."""
    return measure_many(example(seed)[0] for seed in range(10_000, 10_300))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


# --- spec ---


def test_a_valid_spec_loads_and_missing_weights_count_as_zero():
    persona = Persona.from_dict(SPEC)
    assert persona.weights["warmth"] == 1.0
    assert persona.weight_vector[ATTRIBUTES.index("brightness")] == 0.0
    assert persona.to_dict() == SPEC


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"colour": "red"}, "colour"),
        ({"weights": {"warmth": "high"}}, "weights.warmth"),
        ({"weights": {"warmth": True}}, "weights.warmth"),
        ({"weights": {"hue": 1.0}}, "hue"),
        ({"weights": {"warmth": 0.0}}, "weights"),
        ({"scale": 0}, "scale"),
        ({"noise": -0.1}, "noise"),
        ({"bias": None}, "bias"),
        ({"bias": float("nan")}, "bias"),
        ({"version": 2}, "version"),
        ({"name": ""}, "name"),
    ],
)
def test_a_bad_spec_is_rejected_with_a_message_naming_the_field(change, named):
    with pytest.raises(PersonaError, match=named) as raised:
        Persona.from_dict({**SPEC, **change})
    assert isinstance(raised.value, PPOError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize("missing", ["version", "name", "archetype", "weights", "bias", "scale", "noise"])
def test_a_missing_field_is_rejected_by_name(missing):
    spec = {k: v for k, v in SPEC.items() if k != missing}
    with pytest.raises(PersonaError, match=f"^{missing}: missing field"):
        Persona.from_dict(spec)


def test_a_spec_that_is_not_an_object_or_not_json_is_rejected(tmp_path):
    with pytest.raises(PersonaError):
        Persona.from_dict([SPEC])
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(PersonaError, match="broken.json"):
        load_persona(path)


def test_save_then_load_gives_an_equal_persona(tmp_path):
    persona = make_persona("clean-geometric", 7)
    path = tmp_path / "persona.json"
    save_persona(persona, path)
    assert load_persona(path) == persona
    assert json.loads(path.read_text())["version"] == 1
    assert hash(load_persona(path)) == hash(persona)


def test_a_persona_is_immutable():
    persona = Persona.from_dict(SPEC)
    with pytest.raises(AttributeError):
        persona.bias = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        persona.weights["warmth"] = 2.0  # type: ignore[index]


# --- archetypes ---


def test_make_persona_is_deterministic_and_seeds_make_different_people():
    assert make_persona("pastel-soft", 3) == make_persona("pastel-soft", 3)
    assert make_persona("pastel-soft", 3) != make_persona("pastel-soft", 4)
    assert make_persona("pastel-soft", 3, name="zoe").name == "zoe"
    with pytest.raises(PersonaError, match="archetype"):
        make_persona("nobody", 0)


def test_population_is_deterministic_and_covers_every_archetype():
    users = population(12, seed=5)
    assert users == population(12, seed=5)
    assert len(ARCHETYPES) >= 5
    assert {u.archetype for u in users} == set(ARCHETYPES)
    assert len({u.name for u in users}) == 12


def test_the_population_statistics_constants_match_a_fresh_measurement():
    means, stds = attribute_statistics(range(5_000, 5_200))
    assert np.all(np.abs(means - ATTRIBUTE_MEANS) < 0.3 * ATTRIBUTE_STDS + 0.01), ATTRIBUTES
    assert np.all((stds > 0.7 * ATTRIBUTE_STDS) & (stds < 1.4 * ATTRIBUTE_STDS)), ATTRIBUTES


# --- rating ---


def test_ratings_are_integers_from_1_to_10_and_true_scores_stay_in_range(held_out):
    persona = make_persona("vivid-maximalist", 1)
    rng = np.random.default_rng(0)
    ratings = rate_many(persona, held_out, rng)
    assert ratings.dtype.kind == "i" and ratings.min() >= 1 and ratings.max() <= 10
    one = rate(persona, held_out[0], rng)
    assert isinstance(one, int) and 1 <= one <= 10
    scores = true_scores(persona, held_out)
    assert scores.min() >= 1.0 and scores.max() <= 10.0
    extreme = Persona.from_dict({**SPEC, "scale": 1e6})
    assert 1.0 <= true_score(extreme, held_out[0]) <= 10.0


def test_a_noise_free_persona_rates_its_rounded_true_score(held_out):
    persona = Persona.from_dict({**SPEC, "noise": 0.0})
    ratings = rate_many(persona, held_out, np.random.default_rng(0))
    np.testing.assert_array_equal(ratings, np.clip(np.rint(true_scores(persona, held_out)), 1, 10))


def test_a_measure_dict_a_row_and_an_image_give_the_same_score():
    image = example(11)[0]
    persona = default_persona("dark-moody")
    attrs = measure(image)
    row = np.array([attrs[name] for name in ATTRIBUTES])
    assert true_score(persona, attrs) == pytest.approx(true_score(persona, row))
    assert score_image(persona, image) == pytest.approx(true_score(persona, attrs))


def test_the_taste_follows_its_weights():
    persona = Persona.from_dict({**SPEC, "weights": {"brightness": 1.0}, "bias": 0.0})
    dark, bright = ATTRIBUTE_MEANS.copy(), ATTRIBUTE_MEANS.copy()
    dark[0], bright[0] = 0.2, 0.8
    assert true_score(persona, bright) > true_score(persona, ATTRIBUTE_MEANS) > true_score(persona, dark)
    assert true_score(persona, ATTRIBUTE_MEANS) == pytest.approx(5.5)


@pytest.mark.parametrize("archetype", list(ARCHETYPES))
def test_each_archetype_is_as_reliable_as_a_real_rater(archetype, held_out):
    assert 0.6 <= test_retest(default_persona(archetype), held_out, seed=0) <= 0.8


def test_drawn_personas_stay_reliable(held_out):
    reliabilities = [test_retest(p, held_out, seed=1) for p in population(24, seed=2)]
    assert 0.55 <= min(reliabilities) and max(reliabilities) <= 0.85
    assert 0.65 <= float(np.median(reliabilities)) <= 0.75


def test_true_scores_spread_over_most_of_the_scale(held_out):
    for archetype in ARCHETYPES:
        scores = true_scores(make_persona(archetype, 0), held_out)
        low, high = np.percentile(scores, [5, 95])
        assert scores.std() > 1.5 and high - low > 5.0, archetype


def test_archetypes_disagree_and_people_of_one_archetype_agree_more(held_out):
    scores = {a: [true_scores(make_persona(a, seed), held_out) for seed in range(3)] for a in ARCHETYPES}
    within = [spearman(x, y) for a in ARCHETYPES for x, y in itertools.combinations(scores[a], 2)]
    between = [
        spearman(x, y) for a, b in itertools.combinations(ARCHETYPES, 2) for x in scores[a] for y in scores[b]
    ]
    assert np.mean(between) < 0.2
    assert np.mean(np.abs(between)) < 0.35
    assert np.mean(within) > np.mean(between) + 0.4
    for a in ARCHETYPES:
        mine = [spearman(x, y) for x, y in itertools.combinations(scores[a], 2)]
        theirs = [spearman(x, y) for b in ARCHETYPES if b != a for x in scores[a] for y in scores[b]]
        assert np.mean(mine) > np.mean(theirs), a
