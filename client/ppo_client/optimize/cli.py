"""``ppo-client optimize``, ``ppo-client experiment`` and ``ppo-client experiment merge``: flags in, the
library's configs out; every default is read from those configs (``RunConfig``, ``ExperimentConfig``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from ppo_client.console import console, print_document, print_json, results, status
from ppo_client.errors import InvalidRequestError, OptimizationError
from ppo_client.llm.chat import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, TIMEOUT_ENV
from ppo_client.optimize.config import Context, Optimizer, RunConfig, SubjectAnchor
from ppo_client.optimize.experiment import ExperimentConfig
from ppo_client.optimize.shards import Shard
from ppo_client.store import GENERAL_USER
from ppo_client.store.cli import STORE_HELP


def chat_config(args):
    """The LLM settings of ``optimize``, ``experiment`` and ``app`` (flags first, then the environment)."""
    from ppo_client.llm.chat import ChatConfig

    return ChatConfig.from_env(args.llm_url, args.llm_api_key, args.llm_model, timeout_s=args.llm_timeout,
                               max_retries=args.llm_retries, vision=args.vision)


def _default_run_dir(user: str) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{user}"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                    TextColumn("{task.completed}/{task.total}", markup=False), TimeElapsedColumn(), console=console)


def _run_shape(args) -> RunConfig:
    """The run flags shared by ``optimize`` and ``experiment``."""
    return RunConfig(iterations=args.iterations, n_prompts=args.n_prompts, seeds=args.seeds, steps=args.steps,
                     seed=args.seed, subject_guard=args.subject_guard, guidance_scale=args.guidance,
                     structured_output=args.structured_output, subject_anchor=args.subject_anchor, screen=args.screen,
                     exploration=args.explore, preview_steps=args.preview_steps, preview=args.preview,
                     preview_scheduler=args.preview_scheduler,
                     unet_budget=args.unet_budget)


def _new_config(args) -> RunConfig:
    """The run's configuration from the flags, checked: a refused flag is an ``InvalidRequestError``
    before anything is read, connected or created."""
    if not args.user or args.prompt is None:
        raise InvalidRequestError("--user/--prompt", "a new run needs --user and --prompt (or --resume RUN_DIR)")
    return dataclasses.replace(_run_shape(args), user=args.user, prompt=args.prompt, context=args.context,
                               optimizer=args.optimizer).checked()


def _run_folder(args) -> Path:
    folder = Path(args.run_dir or _default_run_dir(args.user))
    if folder.exists() and not folder.is_dir():
        raise InvalidRequestError("--run-dir", f"{folder} is a file, not a folder")
    return folder


def _optimize(args) -> int:
    """Every flag is checked (and a resumed run's configuration read back and checked) before the
    server or the store is touched, and before a run folder is made: a refusal leaves nothing behind."""
    from ppo_client.optimize import session
    from ppo_client.scoring import ScoringClient
    from ppo_client.store import UserStore

    llm = chat_config(args)
    if args.resume:
        state = session.resume_run(Path(args.resume))
        console.print(f"resuming {args.resume} after {len(state.records)} finished iterations")
    else:
        config = _new_config(args)
        folder = _run_folder(args)
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
    from ppo_client.optimize import session

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


def _split(text: str, flag: str, kind=str) -> tuple:
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidRequestError(flag, f"cannot read {text!r}") from None


def _experiment(args) -> int:
    from ppo_client.optimize.experiment import jobs, run_experiment

    if not args.out:
        raise InvalidRequestError("--out", "name the experiment's folder (--out DIR)")
    shard = Shard.parse(args.shard) if args.shard is not None else Shard()
    prompts = list(args.prompt or [])
    if args.prompts_file:
        try:
            text = Path(args.prompts_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequestError("--prompts-file", f"cannot read {args.prompts_file} ({exc})") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise InvalidRequestError("--prompt", "give at least one --prompt or a --prompts-file")
    screens = _split(args.screens, "--screens", int) if args.screens else (args.screen,)
    optimizers = _split(args.optimizers, "--optimizers")
    contexts = _split(args.contexts, "--contexts")
    for name, values, kind in (("--optimizers", optimizers, Optimizer), ("--contexts", contexts, Context)):
        unknown = [v for v in values if v not in {m.value for m in kind}]
        if unknown:
            raise InvalidRequestError(name, f"unknown {', '.join(unknown)}; choose from {', '.join(m.value for m in kind)}")
    config = ExperimentConfig(
        out=Path(args.out), prompts=tuple(prompts), users=_split(args.users, "--users"), general=args.general,
        optimizers=tuple(map(Optimizer, optimizers)), contexts=tuple(map(Context, contexts)), screens=screens,
        repeats=args.repeats, parallel=args.parallel, run=_run_shape(args), text_fallback=args.text_fallback,
        shard=shard,
    ).checked()
    llm = chat_config(args)
    grid = jobs(config, llm)  # every run's configuration is checked before anything is printed, read or started
    share = "" if shard.whole else f"; shard {shard} runs {len(shard.share(job.key for job in grid))} of them"
    console.print(f"{len(grid)} runs ({len(config.who)} users x {len(prompts)} prompts x {len(config.grid)} arms x "
                  f"{config.repeats} repeats) in {config.out}{share}")
    with status("running ...") as spinner:
        result = run_experiment(config, url=args.url, store=args.store, chat_config=llm,
                                on_run=lambda done, total: spinner.update(Text(f"{done}/{total} runs finished")))
    print_document(result.markdown(general=config.general))
    if result.failures:
        console.print(f"{len(result.failures)} runs failed; run the same command again to resume them")
        return 1
    if not shard.whole:
        console.print(f"shard {shard} is done; when every shard is, the tables of the whole grid: "
                      f"ppo-client experiment merge {config.out} [OTHER SHARDS' --out ...] --out DIR")
    return 0


def _merge(args) -> int:
    from ppo_client.optimize.experiment import merge

    out = Path(args.out)
    result = merge([Path(f) for f in args.folders], out, partial=args.partial)
    print_document((out / "experiment.md").read_text())
    if result.missing:
        console.print(f"partial tables: {len(result.missing)} runs of the grid are missing or unfinished "
                      f"(listed in {out / 'experiment.json'})")
    console.print(f"merged {result.runs} runs into {out / 'experiment.md'}")
    return 0


def add_llm_arguments(parser) -> None:
    parser.add_argument("--llm-url", help="OpenAI-compatible base URL ending in /v1 (default $OPENAI_BASE_URL; none: a local LLM is started)")
    parser.add_argument("--llm-model", help="model name (default $PPO_LLM_MODEL)")
    parser.add_argument("--llm-api-key", help="API key (default $OPENAI_API_KEY; never written to the run folder)")
    parser.add_argument("--vision", action="store_true", help="the endpoint's model accepts images (needed by s+p+f+I)")
    parser.add_argument("--text-fallback", action="store_true", help="with a text-only endpoint, run s+p+f+I as s+p+f")
    parser.add_argument(
        "--llm-timeout", type=float, default=None,
        help=f"seconds one LLM call may take, retries included (default ${TIMEOUT_ENV} or {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--llm-retries", type=int, default=DEFAULT_RETRIES, help="retries of a failed LLM call (default %(default)s)")


def _add_run_shape(parser) -> None:
    default = RunConfig()  # the defaults live in one place: the run's configuration
    parser.add_argument("--iterations", type=int, default=default.iterations, help="iterations after the initial one (default %(default)s)")
    parser.add_argument("--n-prompts", type=int, default=default.n_prompts, help="prompts per iteration (N, default %(default)s)")
    parser.add_argument("--seeds", type=int, default=default.seeds, help="seeds per prompt, fixed for the run (M, default %(default)s)")
    parser.add_argument("--steps", type=int, default=default.steps, help="denoising steps per image (default %(default)s)")
    parser.add_argument("--guidance", type=float, default=default.guidance_scale,
                        help="classifier-free guidance scale (default %(default)s; the demo model follows prompts best at 3)")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument(
        "--subject-guard", type=float, default=default.subject_guard,
        help="drop rewrites whose CLIP text similarity to the initial prompt is below this (0: off; default %(default)s)",
    )
    parser.add_argument(
        "--no-structured-output", dest="structured_output", action="store_false", default=default.structured_output,
        help="never ask the LLM endpoint for replies constrained to a JSON schema (default: ask, in the dialect it honours)",
    )
    parser.add_argument(
        "--screen", type=int, default=default.screen, metavar="K",
        help="propose K x N prompts and render the N whose predicted score (the user's head on their CLIP text "
             "embedding, calibrated on this run's renders) is best; 0: off (default %(default)s)",
    )
    parser.add_argument(
        "--explore", type=float, default=default.exploration, metavar="BETA",
        help="the screen renders the best mean + BETA x sd of the predicted score, with a diversity penalty inside "
             "each batch; 0: the best predicted (default %(default)s)",
    )
    parser.add_argument(
        "--preview-steps", type=int, default=default.preview_steps, metavar="S",
        help="preview the screen's shortlist at S denoising steps (same pipeline and seeds) and render in full the N "
             "whose previews the user's head scores best; 0: off (default %(default)s)",
    )
    parser.add_argument("--preview", type=int, default=default.preview, metavar="P",
                        help="with --preview-steps, preview P x N candidates (default %(default)s)")
    parser.add_argument("--preview-scheduler", default=default.preview_scheduler, metavar="NAME",
                        help="the previews' scheduler ('': the pipeline's own, as the full renders; default %(default)s)")
    parser.add_argument(
        "--unet-budget", type=int, default=default.unet_budget, metavar="E",
        help="stop before an iteration that would take the run over E UNet evaluations (steps x images, x2 with "
             "guidance; previews included); 0: --iterations alone decides (default %(default)s)",
    )
    parser.add_argument(
        "--subject-anchor", choices=[a.value for a in SubjectAnchor], default=default.subject_anchor.value,
        help="with structured output, make each LLM prompt start with the subject, then comma-separated phrases "
             "(auto: on for the embedded LLM only; default %(default)s)",
    )


def add_optimize_commands(commands, add_url) -> None:
    default = RunConfig()
    optimize = commands.add_parser("optimize", help="optimize a prompt for a user's taste")
    optimize.add_argument("--user", help=f"a user with a trained model, or '{GENERAL_USER}' for the crowd's taste")
    optimize.add_argument("--prompt")
    optimize.add_argument("--context", choices=[c.value for c in Context], default=default.context.value)
    optimize.add_argument("--optimizer", choices=[o.value for o in Optimizer], default=default.optimizer.value)
    _add_run_shape(optimize)
    where = optimize.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="new run folder (default runs/<time>-<user>)")
    where.add_argument("--resume", help="continue the run in this folder")
    optimize.add_argument("--store", default=None, help=STORE_HELP)
    optimize.add_argument("--json", action="store_true",
                          help="the final summary as one JSON document on stdout (progress stays on stderr)")
    add_llm_arguments(optimize)
    add_url(optimize)
    optimize.set_defaults(handler=_optimize)

    grid = ExperimentConfig(out=Path("."), prompts=())
    experiment = commands.add_parser("experiment", help="a grid of optimization runs, summarised like the paper's tables")
    experiment.add_argument("--users", default="", help="comma-separated users with trained models")
    experiment.add_argument("--general", action="store_true", help="optimize the crowd's taste (Table 2) instead of --users")
    experiment.add_argument("--prompt", action="append", help="an initial prompt (repeatable)")
    experiment.add_argument("--prompts-file", help="one initial prompt per line")
    experiment.add_argument("--optimizers", default=",".join(o.value for o in grid.optimizers))
    experiment.add_argument("--contexts", default=",".join(c.value for c in grid.contexts), help="for the llm optimizer")
    experiment.add_argument("--screens", default="", help="comma-separated --screen values, one more grid column each (e.g. 0,4)")
    experiment.add_argument("--repeats", type=int, default=grid.repeats)
    experiment.add_argument("--parallel", type=int, default=grid.parallel, help="runs at once (default %(default)s)")
    experiment.add_argument("--out", help="the experiment's folder (required): run folders, tables, shard manifests")
    experiment.add_argument(
        "--shard", metavar="I/N",
        help="run shard I of N of the grid (I counted from 1): a fixed share of its runs, the same split on every "
             "machine; merge the shards' folders with `experiment merge`",
    )
    experiment.add_argument("--store", default=None, help=STORE_HELP)
    _add_run_shape(experiment)
    add_llm_arguments(experiment)
    add_url(experiment)
    experiment.set_defaults(handler=_experiment)
    steps = experiment.add_subparsers(dest="experiment_command", metavar="{merge}",
                                      description="without a subcommand: run the grid (or one shard of it)")
    merge = steps.add_parser("merge", help="the tables of one grid from its shards' folders")
    merge.add_argument("folders", nargs="+", metavar="DIR", help="the shards' --out folders (one folder that several shards shared is enough)")
    merge.add_argument("--out", required=True, help="where experiment.json and experiment.md go (may be one of the DIRs)")
    merge.add_argument("--partial", action="store_true", help="summarise the finished runs even if some of the grid's are missing")
    merge.set_defaults(handler=_merge)
