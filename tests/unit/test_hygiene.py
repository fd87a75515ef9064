"""Prompt hygiene: one side of each contradiction group, a word budget, edits that add, remove and replace."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from ppo_client.llm.chat import ChatClient, ChatConfig
from ppo_client.optimize import hygiene
from ppo_client.optimize.hygiene import PromptRules
from ppo_client.optimize.proposers import GeneticProposer, LLMProposer, RandomProposer, ScoredPrompt
from ppo_client.optimize.vocabulary import CONFLICTS, MODIFIERS

INITIAL = "a red circle on a blue background"
RULES = PromptRules.for_prompt(INITIAL)


def keep_all(prompts):
    return list(prompts)


def test_contradictions_are_whole_phrases_of_two_sides():
    assert [(a, b) for _, a, b in hygiene.contradictions("a cat, warm colors, cool colors")] == [("warm colors", "cool colors")]
    assert hygiene.contradictions("a cat, desaturated, sharp focus") == []  # "saturated" inside "desaturated" is not a hit
    assert hygiene.contradictions("a cat, blurry, highly detailed, sharp focus") != []
    assert RULES.problems("a cat, " + ", ".join(["highly detailed"] * 20)) == [f"has {2 + 40} words (budget {RULES.max_words})"]


def test_tidy_keeps_the_latest_keyword_and_yields_to_the_base():
    assert RULES.tidy(f"{INITIAL}, warm colors, matte, cool colors") == f"{INITIAL}, matte, cool colors"
    assert RULES.tidy("a dark forest, bright, moody") == "a dark forest, moody"  # the base says dark
    assert RULES.tidy("a cat, glossy and matte, bokeh") == "a cat, bokeh"  # a segment at odds with itself goes
    assert RULES.tidy("a blurry photo with sharp focus of a cat") is None
    long = f"{INITIAL}, " + ", ".join(MODIFIERS[:12])  # 12 keywords, some of them contradicting others
    tidy = RULES.tidy(long)
    assert tidy is not None and not RULES.problems(tidy) and tidy.startswith(INITIAL)
    assert tidy.endswith(MODIFIERS[11])  # the earliest keywords went first


def test_the_persons_own_prompt_is_theirs():
    own = "a warm colors and cool colors study of " + " ".join(["a"] * 30) + " cat"
    rules = PromptRules.for_prompt(own)
    assert rules.max_words == hygiene.words(own) + hygiene.SLACK_WORDS and not rules.problems(own)
    assert rules.tidy(f"{own}, matte") == f"{own}, matte"
    assert rules.tidy(f"{own}, blurry, sharp focus") == f"{own}, sharp focus"


@pytest.mark.parametrize("prompt", [
    INITIAL, f"{INITIAL}, warm colors, sharp focus, minimalist", "portrait of a cat, oil painting",
    "a warm colors and cool colors study", " ".join(["word"] * 40),
])
def test_edits_of_any_prompt_stay_clean_and_do_all_three_things(prompt):
    rules = PromptRules.for_prompt(prompt)
    base, keywords = hygiene.split(prompt)
    rng = np.random.default_rng(0)
    fewer = more = swapped = 0
    for _ in range(400):
        edited = rules.edit(prompt, rng)
        assert edited is not None and not rules.problems(edited)
        new_base, new_keywords = hygiene.split(edited)
        assert new_base == base
        fewer += len(new_keywords) < len(keywords)
        more += len(new_keywords) > len(keywords)
        swapped += len(new_keywords) == len(keywords) and new_keywords != keywords
    assert more > 0
    if keywords:
        assert fewer > 0 and swapped > 0


def test_every_keyword_of_the_vocabulary_is_one_side_of_at_most_each_group():
    for group in CONFLICTS:
        phrases = [p for side in group for p in side]
        assert len(phrases) == len(set(phrases))
    assert all(len(hygiene.sides_in(word)) <= 3 for word in MODIFIERS)


def test_baselines_never_propose_a_contradiction_or_an_overlong_prompt():
    rng = np.random.default_rng(3)
    seen: set[str] = set()
    prompts = RandomProposer().initial(INITIAL, 16, rng, seen, keep_all).prompts
    ga = GeneticProposer()
    generation = ga.initial(INITIAL, 16, rng, seen, keep_all).prompts
    prompts += generation
    for _ in range(10):
        scored = [[ScoredPrompt(p, float(rng.random())) for p in generation]]
        generation = ga.propose(INITIAL, scored, 8, rng, seen, keep_all).prompts
        prompts += generation
    assert len(prompts) == 16 + 16 + 80
    assert [p for p in prompts if RULES.problems(p)] == []


def test_the_llms_prompts_are_tidied_before_they_are_kept():
    reply = json.dumps([f"{INITIAL}, warm colors, cool colors", "a blurry red circle in sharp focus", f"{INITIAL}, matte"])

    def handler(request):
        return httpx.Response(200, json={"choices": [{"message": {"content": reply}}]})

    chat = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(handler), sleep=lambda s: None)
    history = [[ScoredPrompt(INITIAL, 4.0)]]
    proposal = LLMProposer(chat, "s+p").propose(INITIAL, history, 2, np.random.default_rng(0), {INITIAL}, keep_all)
    assert proposal.prompts == [f"{INITIAL}, cool colors", f"{INITIAL}, matte"] and proposal.fallback == 0


def test_an_llm_prompt_that_tidying_leaves_too_short_is_dropped():
    reply = json.dumps(["x , , ,", f"{INITIAL}, matte"])

    def handler(request):
        return httpx.Response(200, json={"choices": [{"message": {"content": reply}}]})

    chat = ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(handler), sleep=lambda s: None)
    proposal = LLMProposer(chat, "s+p").propose(INITIAL, [[ScoredPrompt(INITIAL, 4.0)]], 2, np.random.default_rng(0), {INITIAL}, keep_all)
    assert proposal.prompts[0] == f"{INITIAL}, matte" and "x" not in proposal.prompts and proposal.fallback == 1
