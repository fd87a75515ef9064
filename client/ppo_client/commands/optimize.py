"""``ppo-client optimize``: one optimization run for a user's taste, new or resumed; flags in, the
library's ``RunConfig`` out (every default is read from it)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ppo_client.commands.options import add_llm, add_run_shape, add_store, add_url, chat_config, run_shape, screen_for
from ppo_client.console import console, print_json, results
from ppo_client.errors import InvalidRequestError, OptimizationError
from ppo_client.optimize import session
from ppo_client.optimize.config import Context, Optimizer, RunConfig
from ppo_client.scoring import ScoringClient
from ppo_client.store import GENERAL_USER, UserStore


def register(commands) -> None:
    default = RunConfig()
    parser = commands.add_parser("optimize", help="optimize a prompt for a user's taste")
    parser.add_argument("--user", help=f"a user with a trained model, or '{GENERAL_USER}' for the crowd's taste")
    parser.add_argument("--prompt")
    parser.add_argument("--context", choices=[c.value for c in Context], default=default.context.value)
    parser.add_argument("--optimizer", choices=[o.value for o in Optimizer], default=default.optimizer.value)
    add_run_shape(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="new run folder (default runs/<time>-<user>)")
    where.add_argument("--resume", help="continue the run in this folder")
    add_store(parser)
    parser.add_argument("--json", action="store_true",
                          help="the final summary as one JSON document on stdout (progress stays on stderr)")
    add_llm(parser)
    add_url(parser)
    parser.set_defaults(handler=run)


def _default_run_dir(user: str) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{user}"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                    TextColumn("{task.completed}/{task.total}", markup=False), TimeElapsedColumn(), console=console)


def _new_config(args) -> RunConfig:
    """The run's configuration from the flags, checked: a refused flag is an ``InvalidRequestError``
    before anything is read, connected or created."""
    if not args.user or args.prompt is None:
        raise InvalidRequestError("--user/--prompt", "a new run needs --user and --prompt (or --resume RUN_DIR)")
    return dataclasses.replace(run_shape(args), user=args.user, prompt=args.prompt, context=args.context,
                               optimizer=args.optimizer, screen=screen_for(args, args.optimizer)).checked()


def _run_folder(args) -> Path:
    folder = Path(args.run_dir or _default_run_dir(args.user))
    if folder.exists() and not folder.is_dir():
        raise InvalidRequestError("--run-dir", f"{folder} is a file, not a folder")
    return folder


def run(args: argparse.Namespace) -> int:
    """Every flag is checked (and a resumed run's configuration read back and checked) before the
    server or the store is touched, and before a run folder is made: a refusal leaves nothing behind."""
    llm = chat_config(args)
    if args.resume:
        state = session.resume_run(Path(args.resume))
        console.print(f"resuming {args.resume} after {len(state.records)} finished iterations")
    else:
        config = _new_config(args)
        folder = _run_folder(args)
        if not llm.embedded and not config.optimizer.uses_llm:
            console.print(f"note: the {config.optimizer} optimizer does not use the LLM endpoint {llm.base_url}; "
                          "--optimizer mix fills its candidate pool from it too (--explore 1)")
        config = dataclasses.replace(config, context=session.check_context(config.context, llm,
                                                                           text_fallback=args.text_fallback))
        state = None
    try:
        with ScoringClient(args.url) as client:
            if state is None:
                with UserStore(args.store) as store:
                    if args.user != GENERAL_USER:
                        store.user(args.user)  # unknown user: a clear error before anything starts
                    scorer = session.user_scorer(store, client, args.user)
                try:
                    state = session.new_run(folder, config, scorer, client, llm)
                except OSError as exc:
                    raise OptimizationError(f"cannot create the run folder {folder} ({exc.strerror or exc})") from exc
                console.print(f"run folder: {state.folder} (scorer: {scorer.model})")
            summary = _execute(state, client, llm)
    finally:
        if state is not None:
            state.close()
    if args.json:
        print_json(_summary_json(state, summary))
    else:
        for line in _summary_lines(state, summary):
            results.print(line)
        results.print(str(state.folder / "report.html"))
    return 0


def _summary_lines(state, summary: dict) -> list[str]:
    """What ``optimize`` prints at the end of a run, before the report's path."""
    line = f"init {summary['init']:.2f} -> max {summary['max']:.2f} (+{summary['max_minus_init']:.2f}, K* {summary['k_star']})"
    if "true_max" in summary:
        line += f"; true taste {summary['true_init']:.2f} -> {summary['true_max']:.2f} ({summary['true_max_minus_init']:+.2f})"
    lines = [line]
    if "proposers" in summary:
        shares = (summary.get("pool_shares") or [{}])[-1]
        lines.append("rendered prompts by proposer: " + ", ".join(
            f"{name} {count}" + (f" (pool share now {shares[name]:.0%})" if name in shares else "")
            for name, count in sorted(summary["proposers"].items())))
    lines.append(f"cost: {summary.get('unet_evaluations', 0)} UNet evaluations ({summary.get('preview_unet', 0)} of them "
                 f"previews), {summary.get('images', 0)} images, {summary.get('llm_tokens', 0)} LLM tokens")
    if state.config.optimizer.uses_llm:
        proposed = sum(len(r.prompts) for r in state.records) - 1
        structured = {r.structured for r in state.records if r.structured}
        lines.append(
            f"of {proposed} prompts, {summary.get('llm_prompts', 0)} came from the LLM in the shape asked for, "
            f"{summary.get('repaired_prompts', 0)} were repaired out of its replies and {summary['fallback_prompts']} were "
            f"keyword edits of the best ones (structured output: {', '.join(sorted(structured)) or 'none'}; "
            "see llm_calls in iterations.jsonl)"
        )
    return lines


def _summary_json(state, summary: dict) -> dict:
    """``optimize --json``: the same figures, every key always there (null where a run has none);
    the run folder's summary.json holds the rest."""
    c = state.config
    return {
        "run_folder": str(state.folder),
        "report": str(state.folder / "report.html"),
        "user": c.user,
        "prompt": c.prompt,
        "optimizer": c.optimizer.value,
        "context": c.context.value,
        "iterations_done": summary.get("iterations_done", 0),
        **{key: summary.get(key) for key in ("init", "max", "max_minus_init", "k_star", "best_prompt")},
        "best_image": str(state.folder / summary["best_image"]) if summary.get("best_image") else None,
        **{key: summary.get(key) for key in ("true_init", "true_max", "true_max_minus_init")},
        "proposers": summary.get("proposers", {}),
        "pool_shares": (summary.get("pool_shares") or [{}])[-1],
        **{key: summary.get(key, 0) for key in ("unet_evaluations", "preview_unet", "images", "llm_tokens",
                                                "llm_prompts", "repaired_prompts", "fallback_prompts")},
    }


def _execute(state, client, llm) -> dict:
    c = state.config
    with _progress() as bar, session.chat_endpoint(llm, needed=session.needs_llm(state)) as chat:
        task = bar.add_task("iteration", total=c.iterations + 1, completed=len(state.records))

        def on_iteration(record):
            best = max(p.score for r in state.records for p in r.prompts)
            bar.update(task, completed=len(state.records), description=f"iteration {record.iteration} best {best:.2f}")

        resume = f"finished iterations are saved. Continue with: ppo-client optimize --resume {state.folder}"
        try:
            return session.execute(state, client, chat, on_iteration)
        except KeyboardInterrupt:
            console.print(f"stopped; {resume}")
            raise
        except Exception:
            if state.records:
                console.print(f"the run stopped; {resume}")
            raise
