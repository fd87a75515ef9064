"""``ppo-client experiment``: a grid of runs (users x prompts x optimizer/context/screen x repeats), several
at once against one server, summarised in tables shaped like the paper's Tables 1 (personal) and 2
(``--general``). Every run keeps its own resumable folder, so a stopped experiment continues where
it stopped when started again with the same ``--out``.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppo_client.console import console
from ppo_client.errors import InvalidRequestError, PPOError
from ppo_client.optimize.proposers import CONTEXTS, OPTIMIZERS

logger = logging.getLogger(__name__)

COLUMNS = ("max", "max_minus_init", "k_star", "max_sim", "score_of_most_sim",
           "true_init", "true_max", "true_max_minus_init", "true_best", "screen_calibration")


@dataclass(frozen=True)
class Arm:
    optimizer: str
    context: str
    screen: int = 0

    @property
    def label(self) -> str:
        name = f"llm {self.context}" if self.optimizer == "llm" else self.optimizer
        return f"{name} +screen{self.screen}" if self.screen > 1 else name


def arms(optimizers, contexts, screens=(0,)) -> list[Arm]:
    out = []
    for optimizer in optimizers:
        for screen in screens:
            if optimizer == "llm":
                out.extend(Arm("llm", c, screen) for c in contexts)
            else:
                out.append(Arm(optimizer, "-", screen))  # baselines read no context
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def aggregate(summaries: dict[str, list[dict]]) -> dict:
    table = {}
    for label, items in summaries.items():
        row = {"runs": len(items)}
        for column in COLUMNS:
            values = [s[column] for s in items if column in s]
            if values:
                row[column] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        row["llm_s"] = float(np.mean([s["timings"]["llm_s"] for s in items]))
        row["render_s"] = float(np.mean([s["timings"]["render_s"] for s in items]))
        row["total_s"] = float(np.mean([s["timings"]["total_s"] for s in items]))
        for source in ("llm_prompts", "repaired_prompts", "fallback_prompts"):
            row[source] = float(np.mean([s.get(source, 0) for s in items]))
        table[label] = row
    return table


def markdown(table: dict, *, general: bool) -> str:
    shown = [c for c in COLUMNS if any(c in row for row in table.values())]
    title = "Table 2 shape (general preference)" if general else "Table 1 shape (personal preference)"
    lines = [f"{title}; mean ± std over runs", "", "| optimizer | runs | " + " | ".join(shown) + " | LLM s | server s | prompts: llm / repaired / fallback |",
             "|---|---:|" + "---:|" * (len(shown) + 3)]
    for label, row in table.items():
        cells = [f"{row[c]['mean']:.2f} ± {row[c]['std']:.2f}" if c in row else "" for c in shown]
        lines.append(f"| {label} | {row['runs']} | " + " | ".join(cells) + f" | {row['llm_s']:.0f} | {row['render_s']:.0f} | {_sources(row)} |")
    return "\n".join(lines) + "\n"


def _sources(row: dict) -> str:
    counts = [row.get(k, 0.0) for k in ("llm_prompts", "repaired_prompts", "fallback_prompts")]
    return " / ".join(f"{c:.1f}" for c in counts) if any(counts) else "-"


def _experiment(args) -> int:
    from ppo_client.optimize import session
    from ppo_client.optimize.run import CONFIG, RunConfig
    from ppo_client.scoring import ScoringClient
    from ppo_client.store import UserStore

    prompts = list(args.prompt or [])
    if args.prompts_file:
        prompts += [line.strip() for line in Path(args.prompts_file).read_text().splitlines() if line.strip()]
    if not prompts:
        raise InvalidRequestError("--prompt", "give at least one --prompt or a --prompts-file")
    users = [session.GENERAL_USER] if args.general else [u for u in args.users.split(",") if u]
    if not users:
        raise InvalidRequestError("--users", "name at least one user (or pass --general)")
    try:
        screens = [int(k) for k in args.screens.split(",")] if args.screens else [args.screen]
    except ValueError:
        raise InvalidRequestError("--screens", f"must be comma-separated whole numbers, got {args.screens!r}") from None
    grid = arms(args.optimizers.split(","), args.contexts.split(","), screens)
    for arm in grid:
        if arm.optimizer not in OPTIMIZERS or (arm.optimizer == "llm" and arm.context not in CONTEXTS):
            raise InvalidRequestError("--optimizers/--contexts", f"unknown {arm.optimizer} {arm.context}")
    out = Path(args.out)
    from ppo_client.optimize.cli import chat_config as llm_settings

    chat_config = llm_settings(args)
    jobs = []
    with ScoringClient(args.url) as client:
        with UserStore(args.store) as store:
            scorers = {u: session.user_scorer(store, client, u) for u in users}
        for user in users:
            for p, prompt in enumerate(prompts):
                for arm in grid:
                    for repeat in range(args.repeats):
                        folder = out / "runs" / user / f"{p:02d}-{_slug(prompt)}" / f"{arm.label.replace(' ', '_')}-r{repeat}"
                        context = session.check_context(arm.context, chat_config, text_fallback=args.text_fallback) if arm.optimizer == "llm" else "s+p"
                        config = RunConfig(user=user, prompt=prompt, iterations=args.iterations, n_prompts=args.n_prompts,
                                           seeds=args.seeds, context=context, optimizer=arm.optimizer, steps=args.steps,
                                           seed=args.seed + repeat, subject_guard=args.subject_guard,
                                           guidance_scale=args.guidance, structured_output=args.structured_output,
                                           subject_anchor=args.subject_anchor, screen=arm.screen).checked()
                        jobs.append((arm, folder, config))
        console.print(f"{len(jobs)} runs ({len(users)} users x {len(prompts)} prompts x {len(grid)} arms x {args.repeats} repeats) in {out}")
        needs_llm = any(arm.optimizer == "llm" for arm, _, _ in jobs)
        summaries: dict[str, list[dict]] = {arm.label: [] for arm in grid}
        failures = []
        with session.chat_endpoint(chat_config, needed=needs_llm) as chat:

            def one(arm, folder, config):
                if (folder / CONFIG).exists():
                    state, judge = session.resume_run(folder)
                else:
                    scorer = scorers[config.user]
                    state = session.new_run(folder, config, scorer, client, chat_config)
                    judge = scorer.true_score
                return arm, session.execute(state, client, chat if arm.optimizer == "llm" else None, judge)

            with ThreadPoolExecutor(max_workers=args.parallel) as pool:
                futures = [pool.submit(one, *job) for job in jobs]
                with console.status("running ...") as status:
                    done = 0
                    for future in as_completed(futures):
                        done += 1
                        try:
                            arm, summary = future.result()
                        except PPOError as exc:
                            failures.append(str(exc))
                            logger.error("a run failed: %s", exc)
                            continue
                        summaries[arm.label].append(summary)  # results are collected on this thread only
                        status.update(f"{done}/{len(jobs)} runs finished")
    table = aggregate({k: v for k, v in summaries.items() if v})
    payload = {"users": users, "prompts": prompts, "general": args.general, "iterations": args.iterations,
               "n_prompts": args.n_prompts, "seeds": args.seeds, "repeats": args.repeats, "table": table, "failures": failures}
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.json").write_text(json.dumps(payload, indent=2) + "\n")
    text = markdown(table, general=args.general)
    (out / "experiment.md").write_text(text)
    print(text, end="")
    if failures:
        console.print(f"{len(failures)} runs failed; run the same command again to resume them")
        return 1
    return 0


def add_experiment_command(commands, add_url, add_llm, add_run_shape) -> None:
    experiment = commands.add_parser("experiment", help="a grid of optimization runs, summarised like the paper's tables")
    experiment.add_argument("--users", default="", help="comma-separated users with trained models")
    experiment.add_argument("--general", action="store_true", help="optimize the crowd's taste (Table 2) instead of --users")
    experiment.add_argument("--prompt", action="append", help="an initial prompt (repeatable)")
    experiment.add_argument("--prompts-file", help="one initial prompt per line")
    experiment.add_argument("--optimizers", default="llm,random,ga")
    experiment.add_argument("--contexts", default=",".join(CONTEXTS[:3]), help="for the llm optimizer")
    experiment.add_argument("--screens", default="", help="comma-separated --screen values, one more grid column each (e.g. 0,4)")
    experiment.add_argument("--repeats", type=int, default=1)
    experiment.add_argument("--parallel", type=int, default=4, help="runs at once")
    experiment.add_argument("--out", required=True)
    experiment.add_argument("--store", default=None)
    add_run_shape(experiment)
    add_llm(experiment)
    add_url(experiment)
    experiment.set_defaults(handler=_experiment)
