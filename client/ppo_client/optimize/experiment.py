"""Experiments: a grid of runs (users x prompts x optimizer/context/screen x repeats), several at once
against one server, summarised in tables shaped like the paper's Tables 1 (personal) and 2
(general preference). Every run keeps its own resumable folder, ``OUT/runs/<key>``, so a stopped
experiment continues where it stopped when started again with the same ``out``.

A grid can be split between machines: ``ExperimentConfig(shard=Shard(i, n))`` runs shard ``i`` of
``n`` (``shards.py``), and ``merge`` builds the tables from every shard's run folders.

    result = run_experiment(ExperimentConfig(users=("ana",), prompts=("a red cat",), out=Path("exp")))
    merge([Path("exp-1"), Path("exp-2")], Path("exp"))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ppo_client.errors import DataError, InvalidRequestError, OptimizationError, PPOError
from ppo_client.llm.chat import ChatConfig
from ppo_client.optimize import session, shards
from ppo_client.optimize.config import Context, Optimizer, RunConfig
from ppo_client.optimize.folder import CONFIG, read_finished_summary
from ppo_client.optimize.session import check_context
from ppo_client.optimize.shards import Shard
from ppo_client.scoring import ScoringClient
from ppo_client.store import GENERAL_USER, UserStore

logger = logging.getLogger(__name__)

COLUMNS = ("max", "max_minus_init", "k_star", "max_sim", "score_of_most_sim",
           "true_init", "true_max", "true_max_minus_init", "true_best", "screen_calibration")
SOURCES = ("llm_prompts", "repaired_prompts", "fallback_prompts")


class _Stopped(Exception):
    """Raised in a run's thread, after an iteration, once the experiment is interrupted."""


@dataclass(frozen=True)
class Arm:
    optimizer: Optimizer
    context: Context
    screen: int = 0

    @property
    def label(self) -> str:
        name = f"{self.optimizer} {self.context}" if self.optimizer.uses_llm else str(self.optimizer)
        return f"{name} +screen{self.screen}" if self.screen > 1 else name


def arms(optimizers, contexts, screens: Sequence[int | None] = (0,)) -> list[Arm]:
    """The grid's columns: each LLM context, each baseline (which reads no context) once, per screen
    (``None``: each optimizer's ``default_screen``)."""
    out: list[Arm] = []
    for optimizer in map(Optimizer, optimizers):
        for given in screens:
            screen = optimizer.default_screen if given is None else given
            if optimizer is Optimizer.MIX and screen < 2:
                continue  # the mix always chooses from a pool
            if optimizer.uses_llm:
                out.extend(Arm(optimizer, Context(c), screen) for c in contexts)
            else:
                out.append(Arm(optimizer, Context.SCORES_PROMPTS, screen))
    return list(dict.fromkeys(out))  # a default that equals a K given as well is one column


@dataclass(frozen=True)
class ExperimentConfig:
    out: Path
    prompts: tuple[str, ...]
    users: tuple[str, ...] = ()
    """Users with trained models; with ``general`` the crowd's taste is optimized instead."""
    general: bool = False
    optimizers: tuple[Optimizer, ...] = tuple(Optimizer)
    contexts: tuple[Context, ...] = (Context.NONE, Context.SCORES_PROMPTS, Context.FEEDBACK)
    screens: tuple[int | None, ...] = (0,)
    """K of each grid column; ``None``: each optimizer's own default."""
    repeats: int = 1
    parallel: int = 4
    """Runs at once (they share the server, and the LLM endpoint queues them)."""
    run: RunConfig = RunConfig()
    """The shape of every run; its user, prompt, optimizer, context, screen and seed are the grid's."""
    text_fallback: bool = False
    """With a text-only endpoint, run s+p+f+I as s+p+f."""
    shard: Shard = Shard()
    """The share of the grid this process runs (``shards.py``); by default all of it."""

    def checked(self) -> ExperimentConfig:
        if not self.prompts:
            raise InvalidRequestError("prompts", "give at least one prompt")
        if not self.general and not self.users:
            raise InvalidRequestError("users", "name at least one user (or optimize the general taste)")
        if self.repeats < 1 or self.parallel < 1:
            raise InvalidRequestError("repeats/parallel", "must be at least 1")
        self.shard.checked()
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
    key: str
    """``user/NN-prompt/arm-rR``: the run's name in the grid, the same on every machine."""
    folder: Path
    """``OUT/runs/<key>``."""
    config: RunConfig


@dataclass
class ExperimentResult:
    table: dict
    """Arm label -> the mean and spread of each figure over its runs (``aggregate``)."""
    runs: int
    """Runs in this process's share (the whole grid unless sharded)."""
    failures: list[str] = field(default_factory=list)
    shard: Shard = Shard()
    missing: list[str] = field(default_factory=list)
    """Runs of the grid the table leaves out (a partial ``merge``)."""

    def markdown(self, *, general: bool) -> str:
        note = "" if self.shard.whole else f"shard {self.shard}, {self.runs} runs"
        if self.missing:
            note = f"partial: {len(self.missing)} of the grid's runs missing"
        return markdown(self.table, general=general, note=note)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def jobs(config: ExperimentConfig, chat_config: ChatConfig) -> list[Job]:
    """Every run of the grid with its folder and checked configuration."""
    out = []
    for user in config.who:
        for p, prompt in enumerate(config.prompts):
            for arm in config.grid:
                for repeat in range(config.repeats):
                    key = f"{user}/{p:02d}-{_slug(prompt)}/{arm.label.replace(' ', '_')}-r{repeat}"
                    context = arm.context
                    if arm.optimizer.uses_llm:
                        context = check_context(context, chat_config, text_fallback=config.text_fallback)
                    run = dataclasses.replace(config.run, user=user, prompt=prompt, optimizer=arm.optimizer, context=context,
                                              screen=arm.screen, seed=config.run.seed + repeat).checked()
                    out.append(Job(arm, key, config.out / "runs" / key, run))
    return out


def grid_spec(config: ExperimentConfig, grid: list[Job]) -> dict:
    """What every shard of one experiment must agree on: written to each shard's manifest and
    compared by ``merge``. ``grid``: ``jobs(config, ...)``."""
    return {"users": list(config.who), "prompts": list(config.prompts), "general": config.general,
            "arms": [arm.label for arm in config.grid], "repeats": config.repeats, "text_fallback": config.text_fallback,
            "run": config.run.to_dict(),
            "runs": {job.key: {"arm": job.arm.label, "config": job.config.to_dict()} for job in grid}}


def run_experiment(config: ExperimentConfig, *, url=None, store=None, chat_config: ChatConfig | None = None,
                   on_run: Callable[[int, int], None] = lambda done, total: None) -> ExperimentResult:
    """Run (or resume) every run of the grid, or of ``config.shard``'s share of it, and write
    ``experiment.json`` and ``experiment.md`` to ``config.out`` (a shard writes its share's table to
    its manifest, ``OUT/shards/I-of-N.json``, instead). ``on_run(done, total)`` follows progress; a
    failed run is listed, not raised, so the others finish (the same call again resumes it)."""
    config = config.checked()
    chat_config = chat_config or ChatConfig.from_env()
    grid = jobs(config, chat_config)
    spec = grid_spec(config, grid)
    mine = set(config.shard.share(job.key for job in grid))
    share = [job for job in grid if job.key in mine]
    done_summaries: dict[str, dict] = {}
    failures: list[str] = []
    manifest = shards.manifest_path(config.out, config.shard)
    with ScoringClient(url) as client:
        with UserStore(store) as users:
            scorers = {u: session.user_scorer(users, client, u) for u in dict.fromkeys(job.config.user for job in share)}
        needs_llm = any(job.arm.optimizer.uses_llm for job in share)
        with session.chat_endpoint(chat_config, needed=needs_llm) as chat:

            stopping = threading.Event()

            def stop_if_asked(record=None) -> None:
                if stopping.is_set():
                    raise _Stopped

            def one(job: Job) -> dict:
                stop_if_asked()
                if (job.folder / CONFIG).exists():
                    state = session.resume_run(job.folder)
                else:
                    state = session.new_run(job.folder, job.config, scorers[job.config.user], client, chat_config)
                return session.execute(state, client, chat if job.arm.optimizer.uses_llm else None, on_iteration=stop_if_asked)

            _check_other_shards(config.out, spec, manifest)
            shards.write_manifest(config.out, config.shard, spec, mine)
            with ThreadPoolExecutor(max_workers=config.parallel) as pool:
                futures = {pool.submit(one, job): job for job in share}
                try:
                    for done, future in enumerate(as_completed(futures), 1):
                        try:
                            done_summaries[futures[future].key] = future.result()  # collected on this thread only
                        except PPOError as exc:
                            failures.append(str(exc))
                            logger.error("a run failed: %s", exc)
                        on_run(done, len(share))
                except BaseException:
                    # Ctrl-C or SIGTERM: runs not started never start, running ones stop after the
                    # iteration they are in (it is saved; the same command resumes the grid)
                    stopping.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    table = aggregate(_by_arm(spec, done_summaries))
    result = ExperimentResult(table, len(share), failures, config.shard)
    shards.write_manifest(config.out, config.shard, spec, mine, table=table, failures=failures)
    if config.shard.whole:
        _write_tables(config.out, spec, result)
    return result


def merge(folders: list[Path], out: Path, *, partial: bool = False) -> ExperimentResult:
    """The tables of one experiment from its shards' folders (each an ``experiment`` ``OUT``; one
    folder that several shards wrote into is enough), written as ``experiment.json`` and
    ``experiment.md`` to ``out``. Every run is read from its folder (``summary.json``), so the
    tables are those the unsharded experiment writes from the same runs.

    Refused (``DataError``) when the shards' manifests disagree on the grid or a run folder was run
    with another configuration; when runs are missing or unfinished, an ``OptimizationError`` names
    them, unless ``partial``, which summarises the finished ones."""
    folders = list(dict.fromkeys(Path(f).resolve() for f in folders))
    manifests = []
    for folder in folders:
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder")
        found = shards.read_manifests(folder)
        if not found:
            raise DataError(f"{folder} holds no experiment shard (no {shards.SHARDS}/I-of-N.json): give the folders that "
                            "`ppo-client experiment --out` wrote (an experiment started before shards existed writes one "
                            "when started again; finished runs are not redone)")
        manifests += found
    first, spec = manifests[0][0], manifests[0][1]["grid"]
    for path, content in manifests:
        how = shards.difference(spec, content["grid"])
        if how is not None:
            raise DataError(f"the shards disagree on the grid: {first} and {path} differ in {how}; run every shard with "
                            "the same grid flags (or merge only the folders of one grid)")
    summaries, sources, missing = {}, {}, []
    for key, expected in spec["runs"].items():
        for folder in folders:
            run = folder / "runs" / key
            summary = read_finished_summary(run)
            if summary is None:
                continue
            how = shards.run_difference(expected["config"], json.loads((run / CONFIG).read_text())["config"])
            if how is not None:
                raise DataError(f"{run} was run with {how}: it belongs to another grid; move it away and run its shard again")
            summaries[key], sources[key] = summary, str(folder)
            break
        else:
            missing.append(key)
    if missing and not partial:
        owners = shards.owners(missing, list(spec["runs"]), [content for _, content in manifests])
        listed = ", ".join(f"{k} (shard {owners[k]})" for k in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise OptimizationError(
            f"{len(missing)} of the grid's {len(spec['runs'])} runs are missing or unfinished: {listed}{more}; run their "
            f"shards again (the same command resumes them), or merge with --partial to summarise the {len(summaries)} there are"
        )
    result = ExperimentResult(aggregate(_by_arm(spec, summaries)), len(summaries), missing=missing)
    _write_tables(Path(out), spec, result, merged_from=[str(f) for f in folders], missing=missing, sources=sources)
    return result


def _by_arm(spec: dict, summaries: dict[str, dict]) -> dict[str, list[dict]]:
    """Finished runs' summaries by arm label, arms and runs in grid order (so that every way of
    reaching the same runs gives the same table, to the last digit)."""
    out: dict[str, list[dict]] = {label: [] for label in spec["arms"]}
    for key, run in spec["runs"].items():
        if key in summaries:
            out[run["arm"]].append(summaries[key])
    return {label: items for label, items in out.items() if items}


def _write_tables(out: Path, spec: dict, result: ExperimentResult, **extra) -> None:
    run = spec["run"]
    payload = {"users": spec["users"], "prompts": spec["prompts"], "general": spec["general"],
               "iterations": run["iterations"], "n_prompts": run["n_prompts"], "seeds": run["seeds"],
               "repeats": spec["repeats"], "table": result.table, "failures": result.failures, **extra}
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / "experiment.md").write_text(result.markdown(general=spec["general"]))


def _check_other_shards(out: Path, spec: dict, mine: Path) -> None:
    """A warning, not a refusal, when the folder holds another shard's manifest of a different grid
    (a stale one is overwritten when its shard runs again; ``merge`` refuses while they differ)."""
    try:
        others = [(path, content) for path, content in shards.read_manifests(out) if path != mine]
    except DataError as exc:
        logger.warning("%s", exc)
        return
    for path, content in others:
        how = shards.difference(content["grid"], spec)
        if how is not None:
            logger.warning("%s describes another grid (it differs in %s); merge will refuse until its shard is run "
                           "again with this grid's flags or the file is removed", path, how)


def aggregate(summaries: dict[str, list[dict]]) -> dict:
    table = {}
    for label, items in summaries.items():
        row: dict[str, Any] = {"runs": len(items)}
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


def markdown(table: dict, *, general: bool, note: str = "") -> str:
    shown = [c for c in COLUMNS if any(c in row for row in table.values())]
    title = "Table 2 shape (general preference)" if general else "Table 1 shape (personal preference)"
    lines = [f"{title}; mean ± std over runs" + (f" ({note})" if note else ""), "",
             "| optimizer | runs | " + " | ".join(shown) + " | LLM s | render s | prompts: llm / repaired / fallback |",
             "|---|---:|" + "---:|" * (len(shown) + 3)]
    for label, row in table.items():
        cells = [f"{row[c]['mean']:.2f} ± {row[c]['std']:.2f}" if c in row else "" for c in shown]
        lines.append(f"| {label} | {row['runs']} | " + " | ".join(cells)
                     + f" | {row['llm_s']:.0f} | {row['render_s']:.0f} | {_sources(row)} |")
    return "\n".join(lines) + "\n"


def _sources(row: dict) -> str:
    counts = [row.get(k, 0.0) for k in SOURCES]
    return " / ".join(f"{c:.1f}" for c in counts) if any(counts) else "-"
