"""Experiments: a grid of runs (users x prompts x optimizer/context/screen x repeats), several at once
against one server, summarised in tables shaped like the paper's Tables 1 (personal) and 2
(general preference). Every run keeps its own resumable folder, so a stopped experiment continues
where it stopped when started again with the same ``out``.

    result = run_experiment(ExperimentConfig(users=("ana",), prompts=("a red cat",), out=Path("exp")))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ppo_client.errors import InvalidRequestError, PPOError
from ppo_client.llm.chat import ChatConfig
from ppo_client.optimize.config import Context, Optimizer, RunConfig
from ppo_client.store import GENERAL_USER

logger = logging.getLogger(__name__)

COLUMNS = ("max", "max_minus_init", "k_star", "max_sim", "score_of_most_sim",
           "true_init", "true_max", "true_max_minus_init", "true_best", "screen_calibration")
SOURCES = ("llm_prompts", "repaired_prompts", "fallback_prompts")


@dataclass(frozen=True)
class Arm:
    optimizer: Optimizer
    context: Context
    screen: int = 0

    @property
    def label(self) -> str:
        name = f"{self.optimizer} {self.context}" if self.optimizer.uses_llm else str(self.optimizer)
        return f"{name} +screen{self.screen}" if self.screen > 1 else name


def arms(optimizers, contexts, screens=(0,)) -> list[Arm]:
    """The grid's columns: each LLM context, each baseline (which reads no context) once, per screen."""
    out = []
    for optimizer in map(Optimizer, optimizers):
        for screen in screens:
            if optimizer is Optimizer.MIX and screen < 2:
                continue  # the mix always chooses from a pool
            if optimizer.uses_llm:
                out.extend(Arm(optimizer, Context(c), screen) for c in contexts)
            else:
                out.append(Arm(optimizer, Context.SCORES_PROMPTS, screen))
    return out


@dataclass(frozen=True)
class ExperimentConfig:
    out: Path
    prompts: tuple[str, ...]
    users: tuple[str, ...] = ()
    """Users with trained models; with ``general`` the crowd's taste is optimized instead."""
    general: bool = False
    optimizers: tuple[Optimizer, ...] = tuple(Optimizer)
    contexts: tuple[Context, ...] = (Context.NONE, Context.SCORES_PROMPTS, Context.FEEDBACK)
    screens: tuple[int, ...] = (0,)
    repeats: int = 1
    parallel: int = 4
    """Runs at once (they share the server, and the LLM endpoint queues them)."""
    run: RunConfig = RunConfig()
    """The shape of every run; its user, prompt, optimizer, context, screen and seed are the grid's."""
    text_fallback: bool = False
    """With a text-only endpoint, run s+p+f+I as s+p+f."""

    def checked(self) -> ExperimentConfig:
        if not self.prompts:
            raise InvalidRequestError("prompts", "give at least one prompt")
        if not self.general and not self.users:
            raise InvalidRequestError("users", "name at least one user (or optimize the general taste)")
        if self.repeats < 1 or self.parallel < 1:
            raise InvalidRequestError("repeats/parallel", "must be at least 1")
        return self

    @property
    def grid(self) -> list[Arm]:
        return arms(self.optimizers, self.contexts, self.screens)

    @property
    def who(self) -> tuple[str, ...]:
        return (GENERAL_USER,) if self.general else self.users


@dataclass(frozen=True)
class Job:
    arm: Arm
    folder: Path
    config: RunConfig


@dataclass
class ExperimentResult:
    table: dict
    """Arm label -> the mean and spread of each figure over its runs (``aggregate``)."""
    runs: int
    failures: list[str] = field(default_factory=list)

    def markdown(self, *, general: bool) -> str:
        return markdown(self.table, general=general)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def jobs(config: ExperimentConfig, chat_config: ChatConfig) -> list[Job]:
    """Every run of the grid with its folder and checked configuration."""
    from ppo_client.optimize.session import check_context

    out = []
    for user in config.who:
        for p, prompt in enumerate(config.prompts):
            for arm in config.grid:
                for repeat in range(config.repeats):
                    folder = config.out / "runs" / user / f"{p:02d}-{_slug(prompt)}" / f"{arm.label.replace(' ', '_')}-r{repeat}"
                    context = arm.context
                    if arm.optimizer.uses_llm:
                        context = check_context(context, chat_config, text_fallback=config.text_fallback)
                    run = dataclasses.replace(config.run, user=user, prompt=prompt, optimizer=arm.optimizer, context=context,
                                              screen=arm.screen, seed=config.run.seed + repeat).checked()
                    out.append(Job(arm, folder, run))
    return out


def run_experiment(config: ExperimentConfig, *, url=None, store=None, chat_config: ChatConfig | None = None,
                   on_run: Callable[[int, int], None] = lambda done, total: None) -> ExperimentResult:
    """Run (or resume) every run of the grid and write ``experiment.json`` and ``experiment.md`` to
    ``config.out``. ``on_run(done, total)`` follows progress; a failed run is listed, not raised, so
    the others finish (the same call again resumes it)."""
    from ppo_client.optimize import session
    from ppo_client.optimize.folder import CONFIG
    from ppo_client.scoring import ScoringClient
    from ppo_client.store import UserStore

    config = config.checked()
    chat_config = chat_config or ChatConfig.from_env()
    grid = jobs(config, chat_config)
    summaries: dict[str, list[dict]] = {arm.label: [] for arm in config.grid}
    failures: list[str] = []
    with ScoringClient(url) as client:
        with UserStore(store) as users:
            scorers = {u: session.user_scorer(users, client, u) for u in config.who}
        needs_llm = any(job.arm.optimizer.uses_llm for job in grid)
        with session.chat_endpoint(chat_config, needed=needs_llm) as chat:

            def one(job: Job) -> dict:
                if (job.folder / CONFIG).exists():
                    state = session.resume_run(job.folder)
                else:
                    state = session.new_run(job.folder, job.config, scorers[job.config.user], client, chat_config)
                return session.execute(state, client, chat if job.arm.optimizer.uses_llm else None)

            with ThreadPoolExecutor(max_workers=config.parallel) as pool:
                futures = {pool.submit(one, job): job for job in grid}
                for done, future in enumerate(as_completed(futures), 1):
                    try:
                        summary = future.result()
                    except PPOError as exc:
                        failures.append(str(exc))
                        logger.error("a run failed: %s", exc)
                    else:
                        summaries[futures[future].arm.label].append(summary)  # collected on this thread only
                    on_run(done, len(grid))
    result = ExperimentResult(aggregate({k: v for k, v in summaries.items() if v}), len(grid), failures)
    payload = {"users": list(config.who), "prompts": list(config.prompts), "general": config.general,
               "iterations": config.run.iterations, "n_prompts": config.run.n_prompts, "seeds": config.run.seeds,
               "repeats": config.repeats, "table": result.table, "failures": failures}
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "experiment.json").write_text(json.dumps(payload, indent=2) + "\n")
    (config.out / "experiment.md").write_text(result.markdown(general=config.general))
    return result


def aggregate(summaries: dict[str, list[dict]]) -> dict:
    table = {}
    for label, items in summaries.items():
        row = {"runs": len(items)}
        for column in COLUMNS:
            values = [s[column] for s in items if column in s]
            if values:
                row[column] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        for timing in ("llm_s", "render_s", "total_s"):
            row[timing] = float(np.mean([s["timings"][timing] for s in items]))
        for source in SOURCES:
            row[source] = float(np.mean([s.get(source, 0) for s in items]))
        table[label] = row
    return table


def markdown(table: dict, *, general: bool) -> str:
    shown = [c for c in COLUMNS if any(c in row for row in table.values())]
    title = "Table 2 shape (general preference)" if general else "Table 1 shape (personal preference)"
    lines = [f"{title}; mean ± std over runs", "",
             "| optimizer | runs | " + " | ".join(shown) + " | LLM s | render s | prompts: llm / repaired / fallback |",
             "|---|---:|" + "---:|" * (len(shown) + 3)]
    for label, row in table.items():
        cells = [f"{row[c]['mean']:.2f} ± {row[c]['std']:.2f}" if c in row else "" for c in shown]
        lines.append(f"| {label} | {row['runs']} | " + " | ".join(cells) + f" | {row['llm_s']:.0f} | {row['render_s']:.0f} | {_sources(row)} |")
    return "\n".join(lines) + "\n"


def _sources(row: dict) -> str:
    counts = [row.get(k, 0.0) for k in SOURCES]
    return " / ".join(f"{c:.1f}" for c in counts) if any(counts) else "-"
