"""Taste per rendered image: how fast does each optimizer raise a virtual user's *true* taste?

Every image costs a diffusion run, so the arms get the same image budget: N = 4 prompts x M = 2
seeds, iteration 0 renders the user's prompt and 4 rewrites (10 images), each later iteration 8, so
10 iterations are 90 images. Screened arms screen from iteration 0, where the user's head alone ranks
the candidates' texts. Arms: ``llm s+p``, ``ga`` and ``random``, and with ``--screen K`` the
llm and ga arms again with screening (K x N candidates proposed, the N with the best calibrated
text-embedding prediction rendered). Users are the first ``--users`` virtual users of the demo set,
imported and trained with ``bayes`` as ``make demo`` does (shared with ``blind_comparison.py``).

After every iteration a run records its best learned score so far and the true (noise-free) taste
of that prompt's images; the gain is that minus the user's own prompt's. Also recorded: where the
LLM arms' prompts came from (LLM, repaired, keyword fallback), and the screen's calibration (rank
correlation of its predictions with the measured scores of what it chose), by persona archetype.
Every rendered prompt is checked for contradictions and the word budget.

    make demo                                       # the demo rating set, reused here
    python benchmarks/optimizer_efficiency.py       # 8 users x 2 prompts x 5 arms, 90 images each

Results: ``benchmarks/results/optimize/efficiency.{json,md,svg}``. Run folders are kept under
``--work``; the same command again resumes a stopped benchmark.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from blind_comparison import PROMPTS, run_personas, step, world, world_arguments, write_results

from ppo_client.optimize.folder import read_records
from ppo_client.optimize.hygiene import PromptRules
from ppo_client.plots import line_chart

RESULTS = Path(__file__).parent / "results" / "optimize"


def run_curves(folder: Path) -> dict:
    records = read_records(folder)
    summary = json.loads((folder / "summary.json").read_text())
    stored = json.loads((folder / "config.json").read_text())
    images = np.cumsum([sum(len(p.images) for p in r.prompts) for r in records]).tolist()
    rules = PromptRules.for_prompt(stored["config"]["prompt"])
    rendered = [p.prompt for r in records for p in r.prompts if not p.initial]
    personas = run_personas(stored) or [{}]
    return {
        "run": folder.name, "user": stored["config"]["user"], "prompt": stored["config"]["prompt"],
        "archetype": personas[0].get("archetype", ""),
        "images": images,
        "learned_gain": [b - summary["init"] for b in summary["best_so_far"]],
        "true_gain": [b - summary["true_init"] for b in summary["true_best_so_far"]],
        "llm_prompts": summary.get("llm_prompts", 0), "repaired_prompts": summary.get("repaired_prompts", 0),
        "fallback_prompts": summary.get("fallback_prompts", 0), "prompts": len(rendered),
        "calibration": [r.calibration for r in records if r.calibration is not None],
        "head_calibration": records[0].calibration,  # iteration 0: the head alone
        "unclean_prompts": [p for p in rendered if rules.problems(p)],
    }


def by_arm(runs: list[dict]) -> dict:
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        length = min(len(r["true_gain"]) for r in mine)
        true = np.array([r["true_gain"][:length] for r in mine])
        learned = np.array([r["learned_gain"][:length] for r in mine])
        prompts = sum(r["prompts"] for r in mine)
        calibration = [c for r in mine for c in r["calibration"]]
        head_calibration = [r["head_calibration"] for r in mine if r.get("head_calibration") is not None]
        archetypes = {}
        for r in mine:
            if r["calibration"]:
                archetypes.setdefault(r["archetype"], []).extend(r["calibration"])
        out[arm] = {
            "runs": len(mine), "images": mine[0]["images"][:length],
            "true_gain_mean": true.mean(0).tolist(), "true_gain_sd": true.std(0).tolist(),
            "learned_gain_mean": learned.mean(0).tolist(), "learned_gain_sd": learned.std(0).tolist(),
            "llm_share": (sum(r["llm_prompts"] + r["repaired_prompts"] for r in mine) / prompts) if arm.startswith("llm") else None,
            "fallback_prompts": sum(r["fallback_prompts"] for r in mine),
            "calibration_mean": float(np.mean(calibration)) if calibration else None,
            "head_calibration_mean": float(np.mean(head_calibration)) if head_calibration else None,
            "calibration_by_archetype": {a: float(np.mean(v)) for a, v in sorted(archetypes.items())},
            "unclean_prompts": sum(len(r["unclean_prompts"]) for r in mine), "rendered_prompts": prompts,
        }
    return out


def images_to_reach(arm: dict, target: float) -> int | None:
    for images, gain in zip(arm["images"], arm["true_gain_mean"]):
        if gain >= target:
            return images
    return None


def compare_screens(arms: dict) -> dict:
    """The best screened arm against the best unscreened one: final gains, and the images the screened
    one needed to reach the unscreened one's final gain."""
    screened = {a: s for a, s in arms.items() if "+screen" in a}
    plain = {a: s for a, s in arms.items() if "+screen" not in a}
    if not screened or not plain:
        return {}
    best_plain = max(plain, key=lambda a: plain[a]["true_gain_mean"][-1])
    best_screened = max(screened, key=lambda a: screened[a]["true_gain_mean"][-1])
    target = plain[best_plain]["true_gain_mean"][-1]
    return {
        "best_unscreened": best_plain, "best_screened": best_screened,
        "unscreened_final_true_gain": target, "screened_final_true_gain": screened[best_screened]["true_gain_mean"][-1],
        "difference": screened[best_screened]["true_gain_mean"][-1] - target,
        "images_budget": plain[best_plain]["images"][-1],
        "screened_images_to_reach_it": images_to_reach(screened[best_screened], target),
    }


def markdown(result: dict) -> str:
    arms = result["arms"]
    lines = [f"{result['users']} demo users x {len(result['prompts'])} prompts, N = 4 prompts x 2 seeds per iteration, "
             f"{result['iterations']} iterations ({result['budget']} images per run); true-taste gain of the best learned "
             "prompt so far over the user's own prompt, mean ± sd over runs.", "",
             "| arm | runs | true gain at 26 / 50 / final images | learned gain, final | LLM share | screen calibration | unclean prompts |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for arm, s in arms.items():
        at = {i: (m, d) for i, m, d in zip(s["images"], s["true_gain_mean"], s["true_gain_sd"])}
        cells = " / ".join(f"{at[i][0]:+.2f} ± {at[i][1]:.2f}" if i in at else "-" for i in (26, 50, s["images"][-1]))
        share = "-" if s["llm_share"] is None else f"{s['llm_share']:.0%}"
        calibration = "-" if s["calibration_mean"] is None else f"{s['calibration_mean']:.2f}"
        lines.append(f"| {arm} | {s['runs']} | {cells} | {s['learned_gain_mean'][-1]:+.2f} ± {s['learned_gain_sd'][-1]:.2f} "
                     f"| {share} | {calibration} | {s['unclean_prompts']} of {s['rendered_prompts']} |")
    c = result.get("screens") or {}
    if c:
        reach = c["screened_images_to_reach_it"]
        lines += ["", f"Best screened arm `{c['best_screened']}`: final true gain {c['screened_final_true_gain']:+.2f} vs "
                      f"{c['unscreened_final_true_gain']:+.2f} for the best unscreened arm `{c['best_unscreened']}` "
                      f"({c['difference']:+.2f}); it reached that gain after "
                      + (f"{reach} of {c['images_budget']} images." if reach else "never, within the budget.")]
    heads = {a: s["head_calibration_mean"] for a, s in arms.items() if s.get("head_calibration_mean") is not None}
    if heads:
        lines += ["", "Iteration 0, before anything is rendered, ranks by the user's head alone; its calibration: "
                      + ", ".join(f"`{a}` {v:.2f}" for a, v in heads.items()) + "."]
    by_archetype = {a: s["calibration_by_archetype"] for a, s in arms.items() if s["calibration_by_archetype"]}
    if by_archetype:
        archetypes = sorted({k for v in by_archetype.values() for k in v})
        lines += ["", "Screen calibration by persona archetype (mean rank correlation per iteration):", "",
                  "| arm | " + " | ".join(archetypes) + " |", "|---|" + "---:|" * len(archetypes)]
        for arm, v in by_archetype.items():
            lines.append(f"| {arm} | " + " | ".join(f"{v[a]:.2f}" if a in v else "-" for a in archetypes) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict) -> str:
    arms = result["arms"]
    series = {a: s["true_gain_mean"] for a, s in arms.items()}
    spread = {a: ([m - d for m, d in zip(s["true_gain_mean"], s["true_gain_sd"])],
                  [m + d for m, d in zip(s["true_gain_mean"], s["true_gain_sd"])]) for a, s in arms.items()}
    images = next(iter(arms.values()))["images"]
    return line_chart(series, spread=spread, x_label="images rendered (true-taste gain, mean ± sd)", x_values=images,
                      width=720, height=320)


def run(args) -> dict:
    started = time.perf_counter()
    with world(args) as (work, store, url, users):
        common = ["--users", ",".join(users), "--iterations", str(args.iterations), "--n-prompts", "4", "--seeds", "2",
                  "--steps", "20", "--parallel", str(args.parallel), "--store", str(store), "--url", url,
                  "--out", str(work / "experiment"), "--llm-timeout", str(args.llm_timeout)]
        for prompt in PROMPTS[: args.prompts]:
            common += ["--prompt", prompt]
        screens = f"0,{args.screen}" if args.screen > 1 else "0"
        step("experiment", "--optimizers", "llm,ga", "--contexts", "s+p", "--screens", screens, *common)
        step("experiment", "--optimizers", "random", *common)
    runs = []
    for folder in sorted((work / "experiment" / "runs").glob("*/*/*")):
        if (folder / "summary.json").exists():
            runs.append({"arm": folder.name.rsplit("-r", 1)[0].replace("_", " "), **run_curves(folder)})
    arms = by_arm(runs)
    return {"users": len(users), "prompts": list(PROMPTS[: args.prompts]), "iterations": args.iterations,
            "budget": 10 + 8 * args.iterations, "screen": args.screen, "arms": arms, "screens": compare_screens(arms),
            "runs": runs, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    world_arguments(parser, work="build/efficiency", out=RESULTS)
    parser.add_argument("--iterations", type=int, default=10, help="after iteration 0 (10: 90 images per run)")
    parser.add_argument("--screen", type=int, default=4, help="K of the screened arms (0 or 1: none)")
    parser.add_argument("--llm-timeout", type=float, default=300.0,
                        help="seconds per LLM call: parallel runs queue at the one local LLM (default %(default)s)")
    args = parser.parse_args()
    result = run(args)
    write_results(Path(args.out), "efficiency", result, markdown(result), svg=plot(result) + "\n")


if __name__ == "__main__":
    main()
