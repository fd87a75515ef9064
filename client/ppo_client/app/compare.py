"""Blind comparison of a finished run: pairs of images at the same seeds, one from the person's own
prompt and one from the run's best rewrite of it (the best prompt the run found other than the
person's own; the best prompt itself whenever the run improved on it), sides shuffled and origins
hidden. The person's choices
give a win rate for the optimized prompt with a 95% interval; they are kept with the run
(``RUN/compare.json``, shown in its report) and, as pairwise preferences, in the user store.

The seeds are fresh (not the run's own), so the comparison is not judged on the images the
optimizer already saw.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import threading
from pathlib import Path

import numpy as np

from ppo_client.errors import InvalidRequestError, OptimizationError
from ppo_client.generation import GenerationRequest
from ppo_client.optimize.folder import CONFIG, finished, read_records
from ppo_client.optimize.report import refresh_report
from ppo_client.store import PoolEntry, UserStore

COMPARE = "compare.json"
PAIRS = 8
SEED_OFFSET = 500_000
"""Comparison seeds start here (run seeds are ``seed * 1000 + j``), so they are never the run's own."""
CHOICES = ("left", "right", "same")
_lock = threading.Lock()


def win_rate(pairs: list[dict]) -> dict:
    """Wins of the optimized prompt (a "same" counts half) over the answered pairs, with a Wilson 95% interval."""
    answered = [p for p in pairs if p.get("choice")]
    wins = sum(p["choice"] == p["optimized"] for p in answered)
    same = sum(p["choice"] == "same" for p in answered)
    n = len(answered)
    result = {"answered": n, "total": len(pairs), "optimized_preferred": wins, "same": same,
              "initial_preferred": n - wins - same, "win_rate": None, "interval": None}
    if n:
        rate = (wins + 0.5 * same) / n
        result["win_rate"], result["interval"] = rate, wilson(rate, n)
    return result


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def best_prompt(folder: Path) -> tuple[dict, str]:
    config = json.loads((folder / CONFIG).read_text())["config"]
    records = read_records(folder)
    if not finished(config, records):
        raise OptimizationError("the run has not finished; compare it once it has")
    rewrites = [p for r in records for p in r.prompts if p.prompt != config["prompt"]]
    if not rewrites:
        raise OptimizationError("the run holds no rewrite of the prompt: nothing to compare")
    return config, max(rewrites, key=lambda p: p.score).prompt


def prepare(folder: Path, client, store_path: str | Path) -> list[dict]:
    """The run's pairs, rendered and shuffled on first use and kept in ``compare.json`` thereafter."""
    path = folder / COMPARE
    with _lock:
        if path.exists():
            return json.loads(path.read_text())["pairs"]
        config, best = best_prompt(folder)
        seeds = [SEED_OFFSET + config["seed"] * 1000 + k for k in range(PAIRS)]
        hashes = {}
        for prompt in (config["prompt"], best):
            requests = [GenerationRequest(prompt, seed=s, steps=config["steps"], guidance_scale=config["guidance_scale"])
                        for s in seeds]
            entries = []
            for image in client.generate_batch(requests):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                entries.append(PoolEntry(buffer.getvalue(), "run", prompt))
            with UserStore(store_path) as store:
                hashes[prompt] = store.add_to_pool(entries)
        rng = np.random.default_rng(int(hashlib.sha256(folder.name.encode()).hexdigest()[:8], 16))
        pairs = []
        for k in range(PAIRS):
            optimized_left = bool(rng.integers(2))
            initial, optimized = hashes[config["prompt"]][k], hashes[best][k]
            left, right = (optimized, initial) if optimized_left else (initial, optimized)
            pairs.append({"k": k, "seed": seeds[k], "left": left, "right": right,
                          "optimized": "left" if optimized_left else "right", "choice": None})
        _save(path, {"initial_prompt": config["prompt"], "best_rewrite": best, "pairs": pairs})
        return pairs


def answer(folder: Path, k: int, choice: str, store_path: str | Path, user: str) -> dict:
    if choice not in CHOICES:
        raise InvalidRequestError("choice", f"must be one of {', '.join(CHOICES)}, got {choice!r}")
    path = folder / COMPARE
    with _lock:
        if not path.exists():
            raise OptimizationError("this run's pairs have not been prepared; open its comparison first")
        data = json.loads(path.read_text())
        if not 0 <= k < len(data["pairs"]):
            raise InvalidRequestError("pair", f"must be between 0 and {len(data['pairs']) - 1}, got {k}")
        pair = data["pairs"][k]
        pair["choice"] = choice
        data["result"] = win_rate(data["pairs"])
        _save(path, data)
    with UserStore(store_path) as store:
        store.add_comparison(user, pair["left"], pair["right"], choice, context=f"run:{folder.name}:pair:{k}")

    refresh_report(folder)
    return data["result"]


def public(pairs: list[dict]) -> list[dict]:
    """What the page may see: the images and the choice, never which side is which prompt."""
    return [{"k": p["k"], "left": p["left"], "right": p["right"], "choice": p["choice"]} for p in pairs]


def _save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
