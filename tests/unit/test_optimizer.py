"""The optimization loop without a server: proposers, the run folder, resume, and the metrics."""

from __future__ import annotations

import dataclasses
import json

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ppo_client import text
from ppo_client.errors import InvalidRequestError, OptimizationError
from ppo_client.head import PreferenceHead
from ppo_client.llm.chat import ChatClient, ChatConfig
from ppo_client.optimize import metrics
from ppo_client.optimize.config import Context, Optimizer, RunConfig
from ppo_client.optimize.folder import ITERATIONS, RunInfo, create_run, load_run
from ppo_client.optimize.loop import run_iterations
from ppo_client.optimize.proposers import GA_MAX_KEYWORDS, GeneticProposer, LLMProposer, RandomProposer, ScoredPrompt
from ppo_client.optimize.records import IterationRecord, RenderedPrompt, Timings

INITIAL = "a red circle on a blue background"


def keep_all(prompts):
    return list(prompts)


class ScriptedLLM:
    """An OpenAI-compatible endpoint (httpx mock transport) that answers from a script and records requests."""

    def __init__(self, replies):
        self.replies, self.requests = list(replies), []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        text = self.replies.pop(0) if self.replies else "no idea"
        return httpx.Response(200, json={"choices": [{"message": {"content": text}}]})

    def client(self) -> ChatClient:
        return ChatClient(ChatConfig("http://llm.invalid/v1"), transport=httpx.MockTransport(self.handler), sleep=lambda s: None)


def history():
    return [[ScoredPrompt(INITIAL, 4.0, "blue"), ScoredPrompt(f"{INITIAL}, bright", 6.5, "bright"),
             ScoredPrompt(f"{INITIAL}, dark", 2.0, "dark")]]


def test_the_none_context_shows_prompts_but_no_scores():
    llm = ScriptedLLM(['["a red circle, watercolor", "a red circle at dusk"]'])
    proposal = LLMProposer(llm.client(), "none").propose(INITIAL, history(), 2, np.random.default_rng(0), set(), keep_all)
    assert proposal.prompts == ["a red circle, watercolor", "a red circle at dusk"] and proposal.fallback == 0
    text = llm.requests[0]["messages"][1]["content"]
    assert f"{INITIAL}, bright" in text and "6.5" not in text and "score" not in text.lower().split("higher")[0]


def test_the_sp_context_lists_the_history_best_last():
    llm = ScriptedLLM(['["a red circle, soft light", "a red circle, pastel"]'])
    LLMProposer(llm.client(), "s+p").propose(INITIAL, history(), 2, np.random.default_rng(0), set(), keep_all)
    text = llm.requests[0]["messages"][1]["content"]
    assert text.index("2.00") < text.index("4.00") < text.index("6.50")
    assert len(llm.requests) == 1  # no feedback call


def test_the_spf_context_asks_for_feedback_with_image_descriptions_first():
    llm = ScriptedLLM(["Brighter images score higher.", '["a bright red circle on blue", "a glowing red circle on blue"]'])
    proposal = LLMProposer(llm.client(), "s+p+f").propose(INITIAL, history(), 2, np.random.default_rng(0), set(), keep_all)
    assert proposal.feedback == "Brighter images score higher."
    assert "image shows: bright" in llm.requests[0]["messages"][1]["content"]
    assert "Brighter images score higher." in llm.requests[1]["messages"][1]["content"]


def test_the_image_context_sends_the_best_images():
    llm = ScriptedLLM(["Red wins.", '["a red circle, vivid", "a red circle, glossy"]'])
    items = [[ScoredPrompt(p.prompt, p.score, p.description, Image.new("RGB", (8, 8))) for p in history()[0]]]
    LLMProposer(llm.client(), "s+p+f+I").propose(INITIAL, items, 2, np.random.default_rng(0), set(), keep_all)
    for request in llm.requests:
        parts = request["messages"][1]["content"]
        assert sum(part["type"] == "image_url" for part in parts) == 3


def test_unusable_replies_are_retried_then_filled_in_by_keyword_mutation():
    llm = ScriptedLLM(["Sure!", "prompt1\nscore2"])
    seen = {sp.prompt.lower() for sp in history()[0]}
    proposal = LLMProposer(llm.client(), "s+p").propose(INITIAL, history(), 3, np.random.default_rng(0), set(seen), keep_all)
    assert len(llm.requests) == 2 and proposal.fallback == 3 and len(set(proposal.prompts)) == 3
    assert all(p.startswith(INITIAL) and p.lower() not in seen for p in proposal.prompts)  # edits of the best prompts


def test_when_the_best_prompts_are_too_long_to_mutate_the_fallback_mutates_the_users_prompt():
    long = f"{INITIAL}, " + ", ".join(f"word{i}" for i in range(30))
    latest = [[ScoredPrompt(long, 7.0), ScoredPrompt(f"{long}, more", 6.0)]]

    def short_only(prompts):
        return [p for p in prompts if len(p) <= len(INITIAL) + 60]

    llm = ScriptedLLM([f'["{long}, again"]', f'["{long}, again"]'])
    proposal = LLMProposer(llm.client(), "s+p").propose(INITIAL, latest, 3, np.random.default_rng(0), set(), short_only)
    assert proposal.fallback == 3 and len(set(proposal.prompts)) == 3
    assert all(p.startswith(f"{INITIAL}, ") and "word" not in p for p in proposal.prompts)


def test_baselines_propose_new_distinct_prompts_deterministically():
    for proposer in (RandomProposer(), GeneticProposer()):
        first = proposer.initial(INITIAL, 6, np.random.default_rng(1), set(), keep_all).prompts
        again = proposer.initial(INITIAL, 6, np.random.default_rng(1), set(), keep_all).prompts
        assert first == again and len(set(first)) == 6 and all(p.startswith(INITIAL) for p in first)
    ga = GeneticProposer()
    scored = [[ScoredPrompt(p, float(i)) for i, p in enumerate(first)]]
    children = ga.propose(INITIAL, scored, 8, np.random.default_rng(2), {p.lower() for p in first}, keep_all).prompts
    assert len(children) == 8 and not set(children) & set(first)
    assert all(ga.mask(INITIAL, c).sum() <= GA_MAX_KEYWORDS for c in children)
    assert ga.prompt(INITIAL, ga.mask(INITIAL, children[0])) == children[0]


def test_run_configuration_is_checked():
    with pytest.raises(InvalidRequestError, match="prompt: is empty"):
        RunConfig("u", "  ").checked()
    with pytest.raises(InvalidRequestError, match="seeds: must be an integer from 1 to 8"):
        RunConfig("u", "a cat", seeds=9).checked()
    with pytest.raises(InvalidRequestError, match="iterations"):
        RunConfig("u", "a cat", iterations=0).checked()
    with pytest.raises(InvalidRequestError, match="context: must be one of none, s\\+p, s\\+p\\+f, s\\+p\\+f\\+I"):
        RunConfig("u", "a cat", context="all").checked()
    with pytest.raises(InvalidRequestError, match="optimizer"):
        RunConfig("u", "a cat", optimizer="annealing")


CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
any_json = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | st.lists(st.integers(), max_size=2)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(CONFIG_FIELDS)), any_json, max_size=4))
def test_any_run_configuration_is_checked_into_a_valid_one_or_refused_naming_a_field(changes):
    """What the CLI, the app and an edited config.json may hand over: one check for all."""
    try:
        config = RunConfig.from_dict({**RunConfig("u", "a cat").to_dict(), **changes}).checked()
    except InvalidRequestError as exc:
        assert exc.field in CONFIG_FIELDS, exc
        return
    assert 0 <= config.seed_values[0] and config.seed_values[-1] + 1_000_000 < 2**63
    assert config.prompt.strip() and not text.hidden(config.prompt)
    for name in ("iterations", "n_prompts", "seeds", "screen", "seed", "top_k", "steps"):
        assert type(getattr(config, name)) is int, name


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70, 1.5, float("nan"), "7", True, None])
def test_a_run_seed_outside_its_range_or_not_an_integer_is_refused(seed):
    with pytest.raises(InvalidRequestError, match="^seed: must be an integer from 0 to 4294967295"):
        RunConfig("u", "a cat", seed=seed).checked()


def test_a_prompt_with_escape_codes_or_bidi_overrides_is_refused():
    for prompt in ("a \x1b[31mred cat", "a cat\u202e", "a\x00cat", "a \ud800 cat"):
        with pytest.raises(InvalidRequestError, match="prompt: contains control or format characters"):
            RunConfig("u", prompt).checked()


def test_a_run_configuration_round_trips_through_json_with_its_enums():
    config = RunConfig("u", "a cat", context="s+p", optimizer="ga", subject_anchor="on")
    assert config.context is Context.SCORES_PROMPTS and config.optimizer is Optimizer.GA
    data = json.loads(json.dumps(config.to_dict()))
    assert data["context"] == "s+p" and RunConfig.from_dict(data) == config


class FakeRenderer:
    """Scores a prompt by how many of the words 'bright' and 'pastel' it has; 'true' taste likes 'pastel' only."""

    scheduler = "pndm"

    def __init__(self):
        self.rendered = []
        self.server_seconds = 0.0

    def render(self, prompts, folder, iteration):
        self.rendered.append(list(prompts))
        out = []
        for prompt in prompts:
            score = 4.0 + prompt.count("bright") + prompt.count("pastel")
            truth = 4.0 + prompt.count("pastel")
            out.append(RenderedPrompt(prompt=prompt, scores=[score, score], score=score, images=["a.png", "b.png"], best=0,
                                      embeddings=[[1.0, 0.0], [1.0, 0.0]], description="x", true_scores=[truth] * 2,
                                      true_score=truth))
        return out


def record(iteration: int, prompts: list[str], timings: Timings) -> IterationRecord:
    return IterationRecord(iteration, [0, 1], FakeRenderer().render(prompts, None, iteration), timings=timings)


def test_an_iteration_record_round_trips_through_its_json_line():
    original = record(1, [INITIAL, f"{INITIAL}, pastel"], Timings(total_s=2.0, llm_s=1.0))
    original.prompts[0].predicted = 4.5
    line = json.dumps(original.to_dict())
    assert IterationRecord.from_dict(json.loads(line)) == original
    data = json.loads(line)
    assert data["timings"]["llm_s"] == 1.0 and "predicted" not in data["prompts"][1] and "initial" not in data["prompts"][0]


def test_a_run_killed_mid_way_resumes_without_redoing_finished_iterations(tmp_path):
    config = RunConfig("u", INITIAL, iterations=4, n_prompts=2, seeds=2, optimizer="random")
    state = create_run(tmp_path / "run", config, PreferenceHead.linear(np.ones(2), 0.0), RunInfo(),
                       (np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([9.0, 2.0])))
    renderer = FakeRenderer()

    def stop_after_two(record):
        if record.iteration == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_iterations(state, RandomProposer(), renderer, keep_all, on_iteration=stop_after_two)
    state.close()  # as the killed process's exit would
    with open(tmp_path / "run" / ITERATIONS, "a") as handle:
        handle.write('{"iteration": 2, "prom')  # a crash in the middle of writing
    resumed = load_run(tmp_path / "run")
    assert [r.iteration for r in resumed.records] == [0, 1]
    run_iterations(resumed, RandomProposer(), renderer, keep_all)
    assert [len(p) for p in renderer.rendered] == [3, 2, 2, 2, 2]  # iterations 0 and 1 were not redone
    lines = (tmp_path / "run" / ITERATIONS).read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [0, 1, 2, 3, 4]
    all_prompts = [p.prompt for r in resumed.records for p in r.prompts]
    assert len(all_prompts) == len(set(all_prompts))
    resumed.close()
    with pytest.raises(OptimizationError, match="already holds a run"):
        create_run(tmp_path / "run", config, PreferenceHead.linear(np.ones(2), 0.0), RunInfo(), (np.zeros((0, 2)), np.zeros(0)))


def test_the_summary_follows_the_papers_definitions(tmp_path):
    records = [
        record(0, [INITIAL, f"{INITIAL}, bright"], Timings(total_s=2.0, llm_s=1.0, render_s=0.5)),
        record(1, [f"{INITIAL}, pastel, bright", f"{INITIAL}, dark"], Timings(total_s=2.0, llm_s=1.0, render_s=0.5)),
        record(2, [f"{INITIAL}, pastel"], Timings(total_s=1.0, llm_s=0.0, render_s=1.0)),
    ]
    reference = (np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32), np.array([3.0, 9.0, 8.0]))
    s = metrics.summarize(records, *reference, quantile=0.5)
    assert (s["init"], s["max"], s["max_minus_init"], s["k_star"]) == (4.0, 6.0, 2.0, 1)
    assert s["best_so_far"] == [5.0, 6.0, 6.0]
    assert s["max_sim"] == pytest.approx(0.6)  # high-rated: ratings >= 8 (the 0.5 quantile)
    assert s["score_of_most_sim"] == 3.0  # the most similar rated image overall was rated 3
    assert (s["true_init"], s["true_max"], s["true_best"]) == (4.0, 5.0, 5.0)
    assert s["true_best_so_far"] == [4.0, 5.0, 5.0]
    assert s["timings"] == {"total_s": 5.0, "llm_s": 2.0, "render_s": 2.0, "server_s": 0.0, "other_s": 1.0}


def test_the_report_opens_with_the_users_prompt_beside_the_best_one(tmp_path):
    from ppo_client.optimize.report import write_report

    records = [
        record(0, [INITIAL, f"{INITIAL}, dark"], Timings(total_s=1.0, render_s=1.0)),
        record(1, [f"{INITIAL}, pastel, bright", f"{INITIAL}, dark, matte"], Timings(total_s=1.0, render_s=1.0)),
    ]
    summary = metrics.summarize(records, np.zeros((0, 2), np.float32), np.zeros(0), quantile=0.5)
    config = RunConfig("u", INITIAL, iterations=1, n_prompts=2, optimizer="random", context="s+p").to_dict()
    page = write_report(tmp_path, config, records, summary).read_text()
    pair = page[page.index("<div class=pair>"):page.index("</div>")]
    assert page.index("<div class=pair>") < page.index("<svg")  # before the curve and the tables
    assert pair.index("your prompt") < pair.index(INITIAL) < pair.index("best prompt") < pair.index(f"{INITIAL}, pastel, bright")
    assert pair.count("width=320") == 2
