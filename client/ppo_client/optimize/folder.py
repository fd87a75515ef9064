"""One optimization run's folder, which always holds everything finished so far.

    RUN/config.json        written before iteration 0 (the head used is in RUN/head.bin)
    RUN/reference.npz      the user's rated images' embeddings and ratings (for max sim)
    RUN/iterations.jsonl   one line per finished iteration, flushed and synced before the next
    RUN/images/itNN/       every generated image
    RUN/summary.json, RUN/report.html   rewritten after each iteration and at the end

One process at a time works in a run folder (``RUN/.lock``); a second is refused with the PID.
A resumed run reads the folder and goes on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppo_client.errors import InvalidRequestError, OptimizationError
from ppo_client.head import PreferenceHead
from ppo_client.locking import FolderLock
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.cost import Cost
from ppo_client.optimize.parsing import normalise
from ppo_client.optimize.proposers import ScoredPrompt
from ppo_client.optimize.records import IterationRecord

logger = logging.getLogger(__name__)

CONFIG, ITERATIONS, SUMMARY, HEAD, REFERENCE = "config.json", "iterations.jsonl", "summary.json", "head.bin", "reference.npz"


@dataclass(frozen=True)
class RunInfo:
    """What ``config.json`` holds beside the run's configuration."""

    scorer: str = ""
    """What the head is: ``user:alice model 3 (bayes)`` or ``general (N users)``."""
    encoder: str = ""
    """The served image encoder the head was trained for."""
    llm: dict | None = None
    """The LLM endpoint (base URL and model; never a key), or ``{"embedded": true}``."""
    truth: dict | None = None
    """Known true taste behind the scorer (``truth.find``), or None."""


@dataclass
class RunState:
    folder: Path
    config: RunConfig
    head: PreferenceHead
    records: list[IterationRecord]
    """Finished iterations, as written to iterations.jsonl."""
    info: RunInfo = RunInfo()
    lock: FolderLock | None = None
    """Held from creating or loading the run until ``close``."""

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def history(self) -> list[list[ScoredPrompt]]:
        return [[ScoredPrompt(p.prompt, p.score, p.description, proposer=p.proposer) for p in r.prompts] for r in self.records]

    def seen(self) -> set[str]:
        return {normalise(p.prompt) for r in self.records for p in r.prompts}

    @property
    def done(self) -> bool:
        return finished(self.config, self.records)

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        data = np.load(self.folder / REFERENCE)
        return data["embeddings"], data["ratings"]

    def stored_config(self) -> dict:
        return json.loads((self.folder / CONFIG).read_text())


def finished(config: RunConfig | dict, records: list[IterationRecord]) -> bool:
    """Every iteration is done, or the next could take the run over its UNet budget."""
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    if len(records) > config.iterations:
        return True
    costs = [Cost.from_dict(r.cost) for r in records]
    scheduler = costs[-1].scheduler if costs else ""
    spent = sum(c.total_unet for c in costs)
    return bool(config.unet_budget) and spent + config.planned_unet(len(records), scheduler) > config.unet_budget


def write_json(path: Path, value) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def _lock(folder: Path) -> FolderLock:
    return FolderLock(folder, error=OptimizationError, what="optimization run").acquire()


def create_run(folder: Path, config: RunConfig, head: PreferenceHead, info: RunInfo,
               reference: tuple[np.ndarray, np.ndarray]) -> RunState:
    folder = Path(folder)
    lock = _lock(folder)
    try:
        if (folder / CONFIG).exists():
            raise OptimizationError(f"{folder} already holds a run; continue it with --resume {folder} or choose another --run-dir")
        (folder / HEAD).write_bytes(head.to_bytes())
        np.savez(folder / REFERENCE, embeddings=reference[0], ratings=reference[1])
        write_json(folder / CONFIG, {"config": config.to_dict(), "head_digest": head.digest, "scorer": info.scorer,
                                     "encoder": info.encoder, "llm": info.llm, "truth": info.truth})
    except BaseException:
        lock.release()
        raise
    return RunState(folder, config, head, [], info, lock)


def _info(stored: dict) -> RunInfo:
    truth = stored.get("truth")
    if truth is None and stored.get("personas"):  # written before true taste became a provider's
        truth = {"provider": "personas", "spec": {"personas": stored["personas"]}}
    return RunInfo(stored.get("scorer", ""), stored.get("encoder", ""), stored.get("llm"), truth)


def load_run(folder: Path) -> RunState:
    folder = Path(folder)
    if not (folder / CONFIG).exists():
        raise OptimizationError(f"{folder} holds no run to resume (no {CONFIG})")
    lock = _lock(folder)
    try:
        try:
            stored = json.loads((folder / CONFIG).read_text())
            config = RunConfig.from_dict(stored["config"]).checked()  # the file may have been edited
            head = PreferenceHead.from_bytes((folder / HEAD).read_bytes())
        except (OSError, ValueError, KeyError, TypeError, InvalidRequestError) as exc:
            raise OptimizationError(f"{folder} is not a run folder this version can resume ({exc})") from exc
        records = _read_iterations(folder / ITERATIONS)
    except BaseException:
        lock.release()
        raise
    return RunState(folder, config, head, records, _info(stored), lock)


def read_records(folder: Path) -> list[IterationRecord]:
    """The finished iterations of a run folder, for readers that do not work in it (the app, reports):
    the complete ones in order, up to the first line that is not one. Changes nothing on disk."""
    path = Path(folder) / ITERATIONS
    if not path.exists():
        return []
    records: list[IterationRecord] = []
    for line in path.read_text(errors="replace").splitlines():
        record = _parse_record(line)
        if record is None or record.iteration != len(records):
            break
        records.append(record)
    return records


def read_finished_summary(folder: Path) -> dict | None:
    """The ``summary.json`` of a finished run, for readers that do not work in it (merging an
    experiment's shards); None if the folder holds no run, the run has iterations left, or its summary
    is not yet that of its last iteration. Changes nothing on disk."""
    folder = Path(folder)
    try:
        stored = json.loads((folder / CONFIG).read_text())
        summary = json.loads((folder / SUMMARY).read_text())
        records = read_records(folder)
        done = bool(records) and finished(stored["config"], records)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not done or not isinstance(summary, dict) or summary.get("iterations_done") != len(records) - 1:
        return None
    return summary


def _read_iterations(path: Path) -> list[IterationRecord]:
    """The complete iterations in order, up to the first damaged or out-of-order line. What follows
    it is redone; the file as it was is kept beside it, so nothing read here is lost."""
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    records: list[IterationRecord] = []
    for number, line in enumerate(lines, 1):
        record = _parse_record(line)
        if record is None or record.iteration != len(records):
            later = sum(_parse_record(rest) is not None for rest in lines[number:])
            backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
            shutil.copyfile(path, backup)
            logger.warning(
                "%s line %d is damaged or out of order; iteration %d%s will be redone (the file as it was is kept as %s)",
                path, number, len(records), f" and the {later} complete iteration(s) after it" if later else "", backup.name,
            )
            break
        records.append(record)
    if len(records) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
        os.replace(tmp, path)
    return records


def _parse_record(line: str) -> IterationRecord | None:
    try:
        data = json.loads(line)
        return IterationRecord.from_dict(data) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def append_record(state: RunState, record: IterationRecord) -> None:
    with open(state.folder / ITERATIONS, "a") as handle:
        handle.write(json.dumps(record.to_dict()) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    state.records.append(record)
