"""A run's figures, as the paper defines them (prompt score = mean over the run's fixed seeds).

- ``init``: the user's own prompt's score (iteration 0); ``max``: the best prompt score found;
  ``max_minus_init``; ``k_star``: the first iteration that reached ``max``.
- ``max_sim``: the highest cosine similarity between i* (the best image of the best prompt) and the
  user's high-rated images (rated at or above the run's ``high_rating_quantile`` of their ratings);
  ``score_of_most_sim``: the user's rating of their rated image most similar to i*.
- ``timings``: seconds spent proposing (``llm_s`` of it waiting for the LLM), rendering
  (``render_s``; ``server_s`` of it in generate-and-score calls) and elsewhere (``other_s``).
- cost: ``unet_evaluations`` (full renders and previews; ``unet_so_far`` after each iteration, and
  ``images_so_far``), ``preview_unet``, ``llm_tokens``.
- where the rendered prompts came from (``proposers``), and the mix's pool shares per iteration
  (``pool_shares``).
- the screen: ``screen_calibration`` (mean per-iteration rank correlation of its predictions with the
  measured scores of what it chose), ``screen_calibration_pooled`` (one rank correlation over every
  screened prompt of the run after iteration 0), ``screen_best_ranked_low`` (the share of iterations
  whose best rendered prompt was one a greedy screen would not have chosen: ranked N or lower among
  the candidates by predicted mean); ``preview_calibration`` (previews against full renders).
- how far a screen blind to the seeds could be calibrated (``calibration_ceiling``,
  ``calibration_ceiling_pooled``): one that knew each prompt's worth over all seeds, but nothing of
  how this run's seeds treat it, reaches a rank correlation of about ``sqrt(R)`` with the M-seed
  mean, ``R = M r / (1 + (M - 1) r)`` the Spearman-Brown reliability of that mean and ``r`` the rank
  correlation between the seeds' scores of the same prompts (``seed_agreement``: per iteration over
  its N renders, and pooled over the run). The screen's local kernel can pass it: it learns a
  seed's luck from prompts worded nearly alike and rendered at the same seeds.
- ``true_*`` (demo world): the virtual user's noise-free scores of the same images: ``true_init``,
  ``true_max`` (of the prompt the learned scorer liked best: was the user really pleased?),
  ``true_max_minus_init``, and ``true_best`` (the best true score any prompt reached).
"""

from __future__ import annotations

import numpy as np

from ppo_client.errors import DataError
from ppo_client.optimize.cost import Cost
from ppo_client.optimize.records import IterationRecord, RenderedPrompt, all_prompts
from ppo_client.piaa.metrics import spearman


def summarize(records: list[IterationRecord], reference_embeddings: np.ndarray, reference_ratings: np.ndarray,
              quantile: float) -> dict:
    if not records:
        return {"iterations_done": 0}
    prompts = all_prompts(records)
    initial = records[0].prompts[0]
    best_k, best = max(prompts, key=lambda kp: (kp[1].score, -kp[0]))
    k_star = min(k for k, p in prompts if p.score >= best.score)
    best_image = np.asarray(best.embeddings[best.best], dtype=np.float32)
    summary = {
        "iterations_done": len(records) - 1,
        "init": initial.score,
        "max": best.score,
        "max_minus_init": best.score - initial.score,
        "k_star": k_star,
        "best_prompt": best.prompt,
        "best_image": best.best_image,
        "best_so_far": [max(p.score for k, p in prompts if k <= i) for i in range(len(records))],
        "images": sum(len(p.images) for _, p in prompts),
        "llm_prompts": sum(r.llm_prompts for r in records),
        "repaired_prompts": sum(r.repaired_prompts for r in records),
        "fallback_prompts": sum(r.fallback_prompts for r in records),
    }
    calibrations = [r.calibration for r in records if r.calibration is not None]
    if calibrations:
        summary["screen_calibration"] = float(np.mean(calibrations))
    summary.update(_costs(records))
    summary.update(_screening(records))
    proposers: dict[str, int] = {}
    for _, p in prompts:
        if p.proposer:
            proposers[p.proposer] = proposers.get(p.proposer, 0) + 1
    if proposers:
        summary["proposers"] = proposers
    if any(r.pool for r in records):
        summary["pool_shares"] = [{name: v["share"] for name, v in r.pool.items()} for r in records]
    if len(reference_ratings):
        sims = reference_embeddings @ best_image
        threshold = float(np.quantile(reference_ratings, quantile))
        high = reference_ratings >= threshold
        summary.update({
            "max_sim": float(sims[high].max()),
            "score_of_most_sim": float(reference_ratings[int(np.argmax(sims))]),
            "high_rating_threshold": threshold,
        })
    if initial.true_score is not None:
        summary.update({
            "true_init": initial.true_score,
            "true_max": _true(best),
            "true_max_minus_init": _true(best) - initial.true_score,
            "true_best": max(_true(p) for _, p in prompts),
            "true_best_so_far": [_true_of_best(prompts, i) for i in range(len(records))],
        })
    timings = [r.timings for r in records]
    total = sum(t.total_s for t in timings)
    summary["timings"] = {
        "total_s": total,
        "llm_s": sum(t.llm_s for t in timings),
        "render_s": sum(t.render_s for t in timings),
        "server_s": sum(t.server_s for t in timings),
        "other_s": total - sum(t.llm_s + t.render_s for t in timings),
    }
    return summary


def _costs(records: list[IterationRecord]) -> dict:
    costs = [Cost.from_dict(r.cost) for r in records]
    return {
        "unet_evaluations": sum(c.total_unet for c in costs),
        "unet_so_far": np.cumsum([c.total_unet for c in costs]).tolist(),
        "images_so_far": np.cumsum([sum(len(p.images) for p in r.prompts) for r in records]).tolist(),
        "preview_unet": sum(c.preview_unet for c in costs),
        "llm_tokens": sum(c.llm_prompt_tokens + c.llm_completion_tokens for c in costs),
    }


def _screening(records: list[IterationRecord]) -> dict:
    out = {}
    screened = [r for r in records if r.screen and "best_mean_rank" in r.screen]
    if screened:
        low = [r.screen["best_mean_rank"] >= len(r.screen["predicted"]) for r in screened]
        out["screen_best_ranked_low"] = float(np.mean(low))
    pairs = [(p.predicted, p.score) for r in records[1:] for p in r.prompts if p.predicted is not None]
    if len(pairs) >= 3 and np.ptp([a for a, _ in pairs]) > 0 and np.ptp([b for _, b in pairs]) > 0:
        out["screen_calibration_pooled"] = float(spearman(np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])))
    out.update(ceilings(records))
    previews = [r.preview["calibration"] for r in records if r.preview and r.preview.get("calibration") is not None]
    if previews:
        out["preview_calibration"] = float(np.mean(previews))
    return out


def seed_agreement(prompts: list[RenderedPrompt]) -> float | None:
    """Mean rank correlation, over every pair of seeds, between the scores the prompts got at each;
    None where it says nothing (one seed, under 3 prompts, or one side constant)."""
    scores = np.array([p.scores for p in prompts], np.float64)
    if scores.ndim != 2 or scores.shape[0] < 3 or scores.shape[1] < 2:
        return None
    pairs = [(i, j) for i in range(scores.shape[1]) for j in range(i + 1, scores.shape[1])
             if np.ptp(scores[:, i]) > 0 and np.ptp(scores[:, j]) > 0]
    if not pairs:
        return None
    return float(np.mean([spearman(scores[:, i], scores[:, j]) for i, j in pairs]))


def calibration_ceiling(agreement: float, seeds: int) -> float:
    """The highest rank correlation a prediction from the text alone can expect with the mean of
    ``seeds`` scores whose seeds agree by ``agreement`` (see the module's docstring)."""
    if agreement <= 0:
        return 0.0
    reliability = seeds * agreement / (1 + (seeds - 1) * agreement)
    return float(np.sqrt(reliability))


def ceilings(records: list[IterationRecord]) -> dict:
    """The screen's calibration ceilings, over the renders it chose (iterations after the first)."""
    screened = [[p for p in r.prompts if p.predicted is not None] for r in records[1:]]
    screened = [prompts for prompts in screened if prompts]
    if not screened:
        return {}
    seeds = len(screened[0][0].scores)
    out = {}
    per_iteration = [a for a in (seed_agreement(prompts) for prompts in screened) if a is not None]
    if per_iteration:
        out["seed_agreement"] = float(np.mean(per_iteration))
        out["calibration_ceiling"] = calibration_ceiling(out["seed_agreement"], seeds)
    pooled = seed_agreement([p for prompts in screened for p in prompts])
    if pooled is not None:
        out["seed_agreement_pooled"] = pooled
        out["calibration_ceiling_pooled"] = calibration_ceiling(pooled, seeds)
    return out


def _true_of_best(prompts: list[tuple[int, RenderedPrompt]], iteration: int) -> float:
    """The true score of the prompt the learned scorer ranked best up to ``iteration``."""
    return _true(max((p for k, p in prompts if k <= iteration), key=lambda p: p.score))


def _true(prompt: RenderedPrompt) -> float:
    """A prompt's true score, in a run whose first prompt has one (the demo world's: every prompt does)."""
    if prompt.true_score is None:
        raise DataError(f"the run's first prompt has a true score but {prompt.prompt!r} has none")
    return prompt.true_score
