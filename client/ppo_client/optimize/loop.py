"""The optimization loop: propose, (screen,) render, record, for the iterations a run still lacks.

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
from ppo_client.optimize.folder import RunState, append_record
from ppo_client.optimize.proposers import Filter, Proposer, ScoredPrompt
from ppo_client.optimize.records import IterationRecord, Timings
from ppo_client.optimize.renderer import Renderer
from ppo_client.optimize.screen import Screener, calibration


def run_iterations(
    state: RunState, proposer: Proposer, renderer: Renderer, keep: Filter, *,
    on_iteration: Callable[[IterationRecord], None] = lambda r: None, screener: Screener | None = None,
) -> None:
    """Run the iterations the folder still lacks. With a ``screen.Screener`` every iteration proposes
    K x N prompts and renders N; in the first, before anything is rendered, the user's head alone
    ranks the candidates' texts."""
    c = state.config
    while not state.done:
        k = len(state.records)
        rng = np.random.default_rng([c.seed, k])
        started = time.perf_counter()
        seen = state.seen()
        screening: dict = {}
        wanted = c.n_prompts * (screener.factor if screener else 1)
        if k == 0:
            seen.add(c.prompt.lower())
            proposal = proposer.initial(c.prompt, wanted, rng, seen, keep)
        else:
            history = _with_best_images(state, state.history) if proposer.needs_images else state.history
            proposal = proposer.propose(c.prompt, history, wanted, rng, seen, keep)
        if screener and len(proposal.prompts) > c.n_prompts:
            chosen, screening = screener.choose(state.records, proposal.prompts, c.n_prompts)
            proposal.keep_only(chosen)
        prompts = [c.prompt, *proposal.prompts] if k == 0 else proposal.prompts
        if not prompts:
            raise OptimizationError(f"iteration {k}: no usable prompt was proposed (all were seen, too long or off-subject)")
        proposed = time.perf_counter()
        rendered = renderer.render(prompts, state.folder, k)
        done = time.perf_counter()
        if k == 0:
            rendered[0].initial = True
        if screening:
            screened = rendered[1:] if k == 0 else rendered  # the user's own prompt is not screened
            for entry, predicted in zip(screened, screening["predicted"]):
                entry.predicted = predicted
            screening["calibration"] = calibration(screening["predicted"], [e.score for e in screened])
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


def _with_best_images(state: RunState, history: list[list[ScoredPrompt]]) -> list[list[ScoredPrompt]]:
    from PIL import Image

    latest = state.records[-1].prompts
    images = [Image.open(state.folder / p.best_image).convert("RGB") for p in latest]
    return [*history[:-1], [dataclasses.replace(sp, best_image=im) for sp, im in zip(history[-1], images)]]
