"""Virtual users' quick answers: picks as noisy as their ratings, descriptions that say their taste."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from ppo_demo.answers import PHRASES, TEMPLATES, choice_retest, choose, describe
from ppo_demo.attributes import ATTRIBUTES
from ppo_demo.personas import ARCHETYPES, ATTRIBUTE_MEANS, ATTRIBUTE_STDS, default_persona, make_persona, true_scores


def random_slates(count: int, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [ATTRIBUTE_MEANS + ATTRIBUTE_STDS * rng.normal(size=(k, len(ATTRIBUTES))) for _ in range(count)]


def test_a_pick_follows_true_taste_more_often_the_less_noisy_the_persona():
    slates = random_slates(400, 4, seed=1)
    persona = make_persona("warm-minimalist", 3)
    agreement = {}
    for noise in (0.0, 1.0, 3.0):
        rng = np.random.default_rng(2)
        noisy = dataclasses.replace(persona, noise=noise)
        agreement[noise] = np.mean([choose(noisy, s, rng) == int(np.argmax(true_scores(persona, s))) for s in slates])
    assert agreement[0.0] == 1.0
    assert 0.25 < agreement[3.0] < agreement[1.0] < 1.0, agreement


def test_two_picks_agree_as_often_as_two_noisy_ratings_order_the_pair_alike():
    """A pick is the argmax of unrounded noisy ratings: its consistency is the ratings' own."""
    persona = make_persona("dark-moody", 5)
    slates = random_slates(3000, 2, seed=3)
    rng = np.random.default_rng(4)
    by_ratings = []
    for slate in slates:
        first, second = (true_scores(persona, slate) + rng.normal(0, persona.noise, 2) for _ in range(2))
        by_ratings.append(np.argmax(first) == np.argmax(second))
    assert choice_retest(persona, slates, seed=5) == pytest.approx(np.mean(by_ratings), abs=0.04)


def test_none_of_them_is_answered_only_below_the_threshold():
    persona = dataclasses.replace(default_persona("pastel-soft"), noise=0.0)
    slate = random_slates(1, 3, seed=6)[0]
    best = true_scores(persona, slate).max()
    rng = np.random.default_rng(0)
    assert choose(persona, slate, rng, none_below=best + 0.01) is None
    assert choose(persona, slate, rng, none_below=best - 0.01) == int(np.argmax(true_scores(persona, slate)))


CUES = r"; no |, not |, without |\. I dislike "


def split(sentence: str) -> tuple[str, list[str]]:
    """The liked part and the disliked phrases of a description written from ``TEMPLATES``."""
    parts = re.split(CUES, sentence)
    return parts[0], parts[1:]


@pytest.mark.parametrize("persona", [default_persona(a) for a in ARCHETYPES] + [make_persona(a, 11) for a in ARCHETYPES],
                         ids=lambda p: p.name)
def test_a_description_names_the_strongest_tastes_on_the_right_side(persona):
    for seed in range(4):
        liked, disliked = split(describe(persona, seed))
        strongest = int(np.argmax(np.abs(persona.weight_vector)))
        weight, (high, low) = persona.weight_vector[strongest], PHRASES[ATTRIBUTES[strongest]]
        if weight > 0:
            assert high in liked and high not in disliked
        else:
            assert (low is not None and low in liked) or high in disliked
        for phrase in disliked:
            column = next(i for i, name in enumerate(ATTRIBUTES) if PHRASES[name][0] == phrase)
            assert persona.weight_vector[column] < 0, (phrase, describe(persona, seed))


def test_one_taste_is_said_in_several_phrasings_and_each_seed_always_in_the_same():
    persona = make_persona("warm-minimalist", 2)
    sentences = {describe(persona, seed) for seed in range(20)}
    openings = {next(o for o, _ in TEMPLATES if s.startswith(o.split("{")[0]) or o.startswith("{likes}")) for s in sentences}
    assert len(sentences) >= 3 and len(openings) >= 3
    assert describe(persona, 7) == describe(persona, 7)


def test_phrases_hold_no_comma_or_and_so_a_reader_can_split_a_sentence():
    for high, low in PHRASES.values():
        for phrase in (high, low):
            assert phrase is None or ("," not in phrase and " and " not in f" {phrase} ")
