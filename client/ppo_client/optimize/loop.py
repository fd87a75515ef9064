"""The optimization loop: propose, (screen, preview,) render, record, for the iterations a run still lacks.

Iteration 0 renders the user's prompt and N diverse rewrites of it; every later iteration renders N
new prompts. Each finished iteration is on disk before the next starts, so a stopped run resumes
exactly where it stopped (``folder.load_run``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from ppo_client.errors import OptimizationError
from ppo_client.optimize.cost import Cost, llm_tokens, unet_evaluations
from ppo_client.optimize.folder import RunState, append_record
from ppo_client.optimize.proposers import Filter, Proposal, Proposer, ScoredPrompt
from ppo_client.optimize.records import IterationRecord, Timings
from ppo_client.optimize.renderer import Renderer
from ppo_client.optimize.screen import Screener, calibration


def run_iterations(
    state: RunState, proposer: Proposer, renderer: Renderer, keep: Filter, *,
    on_iteration: Callable[[IterationRecord], None] = lambda r: None, screener: Screener | None = None,
) -> None:
    """Run the iterations the folder still lacks (or its UNet budget allows). With a
    ``screen.Screener`` every iteration proposes K x N prompts and renders N; in the first, before
    anything is rendered, the user's head alone predicts. With previews the screen chooses
    ``preview x N`` of them, those are rendered at ``preview_steps`` and the N whose previews the
    head scores best are rendered in full."""
    c = state.config
    default_name = str(c.optimizer)
    while not state.done:
        k = len(state.records)
        rng = np.random.default_rng([c.seed, k])
        started = time.perf_counter()
        seen = state.seen()
        screening: dict = {}
        previewing: dict = {}
        wanted = c.n_prompts * (screener.factor if screener else 1)
        if k == 0:
            seen.add(c.prompt.lower())
            proposal = proposer.initial(c.prompt, wanted, rng, seen, keep)
        else:
            history = _with_best_images(state, state.history) if proposer.needs_images else state.history
            proposal = proposer.propose(c.prompt, history, wanted, rng, seen, keep)
        proposal.proposers = proposal.named(default_name)
        pool = proposal.pool
        if screener and len(proposal.prompts) > c.n_prompts:
            shortlist = c.n_prompts * (c.preview if c.preview_steps else 1)
            chosen, screening = screener.choose(state.records, proposal.prompts, shortlist)
            proposal.keep_only(chosen)
            if c.preview_steps and len(proposal.prompts) > c.n_prompts:
                previewing = _preview(renderer, proposal, screening, c.n_prompts, c.preview_steps)
        prompts = [c.prompt, *proposal.prompts] if k == 0 else proposal.prompts
        if not prompts:
            raise OptimizationError(f"iteration {k}: no usable prompt was proposed (all were seen, too long or off-subject)")
        proposed = time.perf_counter()
        rendered = renderer.render(prompts, state.folder, k)
        done = time.perf_counter()
        if k == 0:
            rendered[0].initial = True
        mine = rendered[1:] if k == 0 else rendered  # the user's own prompt is not proposed, screened or previewed
        for entry, name in zip(mine, proposal.proposers, strict=True):
            entry.proposer = name
        if screening:
            for entry, predicted in zip(mine, screening["predicted"], strict=True):
                entry.predicted = predicted
            screening["calibration"] = calibration(screening["predicted"], [e.score for e in mine])
            best = int(np.argmax([e.score for e in mine]))
            screening["best_mean_rank"] = screening["mean_rank"][best]
        if previewing:
            for entry, score in zip(mine, previewing["chosen_scores"], strict=True):
                entry.preview_score = score
            previewing["calibration"] = calibration(previewing["chosen_scores"], [e.score for e in mine])
        if pool:
            for name in pool:
                pool[name]["rendered"] = proposal.proposers.count(name)
        record = IterationRecord(
            iteration=k,
            seeds=c.seed_values,
            prompts=rendered,
            feedback=proposal.feedback,
            llm_calls=proposal.llm_calls,
            llm_prompts=proposal.from_llm,
            repaired_prompts=proposal.repaired,
            fallback_prompts=proposal.fallback,
            structured=proposal.structured,
            screen=screening,
            pool=pool,
            preview=previewing,
            cost=_cost(c, len(prompts), len(previewing.get("scores", ())), proposal.llm_calls, renderer.scheduler).to_dict(),
            timings=Timings(
                propose_s=proposed - started,
                llm_s=sum(call["seconds"] for call in proposal.llm_calls),
                render_s=done - proposed,
                server_s=renderer.server_seconds,
                total_s=done - started,
            ),
        )
        append_record(state, record)
        on_iteration(record)


def _preview(renderer: Renderer, proposal: Proposal, screening: dict, n: int, steps: int) -> dict:
    """Preview the shortlisted candidates, keep the ``n`` whose previews score best (in the proposal
    and in the screen's record), and say what the previews found."""
    scores = renderer.preview(proposal.prompts, steps)
    means = [float(np.mean(s)) for s in scores]
    order = [int(i) for i in np.argsort(-np.array(means), kind="stable")[:n]]
    shortlist = list(proposal.prompts)
    predicted = screening["predicted"]
    screening["preview_calibration"] = calibration(predicted, means)  # the text screen against the previews
    for key in ("predicted", "sd", "mean_rank"):
        screening[key] = [screening[key][i] for i in order]
    proposal.keep_only(order)
    return {"steps": steps, "prompts": shortlist, "scores": means, "chosen": order,
            "chosen_scores": [means[i] for i in order]}


def _cost(config, prompts: int, previewed: int, calls: list[dict], scheduler: str) -> Cost:
    images = prompts * config.seeds
    preview_images = previewed * config.seeds
    prompt_tokens, completion_tokens = llm_tokens(calls)
    return Cost(
        unet=unet_evaluations(config.steps, images, config.guidance_scale, scheduler),
        preview_unet=unet_evaluations(config.preview_steps, preview_images, config.guidance_scale,
                                      config.preview_scheduler or scheduler),
        images=images, preview_images=preview_images,
        llm_prompt_tokens=prompt_tokens, llm_completion_tokens=completion_tokens, scheduler=scheduler,
    )


def _with_best_images(state: RunState, history: list[list[ScoredPrompt]]) -> list[list[ScoredPrompt]]:
    from PIL import Image

    latest = state.records[-1].prompts
    images = [Image.open(state.folder / p.best_image).convert("RGB") for p in latest]
    return [*history[:-1], [dataclasses.replace(sp, best_image=im) for sp, im in zip(history[-1], images, strict=True)]]
