"""``ppo-client optimize`` and ``ppo-client experiment``."""

from __future__ import annotations

import time
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ppo_client.console import console
from ppo_client.errors import InvalidRequestError
from ppo_client.llm.chat import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, TIMEOUT_ENV
from ppo_client.optimize.proposers import CONTEXTS, OPTIMIZERS


def chat_config(args):
    """The LLM settings of ``optimize`` and ``experiment`` (flags first, then the environment)."""
    from ppo_client.llm.chat import ChatConfig

    return ChatConfig.from_env(args.llm_url, args.llm_api_key, args.llm_model, timeout_s=args.llm_timeout,
                               max_retries=args.llm_retries, vision=args.vision)


def _default_run_dir(user: str) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{user}"


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console)


def _optimize(args) -> int:
    from ppo_client.optimize import session
    from ppo_client.optimize.run import RunConfig
    from ppo_client.scoring import ScoringClient
    from ppo_client.store import UserStore

    llm = chat_config(args)
    with ScoringClient(args.url) as client:
        if args.resume:
            state, judge = session.resume_run(Path(args.resume))
            console.print(f"resuming {args.resume} after {max(len(state.records) - 1, -1) + 1} finished iterations")
        else:
            if not args.user or args.prompt is None:
                raise InvalidRequestError("--user/--prompt", "a new run needs --user and --prompt (or --resume RUN_DIR)")
            context = session.check_context(args.context, llm, text_fallback=args.text_fallback)
            config = RunConfig(
                user=args.user, prompt=args.prompt, iterations=args.iterations, n_prompts=args.n_prompts,
                seeds=args.seeds, context=context, optimizer=args.optimizer, steps=args.steps, seed=args.seed,
                subject_guard=args.subject_guard, guidance_scale=args.guidance, structured_output=args.structured_output,
                subject_anchor=args.subject_anchor, screen=args.screen,
            ).checked()
            with UserStore(args.store) as store:
                if args.user != session.GENERAL_USER:
                    store.user(args.user)  # unknown user: a clear error before anything starts
                scorer = session.user_scorer(store, client, args.user)
            state = session.new_run(Path(args.run_dir or _default_run_dir(args.user)), config, scorer, client, llm)
            judge = scorer.true_score
            console.print(f"run folder: {state.folder} (scorer: {scorer.model})")
        c = state.config
        chat_needed = c.optimizer == "llm" and len(state.records) <= c.iterations
        with _progress() as bar, session.chat_endpoint(llm, needed=chat_needed) as chat:
            task = bar.add_task("iteration", total=c.iterations + 1, completed=len(state.records))

            def on_iteration(record):
                best = max(p["score"] for r in state.records for p in r["prompts"])
                bar.update(task, completed=len(state.records), description=f"iteration {record['iteration']} best {best:.2f}")

            try:
                summary = session.execute(state, client, chat, judge, on_iteration)
            except KeyboardInterrupt:
                console.print(f"stopped; finished iterations are saved. Continue with: ppo-client optimize --resume {state.folder}")
                raise
            except Exception:
                if state.records:
                    console.print(f"the run stopped; finished iterations are saved. Continue with: ppo-client optimize --resume {state.folder}")
                raise
    line = f"init {summary['init']:.2f} -> max {summary['max']:.2f} (+{summary['max_minus_init']:.2f}, K* {summary['k_star']})"
    if "true_max" in summary:
        line += f"; true taste {summary['true_init']:.2f} -> {summary['true_max']:.2f} ({summary['true_max_minus_init']:+.2f})"
    console.print(line)
    if state.config.optimizer == "llm":
        proposed = sum(len(r["prompts"]) for r in state.records) - 1
        structured = {r.get("structured") for r in state.records if r.get("structured")}
        console.print(
            f"of {proposed} prompts, {summary.get('llm_prompts', 0)} came from the LLM in the shape asked for, "
            f"{summary.get('repaired_prompts', 0)} were repaired out of its replies and {summary['fallback_prompts']} were "
            f"keyword edits of the best ones (structured output: {', '.join(sorted(structured)) or 'none'}; "
            "see llm_calls in iterations.jsonl)"
        )
    print(str(state.folder / "report.html"))
    return 0


def _add_llm(parser) -> None:
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
    from ppo_client.optimize.run import SUBJECT_ANCHORS, RunConfig

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
        help="after iteration 0, propose K x N prompts and render the N whose predicted score (the user's head on their "
             "CLIP text embedding, calibrated on this run's renders) is best; 0: off (default %(default)s)",
    )
    parser.add_argument(
        "--subject-anchor", choices=SUBJECT_ANCHORS, default=default.subject_anchor,
        help="with structured output, make each LLM prompt start with the subject, then comma-separated phrases "
             "(auto: on for the embedded LLM only; default %(default)s)",
    )


def add_optimize_commands(commands, add_url) -> None:
    optimize = commands.add_parser("optimize", help="optimize a prompt for a user's taste")
    optimize.add_argument("--user", help=f"a user with a trained model, or '{'general'}' for the crowd's taste")
    optimize.add_argument("--prompt")
    optimize.add_argument("--context", choices=CONTEXTS, default="s+p+f")
    optimize.add_argument("--optimizer", choices=OPTIMIZERS, default="llm")
    _add_run_shape(optimize)
    where = optimize.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="new run folder (default runs/<time>-<user>)")
    where.add_argument("--resume", help="continue the run in this folder")
    optimize.add_argument("--store", default=None, help="user store file (default: $PPO_STORE or the user data dir)")
    _add_llm(optimize)
    add_url(optimize)
    optimize.set_defaults(handler=_optimize)

    from ppo_client.optimize.experiment import add_experiment_command

    add_experiment_command(commands, add_url, _add_llm, _add_run_shape)

