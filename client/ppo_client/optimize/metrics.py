"""A run's figures, as the paper defines them (prompt score = mean over the run's fixed seeds).

- ``init``: the user's own prompt's score (iteration 0); ``max``: the best prompt score found;
  ``max_minus_init``; ``k_star``: the first iteration that reached ``max``.
- ``max_sim``: the highest cosine similarity between i* (the best image of the best prompt) and the
  user's high-rated images (rated at or above the run's ``high_rating_quantile`` of their ratings);
  ``score_of_most_sim``: the user's rating of their rated image most similar to i*.
- ``timings``: seconds spent proposing (``llm_s`` of it waiting for the LLM), rendering
  (``render_s``; ``server_s`` of it in generate-and-score calls) and elsewhere (``other_s``).
- ``true_*`` (demo world): the virtual user's noise-free scores of the same images: ``true_init``,
  ``true_max`` (of the prompt the learned scorer liked best: was the user really pleased?),
  ``true_max_minus_init``, and ``true_best`` (the best true score any prompt reached).
"""

from __future__ import annotations

import numpy as np

from ppo_client.optimize.records import IterationRecord, RenderedPrompt, all_prompts


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
            "true_max": best.true_score,
            "true_max_minus_init": best.true_score - initial.true_score,
            "true_best": max(p.true_score for _, p in prompts),
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


def _true_of_best(prompts: list[tuple[int, RenderedPrompt]], iteration: int) -> float:
    """The true score of the prompt the learned scorer ranked best up to ``iteration``."""
    return max((p for k, p in prompts if k <= iteration), key=lambda p: p.score).true_score
