"""Recorded runs replayed through the screen's predictor: how well would it have ranked what they rendered?

A screened run records, for every prompt it rendered, what its screen predicted and what the render
scored. This replays those runs offline: at each iteration k >= 1 the predictor is fitted on all that
was rendered before k and predicts what k rendered, exactly as the screen does in a live run. It
ranks predictors on the same renders in seconds instead of hours of new runs; what it cannot see is
how a different predictor would have chosen differently (a live run still has the last word).

Predictors compared, per arm (the run folder's name without its ``-rN`` repeat):

- ``recorded``: what the run's own screen predicted, as it ran;
- ``ensemble``: today's screen (``ppo_client.optimize.screen``): the equal-weight mean over its grid;
- ``by leave-one-out``: its one member with the least exact leave-one-out error;
- ``by likelihood``: its one member with the highest marginal likelihood;
- ``weighted by likelihood``: its members averaged with weights proportional to their marginal
  likelihoods (Bayesian model averaging over the grid, a flat prior on it).

Texts are embedded by the served CLIP: a Triton server on the work folder's models (started here,
as ``blind_comparison.py`` does) or ``--url``.

    python benchmarks/optimizer_efficiency.py --groups greedy:ga --screen 4,32 --work build/efficiency
    python benchmarks/screen_replay.py --work build/efficiency

Results: ``benchmarks/results/optimize/screen_replay.{json,md}`` (``--name`` for another name).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from blind_comparison import run_personas, triton, write_results

from ppo_client.console import sigterm_as_exit
from ppo_client.head import PreferenceHead
from ppo_client.optimize import screen
from ppo_client.optimize.folder import HEAD, ITERATIONS, read_records
from ppo_client.piaa.metrics import spearman
from ppo_client.scoring import ScoringClient

RESULTS = Path(__file__).parent / "results" / "optimize"
PREDICTORS = ("recorded", "ensemble", "by leave-one-out", "by likelihood", "weighted by likelihood")


def run_folders(work: Path) -> list[Path]:
    return sorted(f.parent for f in work.rglob(ITERATIONS) if (f.parent / HEAD).exists())


def member_errors(predictor: screen.Predictor, scores: np.ndarray, rule: str) -> np.ndarray:
    """Each member's error under ``rule``, in ``Predictor.members``' order: its exact leave-one-out
    mean squared error, or its negative log marginal likelihood (the signal variance at its maximum,
    constants dropped)."""
    residual = scores - predictor.offset
    n = len(residual)
    errors = []
    for kernel in predictor.kernels:
        for ridge, alpha, tau2 in zip(screen.RIDGE_GRID, kernel.alphas, kernel.tau2, strict=True):
            if rule == "by leave-one-out":
                diagonal = (kernel.vectors**2) @ (1.0 / (kernel.values + ridge))  # of (K + ridge I)^-1
                errors.append(float(np.mean((alpha / diagonal) ** 2)))
            else:
                errors.append(0.5 * n * np.log(tau2) + 0.5 * float(np.sum(np.log(kernel.values + ridge))))
    return np.array(errors)


def chosen_member(predictor: screen.Predictor, scores: np.ndarray, rule: str) -> int:
    """The index of the member ``rule`` would have chosen alone."""
    return int(np.argmin(member_errors(predictor, scores, rule)))


def replay(folder: Path, embed) -> dict:
    """Each predictor's calibration on one run (pooled, and the mean over iterations)."""
    records = read_records(folder)
    head = PreferenceHead.from_bytes((folder / HEAD).read_bytes())
    texts = embed([p.prompt for r in records for p in r.prompts])
    predicted: dict[str, list[float]] = {name: [] for name in PREDICTORS}
    measured: list[float] = []
    per_iteration: dict[str, list[float]] = {name: [] for name in PREDICTORS}
    offset = len(records[0].prompts)
    for k in range(1, len(records)):
        scores = np.array([p.score for r in records[:k] for p in r.prompts])
        new = records[k].prompts
        if any(p.predicted is None for p in new):
            return {}  # not a screened run
        predictor = screen.fit(head, texts[:offset], scores)
        candidates = texts[offset:offset + len(new)]
        offset += len(new)
        members, _ = predictor.members(candidates)
        guesses = {"recorded": [p.predicted for p in new], "ensemble": predictor(candidates)}
        for rule in ("by leave-one-out", "by likelihood"):
            guesses[rule] = members[chosen_member(predictor, scores, rule)] if predictor.kernels else members
        if predictor.kernels:
            nll = member_errors(predictor, scores, "by likelihood")
            weights = np.exp(nll.min() - nll)
            guesses["weighted by likelihood"] = weights @ members / weights.sum()
        else:
            guesses["weighted by likelihood"] = members
        measured.extend(p.score for p in new)
        for name, values in guesses.items():
            predicted[name].extend(float(v) for v in values)
            value = screen.calibration(values, [p.score for p in new])
            if value is not None:
                per_iteration[name].append(value)
    stored = json.loads((folder / "config.json").read_text())
    return {
        "run": str(folder), "arm": folder.name.rsplit("-r", 1)[0],
        "archetype": (run_personas(stored) or [{}])[0].get("archetype", ""),
        "pooled": {name: float(spearman(np.array(v), np.array(measured))) for name, v in predicted.items()},
        "per_iteration": {name: float(np.mean(v)) if v else None for name, v in per_iteration.items()},
    }


def summarize(runs: list[dict]) -> dict:
    arms: dict[str, dict] = {}
    for arm in sorted({r["arm"] for r in runs}):
        mine = [r for r in runs if r["arm"] == arm]
        by_archetype: dict[str, list[float]] = {}
        for r in mine:
            by_archetype.setdefault(r["archetype"], []).append(r["pooled"]["ensemble"])
        arms[arm] = {
            "runs": len(mine),
            "pooled": {n: float(np.mean([r["pooled"][n] for r in mine])) for n in PREDICTORS},
            "per_iteration": {n: float(np.mean([r["per_iteration"][n] for r in mine if r["per_iteration"][n] is not None]))
                              for n in PREDICTORS},
            "ensemble_pooled_by_archetype": {a: float(np.mean(v)) for a, v in sorted(by_archetype.items())},
        }
    return arms


def markdown(arms: dict, work: str) -> str:
    lines = [f"# Screen replay ({work})", "",
             "Calibration (rank correlation of predicted and measured scores of the rendered prompts), "
             "pooled over each run / mean per iteration, averaged over runs.", "",
             "| arm | runs | " + " | ".join(PREDICTORS) + " | ensemble's lowest archetype (pooled) |",
             "|---|---:|" + "---:|" * (len(PREDICTORS) + 1)]
    for arm, row in arms.items():
        cells = [f"{row['pooled'][n]:.3f} / {row['per_iteration'][n]:.3f}" for n in PREDICTORS]
        archetype, lowest = min(row["ensemble_pooled_by_archetype"].items(), key=lambda kv: kv[1])
        lines.append(f"| {arm} | {row['runs']} | " + " | ".join(cells) + f" | {lowest:.3f} ({archetype}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="build/efficiency", help="a work folder of optimizer_efficiency.py or blind_comparison.py")
    parser.add_argument("--url", default=None, help="a Triton server with the demo models (default: start one on --work)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--name", default="screen_replay")
    args = parser.parse_args()
    folders = run_folders(Path(args.work))
    if not folders:
        raise SystemExit(f"no run folders under {args.work}")
    embedded: dict[str, np.ndarray] = {}
    with triton(args) as url, ScoringClient(url) as client:
        def embed(prompts: list[str]) -> np.ndarray:
            missing = [p for p in dict.fromkeys(prompts) if p not in embedded]
            if missing:
                embedded.update(zip(missing, np.asarray(client.embed_texts(missing).embeddings, np.float32), strict=True))
            return np.stack([embedded[p] for p in prompts])

        runs = [r for r in (replay(folder, embed) for folder in folders) if r]
    if not runs:
        raise SystemExit(f"no screened runs under {args.work}")
    arms = summarize(runs)
    write_results(Path(args.out), args.name, {"work": args.work, "arms": arms, "runs": runs}, markdown(arms, args.work))


if __name__ == "__main__":
    with sigterm_as_exit():  # the server it started stops on `kill` too
        main()
