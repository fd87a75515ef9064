"""The mix optimizer without a server: the proposer bandit, a failing LLM, previews, cost, resume."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from ppo_client.head import PreferenceHead
from ppo_client.llm.chat import ChatClient, ChatConfig
from ppo_client.optimize import metrics, mix, screen
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.cost import unet_evaluations
from ppo_client.optimize.folder import ITERATIONS, RunInfo, create_run, load_run
from ppo_client.optimize.loop import run_iterations
from ppo_client.optimize.proposers import ScoredPrompt
from tests.unit.test_optimizer import INITIAL, FakeRenderer, keep_all
from tests.unit.test_screen import WordClient, WordProposer

GOOD = ("bright", "pastel", "bright pastel", "pastel light", "bright glow", "pastel sky", "bright day", "pastel tones")
PLAIN = ("matte", "grainy", "retro", "misty", "calm", "bold", "neon", "bokeh")


class PreviewRenderer(FakeRenderer):
    """``FakeRenderer``'s taste, previewed with a little noise that shrinks with the steps."""

    def __init__(self):
        super().__init__()
        self.previewed = []

    def preview(self, prompts, steps):
        self.previewed.append((list(prompts), steps))
        rng = np.random.default_rng(len(self.previewed))
        return [[4.0 + p.count("bright") + p.count("pastel") + rng.normal(scale=1.0 / steps)] * 2 for p in prompts]


def make_state(folder, **fields):
    config = RunConfig("u", INITIAL, **{"iterations": 6, "n_prompts": 3, "seeds": 2, "optimizer": "random", **fields})
    return create_run(folder, config, PreferenceHead.linear(np.ones(2), 0.0), RunInfo(),
                      (np.zeros((0, 2), np.float32), np.zeros(0)))


def test_the_bandit_moves_the_pool_towards_the_proposer_whose_prompts_score_higher(tmp_path):
    state = make_state(tmp_path / "run", iterations=8, n_prompts=4)
    proposer = mix.MixProposer({"good": WordProposer(GOOD), "plain": WordProposer(PLAIN)})
    run_iterations(state, proposer, FakeRenderer(), keep_all)  # no screen: the whole pool is rendered
    state.close()
    good = [r.pool["good"]["share"] for r in state.records]
    assert good[0] == pytest.approx(0.5)  # nothing known yet: even
    assert min(good[2:]) > 0.75 and good[1] > 0.5  # and it moves with the evidence
    assert [r.pool["good"]["asked"] + r.pool["plain"]["asked"] for r in state.records] == [4] * 9
    assert all(r.pool["plain"]["asked"] >= 1 for r in state.records)  # the floor keeps the other one tried
    # every rendered prompt says which proposer made it
    assert {p.proposer for r in state.records for p in r.prompts if not p.initial} == {"good", "plain"}
    summary = metrics.summarize(state.records, np.zeros((0, 2), np.float32), np.zeros(0), quantile=0.5)
    assert summary["proposers"]["good"] > summary["proposers"]["plain"] and len(summary["pool_shares"]) == 9


def test_shares_are_a_pure_function_of_the_history():
    history = [[ScoredPrompt(INITIAL, 4.0), ScoredPrompt("a, x", 6.0, proposer="a"), ScoredPrompt("a, y", 3.0, proposer="b")],
               [ScoredPrompt("a, z", 7.0, proposer="a"), ScoredPrompt("a, w", 2.0, proposer="b")]]
    shares = mix.shares(history, ["a", "b"])
    assert shares == mix.shares(history, ["a", "b"]) and sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] > shares["b"] >= mix.FLOOR / 2
    assert mix.allocate({"a": 0.7, "b": 0.2, "c": 0.1}, 12) == {"a": 7, "b": 3, "c": 2}
    assert sum(mix.allocate({"a": 0.9, "b": 0.1}, 3).values()) == 3


class Endpoint:
    """An OpenAI-compatible endpoint (httpx mock transport): answers badly, fails, or times out."""

    def __init__(self, mode):
        self.mode, self.requests = mode, 0

    def handler(self, request):
        self.requests += 1
        if self.mode == "timeout":
            raise httpx.ReadTimeout("the endpoint took too long", request=request)
        if self.mode == "error":
            return httpx.Response(500, json={"error": {"message": "overloaded"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": "I cannot help with that."}}]})

    def client(self):
        return ChatClient(ChatConfig("http://llm.invalid/v1", timeout_s=1.0, max_retries=1),
                          transport=httpx.MockTransport(self.handler), sleep=lambda s: None)


@pytest.mark.parametrize("mode", ["timeout", "error", "nonsense"])
def test_a_run_whose_llm_fails_still_fills_its_pool_with_the_other_proposers_and_says_why(tmp_path, mode):
    endpoint = Endpoint(mode)
    client = WordClient()
    state = make_state(tmp_path / "run", iterations=4, optimizer="mix", screen=3)
    proposer = mix.MixProposer.standard(endpoint.client(), "s+p")
    screener = screen.Screener(client, PreferenceHead.linear(np.zeros(client.d, np.float32), 0.0), 3, 1.0)
    run_iterations(state, proposer, FakeRenderer(), keep_all, screener=screener)
    state.close()
    assert len(state.records) == 5
    for record in state.records:
        assert sum(v["candidates"] for v in record.pool.values()) == 9  # K x N, filled by the GA and random keywords
        assert record.pool["llm"]["error"] and record.pool["evo"]["error"]
        assert {p.proposer for p in record.prompts if not p.initial} <= {"ga", "random"}
    assert any("skipped" in r.pool["llm"]["error"] for r in state.records)  # after failing, it is asked less often
    line = json.loads((state.folder / ITERATIONS).read_text().splitlines()[1])
    assert line["pool"]["llm"]["error"] and line["prompts"][0]["proposer"] in ("ga", "random")


def test_previews_cost_fewer_unet_evaluations_and_choose_what_is_rendered(tmp_path):
    client = WordClient()
    head = PreferenceHead.linear(np.zeros(client.d, np.float32), 0.0)
    state = make_state(tmp_path / "run", iterations=3, screen=4, preview_steps=5, preview=2, guidance_scale=7.5, steps=20)
    renderer = PreviewRenderer()
    run_iterations(state, WordProposer(GOOD + PLAIN), renderer, keep_all, screener=screen.Screener(client, head, 4, 1.0))
    state.close()
    for record, (previewed, steps) in zip(state.records, renderer.previewed, strict=True):
        assert steps == 5 and len(previewed) == 6  # preview x N of the K x N candidates
        rendered = record.prompts[1:] if record.iteration == 0 else record.prompts
        # the N rendered are the previews' best, and carry their preview scores
        assert [p.prompt for p in rendered] == [previewed[i] for i in record.preview["chosen"]]
        assert [p.preview_score for p in rendered] == sorted(record.preview["scores"], reverse=True)[:3]
        cost = record.cost
        assert cost["preview_unet"] == unet_evaluations(5, 6 * 2, 7.5, "euler_a") == 120  # the default preview scheduler
        assert cost["unet"] == unet_evaluations(20, len(record.prompts) * 2, 7.5, "pndm")
        assert cost["preview_unet"] / cost["preview_images"] < cost["unet"] / cost["images"]  # per image: 10 vs 42
        assert cost["total_unet"] <= state.config.planned_unet(record.iteration)
    summary = metrics.summarize(state.records, np.zeros((0, 2), np.float32), np.zeros(0), quantile=0.5)
    assert summary["unet_so_far"][-1] == summary["unet_evaluations"] == sum(r.cost["total_unet"] for r in state.records)
    assert summary["preview_unet"] == 4 * 120 and summary["preview_calibration"] > 0.5


def test_a_unet_budget_stops_the_run_before_it_would_be_overspent(tmp_path):
    config = dict(iterations=50, screen=4, preview_steps=5, steps=20, guidance_scale=7.5)
    shape = RunConfig("u", INITIAL, n_prompts=3, seeds=2, **config)
    budget = shape.planned_unet(0) + 3 * shape.planned_unet(1) + 10
    client = WordClient()
    state = make_state(tmp_path / "run", unet_budget=budget, **config)
    run_iterations(state, WordProposer(GOOD + PLAIN), PreviewRenderer(), keep_all,
                   screener=screen.Screener(client, PreferenceHead.linear(np.zeros(client.d, np.float32), 0.0), 4, 1.0))
    state.close()
    assert len(state.records) == 4 and sum(r.cost["total_unet"] for r in state.records) <= budget
    with pytest.raises(Exception, match="unet_budget"):
        RunConfig("u", INITIAL, unet_budget=10).checked()


def test_a_mix_run_killed_mid_way_resumes_with_its_proposer_shares_and_archive(tmp_path):
    def run(folder, stop_at=None):
        state = make_state(folder, iterations=6, n_prompts=4)
        if stop_at is not None:

            def stop(record):
                if record.iteration == stop_at:
                    raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                run_iterations(state, mix.MixProposer({"good": WordProposer(GOOD), "plain": WordProposer(PLAIN)}),
                               FakeRenderer(), keep_all, on_iteration=stop)
            state.close()
            state = load_run(folder)  # a new process: nothing of the old proposer is left
        run_iterations(state, mix.MixProposer({"good": WordProposer(GOOD), "plain": WordProposer(PLAIN)}),
                       FakeRenderer(), keep_all)
        state.close()
        return state

    straight = run(tmp_path / "straight")
    resumed = run(tmp_path / "resumed", stop_at=3)
    assert [r.pool for r in resumed.records] == [r.pool for r in straight.records]
    assert [[p.prompt for p in r.prompts] for r in resumed.records] == [[p.prompt for p in r.prompts] for r in straight.records]


def test_unet_evaluations_count_guidance_and_the_pndm_warm_up_call():
    assert unet_evaluations(20, 8, 7.5, "euler") == 320 and unet_evaluations(20, 8, 1.0, "euler") == 160
    assert unet_evaluations(20, 8, 7.5, "pndm") == 21 * 8 * 2 and unet_evaluations(1, 8, 7.5, "pndm") == 16
    assert unet_evaluations(20, 8, 7.5) == unet_evaluations(20, 8, 7.5, "pndm")  # unknown: the dearest
    assert unet_evaluations(0, 8, 7.5) == 0


def test_the_mix_and_previews_need_a_screen_and_previews_fewer_steps():
    from ppo_client.errors import InvalidRequestError
    from ppo_client.optimize.experiment import arms

    with pytest.raises(InvalidRequestError, match="screen"):
        RunConfig("u", INITIAL, optimizer="mix", screen=0).checked()
    with pytest.raises(InvalidRequestError, match="preview_steps"):
        RunConfig("u", INITIAL, optimizer="ga", screen=0, preview_steps=4).checked()
    with pytest.raises(InvalidRequestError, match="preview_steps"):
        RunConfig("u", INITIAL, screen=4, preview_steps=20, steps=20).checked()
    default = RunConfig("u", INITIAL, preview_steps=5).checked()  # the default arm, with previews
    assert (default.optimizer, default.context, default.screen, default.exploration) == ("ga", "s+p", 32, 0.0)
    # a run folder written before these fields existed or their defaults moved resumes as it was run:
    # the LLM with feedback, no screen (so no exploration)
    old = RunConfig.from_dict({"user": "u", "prompt": INITIAL}).checked()
    assert (old.optimizer, old.context, old.screen, old.exploration) == ("llm", "s+p+f", 0, 0.0)
    assert RunConfig.from_dict(default.to_dict()) == default
    assert [a.label for a in arms(["mix", "ga"], ["s+p"], [0, 4])] == ["mix s+p +screen4", "ga", "ga +screen4"]


def test_where_no_screen_is_given_each_optimizer_gets_its_own_default_k():
    """Keyword proposers' candidates cost nothing, the LLM's each cost a generation: the CLI, an
    experiment grid and the app each give K per optimizer where the user gave none."""
    from ppo_client.commands import build_parser
    from ppo_client.commands.optimize import _new_config
    from ppo_client.optimize.config import KEYWORD_SCREEN, LLM_SCREEN
    from ppo_client.optimize.experiment import arms

    assert (KEYWORD_SCREEN, LLM_SCREEN) == (32, 4)
    parser = build_parser()

    def screen(*flags: str) -> int:
        return _new_config(parser.parse_args(["optimize", "--user", "u", "--prompt", INITIAL, *flags])).screen

    assert [screen("--optimizer", o) for o in ("ga", "random", "llm", "mix")] == [32, 32, 4, 4]
    assert screen() == RunConfig().screen == 32  # the default optimizer is the GA
    assert [screen("--optimizer", o, "--screen", "8") for o in ("ga", "mix")] == [8, 8]
    assert screen("--optimizer", "llm", "--screen", "0") == 0
    labels = [a.label for a in arms(["ga", "mix"], ["s+p"], [None, 32, 4])]
    assert labels == ["ga +screen32", "ga +screen4", "mix s+p +screen4", "mix s+p +screen32"]

