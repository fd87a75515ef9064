"""``ppo-client experiment`` (a grid of optimization runs, or one shard of it) and ``experiment merge``
(the tables of one grid from its shards' folders); every default is read from ``ExperimentConfig``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.text import Text

from ppo_client.commands.options import add_llm, add_run_shape, add_store, add_url, chat_config, run_shape
from ppo_client.console import console, print_document, status
from ppo_client.errors import InvalidRequestError
from ppo_client.optimize.config import Context, Optimizer
from ppo_client.optimize.experiment import ExperimentConfig, jobs, run_experiment
from ppo_client.optimize.experiment import merge as merge_folders
from ppo_client.optimize.shards import Shard


def register(commands) -> None:
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
    add_store(experiment)
    add_run_shape(experiment)
    add_llm(experiment)
    add_url(experiment)
    experiment.set_defaults(handler=run)
    steps = experiment.add_subparsers(dest="experiment_command", metavar="{merge}",
                                      description="without a subcommand: run the grid (or one shard of it)")
    merge = steps.add_parser("merge", help="the tables of one grid from its shards' folders")
    merge.add_argument("folders", nargs="+", metavar="DIR",
                       help="the shards' --out folders (one folder that several shards shared is enough)")
    merge.add_argument("--out", required=True, help="where experiment.json and experiment.md go (may be one of the DIRs)")
    merge.add_argument("--partial", action="store_true", help="summarise the finished runs even if some of the grid's are missing")
    merge.set_defaults(handler=_merge)


def _split(text: str, flag: str, kind=str) -> tuple:
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidRequestError(flag, f"cannot read {text!r}") from None


def run(args: argparse.Namespace) -> int:
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
        repeats=args.repeats, parallel=args.parallel, run=run_shape(args), text_fallback=args.text_fallback,
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
    out = Path(args.out)
    result = merge_folders([Path(f) for f in args.folders], out, partial=args.partial)
    print_document((out / "experiment.md").read_text())
    if result.missing:
        console.print(f"partial tables: {len(result.missing)} runs of the grid are missing or unfinished "
                      f"(listed in {out / 'experiment.json'})")
    console.print(f"merged {result.runs} runs into {out / 'experiment.md'}")
    return 0
