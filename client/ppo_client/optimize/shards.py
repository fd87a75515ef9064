"""Shards: one grid's runs split between machines (or processes) that share nothing but the grid's
flags, the Triton server and the user store.

Shard ``I/N`` (``I`` counted from 1) takes the runs at positions ``I - 1``, ``I - 1 + N``, ... of the
grid's run keys sorted by their SHA-256 digest: every process computes the same split from the keys
alone, each run lands in exactly one shard, shard sizes differ by at most one, and a grid's arms are
spread over the shards rather than one shard getting every run of a slow arm.

Every ``experiment`` process writes its manifest, ``OUT/shards/I-of-N.json`` (``1-of-1.json``
unsharded), before its first run and again when its share is done: the grid (users, prompts, arms,
repeats and every run's configuration), its share and, when done, its share's table. ``merge``
checks that the manifests agree and builds the tables from the run folders.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ppo_client.errors import DataError, InvalidRequestError
from ppo_client.optimize.config import RunConfig, SubjectAnchor
from ppo_client.optimize.folder import write_json

SHARDS = "shards"
"""The folder, in an experiment's ``OUT``, of its processes' manifests."""
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``, counted from 1; ``Shard()`` is the whole grid."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` with ``1 <= I <= N``; anything else is an ``InvalidRequestError`` naming ``--shard``."""
        match = _SPEC.fullmatch(text or "")
        if match is None:
            raise InvalidRequestError("--shard", f"must be I/N, shard I of N counted from 1 (e.g. 1/4), got {text!r}")
        return cls(int(match[1]), int(match[2])).checked()

    def checked(self) -> Shard:
        if not isinstance(self.count, int) or self.count < 1:
            raise InvalidRequestError("--shard", f"N must be 1 or more, got {self.count!r}")
        if not isinstance(self.index, int) or not 1 <= self.index <= self.count:
            raise InvalidRequestError("--shard", f"I must be from 1 to N = {self.count} (counted from 1), got {self.index!r}")
        return self

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def name(self) -> str:
        """``I-of-N``, the manifest's file name without ``.json``."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def share(self, keys: Iterable[str]) -> list[str]:
        """This shard's keys, in the order given."""
        keys = list(keys)
        owner = assign(keys, self.count)
        return [k for k in keys if owner[k] == self.index]


def assign(keys: Iterable[str], count: int) -> dict[str, int]:
    """Each key's shard (1..``count``): round-robin over the keys sorted by their SHA-256 digest.
    Depends on the set of keys only, not on their order or on anything else in the process."""
    unique = sorted(set(keys), key=lambda k: (hashlib.sha256(k.encode()).hexdigest(), k))
    return {key: position % count + 1 for position, key in enumerate(unique)}


def manifest_path(out: Path, shard: Shard) -> Path:
    return Path(out) / SHARDS / f"{shard.name}.json"


def write_manifest(out: Path, shard: Shard, grid: dict, runs: Iterable[str], *, table: dict | None = None,
                   failures: list[str] | None = None) -> Path:
    """``OUT/shards/I-of-N.json``: the grid, this shard's runs and, once its share is done, its table."""
    path = manifest_path(out, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"shard": str(shard), "grid": grid, "runs": sorted(runs), "done": table is not None}
    if table is not None:
        content.update(table=table, failures=failures or [])
    write_json(path, content)
    return path


def owners(keys: Iterable[str], grid: list[str], manifests: list[dict]) -> dict[str, str]:
    """Which shard runs each of ``keys`` (``"2/4"``), under every split the manifests were made with
    (``"2/4 or 1/1"`` where a grid was run both ways): what to run again for a missing run."""
    counts = sorted({Shard.parse(m["shard"]).count for m in manifests}, reverse=True)
    splits = {count: assign(grid, count) for count in counts}
    return {key: " or ".join(f"{splits[count][key]}/{count}" for count in counts) for key in keys}


def read_manifests(folder: Path) -> list[tuple[Path, dict]]:
    """The manifests an experiment folder holds, ``(path, content)``; a damaged one is a ``DataError``."""
    found = []
    for path in sorted((Path(folder) / SHARDS).glob("*-of-*.json")):
        try:
            content = json.loads(path.read_text())
            runs = content["grid"]["runs"]
            if not all(isinstance(run, dict) and isinstance(run.get("config"), dict) for run in runs.values()):
                raise ValueError("a run without its configuration")
            Shard.parse(content["shard"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path} is not an experiment shard's manifest ({type(exc).__name__}: {exc})") from None
        found.append((path, content))
    return found


def difference(a: dict, b: dict) -> str | None:
    """How two grids differ, in words (``"iterations (2 vs 3)"``), or None when they are the same grid."""
    for field in ("users", "prompts", "general", "arms", "repeats", "text_fallback"):
        if a.get(field) != b.get(field):
            return f"{field} ({_short(a.get(field))} vs {_short(b.get(field))})"
    shape_a, shape_b = a.get("run") or {}, b.get("run") or {}
    for field in sorted(set(shape_a) | set(shape_b)):
        if field not in ("user", "prompt", "optimizer", "context", "screen") and shape_a.get(field) != shape_b.get(field):
            return f"{field} ({_short(shape_a.get(field))} vs {_short(shape_b.get(field))})"
    runs_a, runs_b = a.get("runs") or {}, b.get("runs") or {}
    if set(runs_a) != set(runs_b):
        only = sorted(set(runs_a) ^ set(runs_b))
        return f"their runs ({only[0]} is in one grid only)"
    for key in runs_a:
        one, other = _flat(runs_a[key]), _flat(runs_b[key])
        if one != other:
            field = next(f for f in sorted(set(one) | set(other)) if one.get(f) != other.get(f))
            return f"run {key}'s {field} ({_short(one.get(field))} vs {_short(other.get(field))})"
    return None


def _flat(run: dict) -> dict:
    """A grid run (``{"arm": label, "config": {...}}``) as one level of fields."""
    return {"arm": run.get("arm"), **run["config"]}


def run_difference(expected: dict, stored: dict) -> str | None:
    """How a run folder's stored configuration differs from the grid's configuration for it, or None.
    An ``auto`` subject anchor is decided when the run starts, so it matches either choice."""
    try:
        stored = RunConfig.from_dict(stored).to_dict()
    except (TypeError, ValueError) as exc:
        return f"an unreadable configuration ({exc})"
    for field, value in expected.items():
        if field == "subject_anchor" and value == SubjectAnchor.AUTO.value:
            continue
        if stored.get(field) != value:
            return f"{field} {_short(stored.get(field))} (the grid's: {_short(value)})"
    return None


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
