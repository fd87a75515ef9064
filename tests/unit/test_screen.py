"""Screening: the calibrated text-embedding predictor, the diverse choice, and the loop that renders N of K x N."""

from __future__ import annotations

import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from ppo_client.head import PreferenceHead
from ppo_client.optimize import metrics, screen
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.folder import RunInfo, create_run
from ppo_client.optimize.loop import run_iterations
from ppo_client.optimize.proposers import Proposal
from ppo_client.piaa.metrics import spearman
from tests.unit.test_optimizer import INITIAL, FakeRenderer, keep_all


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_the_predictor_learns_the_heads_say_and_what_it_misses():
    rng = np.random.default_rng(0)
    d = 16
    w = unit(rng.normal(size=d))
    head = PreferenceHead.linear(w.astype(np.float32), 0.0)
    texts = unit(rng.normal(size=(60, d))).astype(np.float32)
    # the measured score follows the head's text score up to scale and offset (the modality gap)
    scores = 3.0 * (texts @ w) + 5.0 + rng.normal(scale=0.05, size=60)
    p = screen.fit(head, texts[:20], scores[:20])
    assert spearman(p(texts[20:]), scores[20:]) > 0.9
    assert abs(np.mean(p(texts[20:])) - np.mean(scores[20:])) < 0.5 * np.std(scores)
    # a head that ranks these texts backwards is learnt backwards
    assert spearman(screen.fit(head, texts[:20], -scores[:20])(texts[20:]), -scores[20:]) > 0.9
    # a taste the head does not see in texts at all: the kernels on the texts have to find it
    v = unit(rng.normal(size=d) - (rng.normal(size=d) @ w) * w)
    hidden = 4.0 * (texts @ v) + rng.normal(scale=0.05, size=60)
    q = screen.fit(head, texts[:40], hidden[:40])
    assert spearman(q(texts[40:]), hidden[40:]) > 0.5 > abs(spearman(head.score(texts[40:]), hidden[40:]))
    # the posterior's mean is the prediction
    mean, _, _ = q.posterior(texts)
    assert mean == pytest.approx(q(texts))


def test_few_points_give_the_mean_and_a_constant_side_says_nothing():
    head = PreferenceHead.linear(np.ones(4, np.float32), 0.0)
    texts = unit(np.eye(4, dtype=np.float32)[:2])
    p = screen.fit(head, texts, np.array([2.0, 4.0]))
    assert p(texts) == pytest.approx([3.0, 3.0])
    assert screen.calibration([1, 2], [1, 2]) is None and screen.calibration([1, 1, 1], [1, 2, 3]) is None
    assert screen.calibration([1, 2, 3], [2, 4, 9]) == pytest.approx(1.0)


def test_the_choice_is_best_first_without_near_copies():
    texts = np.array([[1, 0, 0], [0.999, 0.04, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    predicted = np.array([9.0, 8.9, 5.0, 1.0])
    assert screen.select(["a", "a2", "b", "c"], predicted, texts, 2) == [0, 2]  # "a2" is a near-copy of "a"
    assert screen.select(["a", "a2", "b", "c"], predicted, texts, 4) == [0, 2, 3, 1]  # copies only when nothing else is left


class WordClient:
    """``embed_texts`` of a served CLIP stand-in: a bag of hashed words, unit length."""

    def __init__(self, d: int = 4096):
        self.d, self.calls = d, 0

    def embed_texts(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.d), np.float32)
        for i, text in enumerate(texts):
            for word in text.replace(",", " ").split():
                out[i, zlib.crc32(word.encode()) % self.d] += 1.0
        return SimpleNamespace(embeddings=unit(out), tokens=[len(t.split()) for t in texts])


class WordProposer:
    """Prompts of the subject plus 1-2 words from a short list (two of which the fake taste likes)."""

    optimizer = "words"
    needs_images = False
    WORDS = ("bright", "pastel", "dark", "matte", "glossy", "bokeh", "grainy", "neon", "misty", "bold", "calm", "retro")

    def __init__(self, words=WORDS):
        self.words = words

    def _draw(self, n, rng, seen):
        out = []
        for _ in range(200 * n):  # a short list can run out of new prompts
            if len(out) == n:
                break
            prompt = ", ".join([INITIAL, *rng.choice(self.words, int(rng.integers(1, 3)), replace=False)])
            if prompt.lower() not in seen:
                seen.add(prompt.lower())
                out.append(prompt)
        return Proposal(out)

    def initial(self, prompt, n, rng, seen, keep):
        return self._draw(n, rng, seen)

    def propose(self, initial, history, n, rng, seen, keep):
        return self._draw(n, rng, seen)


def _run(folder, screened: bool):
    config = RunConfig("u", INITIAL, iterations=6, n_prompts=3, seeds=2, optimizer="random", screen=4 if screened else 0)
    # (the optimizer named here is only what the config records; the loop gets WordProposer)
    client = WordClient()
    # the user's head sees their taste in texts too (the two words it likes), but on its own scale
    weight = np.zeros(client.d, np.float32)
    for word in ("bright", "pastel"):
        weight[zlib.crc32(word.encode()) % client.d] = 0.5
    head = PreferenceHead.linear(weight, 0.0)
    state = create_run(folder, config, head, RunInfo(), (np.zeros((0, client.d), np.float32), np.zeros(0)))
    renderer = FakeRenderer()
    run_iterations(state, WordProposer(), renderer, keep_all, screener=screen.Screener(client, head, 4) if screened else None)
    state.close()
    return state, renderer


def test_a_screened_run_renders_n_of_k_times_n_and_records_how_well_it_predicted(tmp_path):
    state, renderer = _run(tmp_path / "screened", True)
    assert [len(p) for p in renderer.rendered] == [4, 3, 3, 3, 3, 3, 3]
    for record in state.records:
        s = record.screen
        assert s["candidates"] == 12 and len(s["predicted"]) == 3
        assert s["fitted_on"] == (0 if record.iteration == 0 else 4 + 3 * (record.iteration - 1))
        assert max(s["predicted"]) == max(s["candidate_predicted"])  # the best guess is always rendered
        assert set(s["predicted"]) <= set(s["candidate_predicted"])  # the rest best-first, unless near-copies of it
        screened = record.prompts[1:] if record.iteration == 0 else record.prompts
        assert [p.predicted for p in screened] == s["predicted"]
    # before anything is rendered the head alone ranks: its scale, no offset
    first = state.records[0].screen
    assert first["members"] == 0 and state.records[0].prompts[0].predicted is None
    assert state.records[1].screen["members"] == len(screen.LENGTHS) * len(screen.HEAD_WEIGHTS) * len(screen.RIDGE_GRID)
    summary = metrics.summarize(state.records, np.zeros((0, 2), np.float32), np.zeros(0), quantile=0.5)
    assert -1.0 <= summary["screen_calibration"] <= 1.0
    # the fake renderer's two seeds always agree, so nothing but the screen itself bounds its calibration
    assert summary["seed_agreement_pooled"] == pytest.approx(1.0)
    assert summary["calibration_ceiling_pooled"] == pytest.approx(1.0)
    # the fake taste likes two words; a screen that learns them renders better prompts than no screen
    plain, _ = _run(tmp_path / "plain", False)
    later = lambda s: np.mean([p.score for r in s.records[1:] for p in r.prompts])  # noqa: E731
    assert later(state) > later(plain) + 0.3


def test_screening_is_checked():
    from ppo_client.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="screen: must be an integer from 0 to 64"):
        RunConfig("u", "a cat", screen=65).checked()


def test_the_experiment_grid_takes_screens_as_one_more_column():
    from ppo_client.optimize.experiment import arms, markdown

    grid = arms(["llm", "ga"], ["s+p", "s+p+f"], [0, 4])
    assert [a.label for a in grid] == ["llm s+p", "llm s+p+f", "llm s+p +screen4", "llm s+p+f +screen4", "ga", "ga +screen4"]
    assert {a.screen for a in grid if "screen" in a.label} == {4}
    row = {"runs": 2, "llm_s": 1.0, "render_s": 2.0, "screen_calibration": {"mean": 0.41, "std": 0.1}}
    table = markdown({"ga +screen4": row}, general=False)
    assert "screen_calibration" in table and "0.41 ± 0.10" in table


def test_the_acquisition_prefers_the_uncertain_candidate_when_means_tie():
    texts = unit(np.eye(3, dtype=np.float32))
    mean = np.array([5.0, 5.0, 1.0])
    cov = np.diag([0.1, 2.0, 0.1])
    assert screen.acquire(mean, cov, 0.01, texts, 1, exploration=1.0) == [1]
    assert screen.acquire(mean, cov, 0.01, texts, 1, exploration=0.0) == [0]  # greedy: the first of the tie


def test_the_acquisition_picks_a_diverse_batch_without_near_copies():
    rng = np.random.default_rng(0)
    d = 32
    base = unit(rng.normal(size=(6, d)))
    # three near-copies of the best idea, then distinct ideas a little worse
    texts = unit(np.vstack([base[0] + 0.01 * rng.normal(size=(3, d)), base[1:]])).astype(np.float32)
    mean = np.array([6.0, 5.99, 5.98, 5.5, 5.4, 5.3, 1.0, 0.5])
    head = PreferenceHead.linear(np.zeros(d, np.float32), 0.0)
    predictor = screen.fit(head, texts[:0], np.zeros(0))
    _, cov, noise = predictor.posterior(texts)
    chosen = screen.acquire(mean, cov, noise, texts, 4, exploration=1.0)
    assert chosen[0] in (0, 1, 2) and len({0, 1, 2} & set(chosen)) == 1
    similarity = texts[chosen] @ texts[chosen].T
    assert similarity[~np.eye(4, dtype=bool)].max() < 0.9
    # the greedy choice skips exact near-copies only; the batch penalty also spreads a looser cluster
    assert len(set(chosen)) == 4


def test_the_posterior_is_sure_of_what_was_rendered_and_unsure_of_what_is_new():
    rng = np.random.default_rng(1)
    d = 16
    head = PreferenceHead.linear(unit(rng.normal(size=d)).astype(np.float32), 0.0)
    texts = unit(rng.normal(size=(30, d))).astype(np.float32)
    scores = rng.normal(size=30)
    predictor = screen.fit(head, texts[:20], scores[:20])
    _, cov, noise = predictor.posterior(texts)
    sd = np.sqrt(np.diag(cov))
    assert sd[:20].mean() < sd[20:].mean() and noise > 0


@pytest.mark.parametrize(("noise", "seeds"), [(0.3, 2), (1.0, 2), (2.0, 2), (2.0, 4)])
def test_the_calibration_ceiling_is_what_a_screen_that_knew_each_prompts_worth_would_reach(noise, seeds):
    from ppo_client.optimize.records import RenderedPrompt

    rng = np.random.default_rng(7)
    worth = rng.normal(size=800)  # what the prompt's text decides
    scores = worth[:, None] + noise * rng.normal(size=(800, seeds))  # and what each seed adds to it
    prompts = [RenderedPrompt("p", [float(s) for s in row], float(row.mean()), [], 0, []) for row in scores]
    agreement = metrics.seed_agreement(prompts)
    assert agreement is not None and 0 < agreement < 1
    oracle = spearman(worth, scores.mean(axis=1))
    assert metrics.calibration_ceiling(agreement, seeds) == pytest.approx(oracle, abs=0.05)


def test_the_calibration_ceiling_grows_with_seeds_and_agreement_and_says_nothing_without_two_seeds():
    from ppo_client.optimize.records import RenderedPrompt

    assert metrics.calibration_ceiling(1.0, 2) == pytest.approx(1.0)
    assert metrics.calibration_ceiling(0.0, 2) == 0.0 and metrics.calibration_ceiling(-0.3, 4) == 0.0
    assert metrics.calibration_ceiling(0.3, 2) < metrics.calibration_ceiling(0.3, 4) < metrics.calibration_ceiling(0.5, 4)
    one_seed = [RenderedPrompt("p", [float(i)], float(i), [], 0, []) for i in range(5)]
    assert metrics.seed_agreement(one_seed) is None
    assert metrics.seed_agreement(one_seed[:2]) is None


def test_the_predictor_scores_a_candidate_like_the_rendered_prompts_worded_nearly_like_it():
    # at fixed seeds a prompt's images look like those of prompts worded nearly like it: worth that
    # no linear map of the text can hold (60 groups in 8 dimensions) but that the local kernel finds
    rng = np.random.default_rng(3)
    d = 8
    centres = unit(rng.normal(size=(60, d)))
    worth = rng.normal(size=60)
    rendered = unit(centres + 0.03 * rng.normal(size=centres.shape)).astype(np.float32)
    candidates = unit(centres + 0.03 * rng.normal(size=centres.shape)).astype(np.float32)
    head = PreferenceHead.linear(np.zeros(d, np.float32), 0.0)
    p = screen.fit(head, rendered, worth)
    assert spearman(p(candidates), worth) > 0.75
    z, zc = rendered - rendered.mean(axis=0), candidates - rendered.mean(axis=0)
    for ridge in screen.RIDGE_GRID:  # the linear kernel alone, at any ridge of the grid
        alpha = np.linalg.solve(z @ z.T + ridge * np.eye(60), worth - worth.mean())
        assert spearman(zc @ z.T @ alpha, worth) < 0.6
    # its variance knows it too: a candidate far from everything rendered is less certain than a near one
    far = unit(rng.normal(size=(1, d))).astype(np.float32)
    _, cov, _ = p.posterior(np.concatenate([candidates[:1], far]))
    assert cov[0, 0] < cov[1, 1]


def test_a_replay_of_a_screened_run_predicts_what_its_screen_did_and_chooses_members_as_their_rules_say(tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    replay = importlib.import_module("screen_replay")
    state, _ = _run(tmp_path / "screened", True)
    client = WordClient()
    embed = lambda prompts: np.asarray(client.embed_texts(prompts).embeddings)  # noqa: E731
    result = replay.replay(state.folder, embed)
    # (the same predictions up to rounding: a near-tie may swap places, hence the tolerance)
    assert result["pooled"]["ensemble"] == pytest.approx(result["pooled"]["recorded"], abs=0.02)
    assert result["per_iteration"]["ensemble"] == pytest.approx(result["per_iteration"]["recorded"], abs=0.05)
    # the one member each rule picks is the one it would pick by brute force
    rng = np.random.default_rng(5)
    d = 8
    head = PreferenceHead.linear(unit(rng.normal(size=d)).astype(np.float32), 0.0)
    texts = unit(rng.normal(size=(25, d))).astype(np.float32)
    scores = rng.normal(size=25)
    p = screen.fit(head, texts, scores)
    h = head.score(texts).astype(np.float64)
    loo, likelihood = [], []
    for k in p.kernels:
        gram = screen._gram(texts.astype(np.float64), texts.astype(np.float64), h - h.mean(), h - h.mean(), p.mean,
                            k.length, k.head_weight)
        for ridge in screen.RIDGE_GRID:
            inverse = np.linalg.inv(gram + ridge * np.eye(25))
            alpha = inverse @ (scores - scores.mean())
            loo.append(np.mean((alpha / np.diag(inverse)) ** 2))
            tau2 = alpha @ (scores - scores.mean()) / 25
            likelihood.append(12.5 * np.log(tau2) + 0.5 * np.linalg.slogdet(gram + ridge * np.eye(25))[1])
    assert replay.chosen_member(p, scores, "by leave-one-out") == int(np.argmin(loo))
    assert replay.chosen_member(p, scores, "by likelihood") == int(np.argmin(likelihood))
