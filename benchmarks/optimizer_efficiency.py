"""Taste per UNet evaluation: how fast does each optimizer raise a virtual user's *true* taste?

Every arm gets the same budget of UNet evaluations (``--unet-budget``, default: what 10 iterations of
N = 4 prompts x M = 2 seeds at 20 steps cost after iteration 0's 5 prompts, i.e. 90 images; an
image costs its scheduler's denoising calls, x2 with guidance, and previews count too). A run stops
before the iteration that would overspend it, so arms that preview (or that are cheaper per
iteration) run a different number of iterations. Users are the first ``--users`` virtual users of
the demo set, imported and trained with ``bayes`` as ``make demo`` does (shared with
``blind_comparison.py``).

Arm groups (``--groups``), each one ``ppo-client experiment`` into its own folder:

- ``plain``: ``llm s+p``, ``ga``, ``random``, rendering what they propose;
- ``greedy``: ``llm s+p`` and ``ga`` with the greedy screen (``--explore 0``, the screen as it
  was before it weighed uncertainty; label suffix `` greedy``);
- ``ucb``: ``llm s+p``, ``ga`` and ``mix s+p`` with the uncertainty-aware screen (UCB with an
  in-batch diversity penalty);
- ``preview``: ``mix s+p`` and ``ga`` with the same screen plus previews at ``--preview-steps`` of
  ``--preview`` x N shortlisted candidates, with ``--preview-scheduler`` (label suffix
  `` +previewS [scheduler]``).

After every iteration a run records its best learned score so far, the true (noise-free) taste of
that prompt's images, and the UNet evaluations spent. Curves are compared on a common grid of UNet
evaluations (each run's value at x is that after its last iteration within x), and images rendered
stay a second view. Also reported: paired run-by-run differences of the final true gain against a
reference arm (``--reference``), the UNet evaluations an arm needed to reach the reference's final
gain, the mix's proposer shares per iteration, the screen's calibration (per iteration, pooled over
a run, by persona archetype, each beside the ceiling a screen blind to the run's seeds could reach)
and how often the best rendered prompt was one a greedy screen would not have chosen, and the
previews' rank correlation with the full renders.

    make demo                                                  # the demo rating set, reused here
    python benchmarks/optimizer_efficiency.py                  # 8 users x 2 prompts, every group (hours)
    python benchmarks/optimizer_efficiency.py --users 2 --prompts 1 --groups greedy,ucb,preview   # a quick look
    python benchmarks/optimizer_efficiency.py --prompts 1 --groups greedy:ga,preview:mix         # two arms, 8 users

Results: ``benchmarks/results/optimize/efficiency.{json,md,svg}``. Run folders are kept under
``--work``; the same command again resumes a stopped benchmark.

Across machines (docs/optimization.md#grids-across-machines): ``--shard I/N`` runs shard I of N of
every group's grid and stops without writing results; then the same command without ``--shard`` (or
with ``--report-only``), on a ``--work`` holding every shard's run folders, writes them.

    python benchmarks/optimizer_efficiency.py --shard 1/4 --url triton:8001     # one per machine, 1/4 .. 4/4
    python benchmarks/optimizer_efficiency.py --report-only                     # the --work folders gathered
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
from blind_comparison import (
    PROMPTS,
    run_personas,
    screens,
    shard_argument,
    shard_flags,
    step,
    stop_after_shard,
    world,
    world_arguments,
    write_results,
)

from ppo_client.console import sigterm_as_exit
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.cost import Cost, unet_evaluations
from ppo_client.optimize.folder import read_records
from ppo_client.optimize.hygiene import PromptRules
from ppo_client.optimize.metrics import ceilings
from ppo_client.plots import line_chart

RESULTS = Path(__file__).parent / "results" / "optimize"
SHAPE = RunConfig(n_prompts=4, seeds=2, steps=20)
"""The shape of every run (N, M, steps; guidance at its default)."""
GROUPS = ("plain", "greedy", "ucb", "preview")


def default_budget(iterations: int = 10) -> int:
    """What ``iterations`` iterations after iteration 0 cost an arm without previews (PNDM counted)."""
    return SHAPE.planned_unet(0) + iterations * SHAPE.planned_unet(1)


def group_flags(spec: str, args) -> tuple[list[str], str]:
    """The experiment flags of an arm group, and the suffix its arms' labels get.

    ``GROUP:OPT+OPT`` keeps only those optimizers of the group (``preview:mix``), so a larger grid can
    be spent on the arms that matter."""
    group, _, only = spec.partition(":")
    flags, suffix = _group_flags(group, args)
    if only:
        offered = flags[flags.index("--optimizers") + 1].split(",")
        kept = only.split("+")
        if not set(kept) <= set(offered):
            raise SystemExit(f"group {group!r} has the optimizers {', '.join(offered)}; {only!r} is not among them")
        flags[flags.index("--optimizers") + 1] = ",".join(kept)
    return flags, suffix


def group_folder(spec: str) -> str:
    """A group's experiment folder: one per group, whichever of its optimizers a command keeps."""
    return f"experiment-{spec.partition(':')[0]}"


def _group_flags(group: str, args) -> tuple[list[str], str]:
    screen = args.screen
    if group == "plain":
        return ["--optimizers", "llm,ga,random", "--contexts", "s+p"], ""
    if group == "greedy":
        return ["--optimizers", "llm,ga", "--contexts", "s+p", "--screens", screen, "--explore", "0"], " greedy"
    if group == "ucb":
        return ["--optimizers", "llm,ga,mix", "--contexts", "s+p", "--screens", screen, "--explore", "1"], ""
    if group == "preview":
        flags = ["--optimizers", "mix,ga", "--contexts", "s+p", "--screens", screen, "--explore", "1",
                 "--preview-steps", str(args.preview_steps),
                 "--preview", str(args.preview), "--preview-scheduler", args.preview_scheduler]
        return flags, f" +preview{args.preview_steps} {args.preview_scheduler or 'own'}"
    raise SystemExit(f"unknown group {group!r}; choose from {', '.join(GROUPS)}")


def unet_so_far(records, config: RunConfig) -> list[int]:
    """UNet evaluations after each iteration, counted again from the recorded images and scheduler
    with ``cost.unet_evaluations`` (so runs recorded before a counting rule was added compare too)."""
    spent = []
    for r in records:
        cost = Cost.from_dict(r.cost)
        spent.append(unet_evaluations(config.steps, cost.images, config.guidance_scale, cost.scheduler)
                     + unet_evaluations(config.preview_steps, cost.preview_images, config.guidance_scale,
                                        config.preview_scheduler or cost.scheduler))
    return np.cumsum(spent).tolist()


def run_curves(folder: Path) -> dict:
    records = read_records(folder)
    summary = json.loads((folder / "summary.json").read_text())
    stored = json.loads((folder / "config.json").read_text())
    config = RunConfig.from_dict(stored["config"])
    rules = PromptRules.for_prompt(stored["config"]["prompt"])
    rendered = [p.prompt for r in records for p in r.prompts if not p.initial]
    personas = run_personas(stored) or [{}]
    return {
        "run": folder.name, "user": stored["config"]["user"], "prompt": stored["config"]["prompt"],
        "repeat": folder.name.rsplit("-r", 1)[-1],
        "archetype": personas[0].get("archetype", ""),
        "images": summary["images_so_far"], "unet": unet_so_far(records, config),
        "learned_gain": [b - summary["init"] for b in summary["best_so_far"]],
        "true_gain": [b - summary["true_init"] for b in summary["true_best_so_far"]],
        "llm_prompts": summary.get("llm_prompts", 0), "repaired_prompts": summary.get("repaired_prompts", 0),
        "fallback_prompts": summary.get("fallback_prompts", 0), "prompts": len(rendered),
        "proposers": summary.get("proposers", {}), "pool_shares": summary.get("pool_shares", []),
        "pool_errors": [{k: v["error"] for k, v in r.pool.items() if v.get("error")} for r in records if r.pool],
        "calibration": [r.calibration for r in records if r.calibration is not None],
        "calibration_pooled": summary.get("screen_calibration_pooled"),
        "best_ranked_low": summary.get("screen_best_ranked_low"),
        "preview_calibration": summary.get("preview_calibration"),
        "head_calibration": records[0].calibration,  # iteration 0: the head alone
        **{key: value for key, value in ceilings(records).items() if key.startswith("calibration_ceiling")},
        "unclean_prompts": [p for p in rendered if rules.problems(p)],
        "llm_tokens": summary.get("llm_tokens", 0),
    }


def at_budget(run: dict, grid: list[int]) -> list[float]:
    """The run's true gain after its last iteration within each budget of the grid (0 before any)."""
    out = []
    for x in grid:
        done = [g for u, g in zip(run["unet"], run["true_gain"], strict=True) if u <= x]
        out.append(done[-1] if done else 0.0)
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def by_arm(runs: list[dict], grid: list[int]) -> dict:
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        length = min(len(r["true_gain"]) for r in mine)
        true = np.array([at_budget(r, grid) for r in mine])
        by_images = np.array([r["true_gain"][:length] for r in mine])
        learned = np.array([r["learned_gain"][-1] for r in mine])
        prompts = sum(r["prompts"] for r in mine)
        archetypes, pooled_archetypes, ceiling_archetypes, pooled_ceiling_archetypes = {}, {}, {}, {}
        for r in mine:
            if r["calibration"]:
                archetypes.setdefault(r["archetype"], []).extend(r["calibration"])
            if r["calibration_pooled"] is not None:
                pooled_archetypes.setdefault(r["archetype"], []).append(r["calibration_pooled"])
            if r.get("calibration_ceiling") is not None:
                ceiling_archetypes.setdefault(r["archetype"], []).append(r["calibration_ceiling"])
            if r.get("calibration_ceiling_pooled") is not None:
                pooled_ceiling_archetypes.setdefault(r["archetype"], []).append(r["calibration_ceiling_pooled"])
        iterations = max(len(r["pool_shares"]) for r in mine)
        shares = {}
        for k in range(iterations):
            at = [r["pool_shares"][k] for r in mine if len(r["pool_shares"]) > k]
            for name in at[0] if at else ():
                shares.setdefault(name, []).append(float(np.mean([s[name] for s in at])))
        proposers: dict[str, int] = {}
        for r in mine:
            for name, count in r["proposers"].items():
                proposers[name] = proposers.get(name, 0) + count
        out[arm] = {
            "runs": len(mine), "unet": grid,
            "true_gain_mean": true.mean(0).tolist(), "true_gain_sd": true.std(0).tolist(),
            "final_true_gain": {f"{r['user']}|{r['prompt']}|{r['repeat']}": float(g) for r, g in zip(mine, true[:, -1], strict=True)},
            "images": mine[0]["images"][:length], "true_gain_by_images": by_images.mean(0).tolist(),
            "true_gain_by_images_sd": by_images.std(0).tolist(),
            "iterations": [len(r["true_gain"]) - 1 for r in mine],
            "learned_gain_final_mean": float(learned.mean()), "learned_gain_final_sd": float(learned.std()),
            "llm_share": (sum(r["llm_prompts"] + r["repaired_prompts"] for r in mine) / prompts)
            if arm.startswith(("llm", "mix")) else None,
            "fallback_prompts": sum(r["fallback_prompts"] for r in mine),
            "proposers": proposers, "pool_shares": shares,
            "pool_errors": sum(len(e) for r in mine for e in r["pool_errors"]),
            "calibration_mean": _mean(c for r in mine for c in r["calibration"]),
            "calibration_pooled_mean": _mean(r["calibration_pooled"] for r in mine),
            "best_ranked_low": _mean(r["best_ranked_low"] for r in mine),
            "preview_calibration": _mean(r["preview_calibration"] for r in mine),
            "head_calibration_mean": _mean(r["head_calibration"] for r in mine),
            "calibration_by_archetype": {a: float(np.mean(v)) for a, v in sorted(archetypes.items())},
            "calibration_pooled_by_archetype": {a: float(np.mean(v)) for a, v in sorted(pooled_archetypes.items())},
            "calibration_ceiling_mean": _mean(r.get("calibration_ceiling") for r in mine),
            "calibration_ceiling_pooled_mean": _mean(r.get("calibration_ceiling_pooled") for r in mine),
            "calibration_ceiling_by_archetype": {a: float(np.mean(v)) for a, v in sorted(ceiling_archetypes.items())},
            "calibration_ceiling_pooled_by_archetype": {a: float(np.mean(v))
                                                        for a, v in sorted(pooled_ceiling_archetypes.items())},
            "unclean_prompts": sum(len(r["unclean_prompts"]) for r in mine), "rendered_prompts": prompts,
            "llm_tokens_per_run": float(np.mean([r["llm_tokens"] for r in mine])),
        }
    return out


def unet_to_reach(arm: dict, target: float) -> int | None:
    for unet, gain in zip(arm["unet"], arm["true_gain_mean"], strict=True):
        if gain >= target:
            return unet
    return None


def paired(arms: dict, reference: str) -> dict:
    """Each arm against the reference, run by run (same user, prompt and repeat): the mean and sd of
    the final true-gain differences, wins, and the UNet evaluations it needed to reach the
    reference's final mean gain."""
    if reference not in arms:
        return {}
    ref = arms[reference]
    target = ref["true_gain_mean"][-1]
    out = {}
    for arm, s in arms.items():
        if arm == reference:
            continue
        keys = sorted(set(s["final_true_gain"]) & set(ref["final_true_gain"]))
        if not keys:
            continue
        diff = np.array([s["final_true_gain"][k] - ref["final_true_gain"][k] for k in keys])
        reach = unet_to_reach(s, target)
        out[arm] = {"runs": len(keys), "difference_mean": float(diff.mean()), "difference_sd": float(diff.std()),
                    "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()),
                    "unet_to_reach_reference": reach, "budget": s["unet"][-1],
                    "fraction_of_budget": (reach / s["unet"][-1]) if reach else None}
    return {"reference": reference, "reference_final_true_gain": target, "arms": out}


def markdown(result: dict) -> str:
    arms = result["arms"]
    budget = result["unet_budget"]
    lines = [f"{result['users']} demo users x {len(result['prompts'])} prompts, N = 4 prompts x 2 seeds per iteration at 20 steps, "
             f"each run stopped within {budget} UNet evaluations (the cost of {result['iterations']} iterations after iteration 0 "
             "without previews: 90 images); true-taste gain of the best learned prompt so far over the user's own prompt, "
             "mean ± sd over runs.", ""]
    marks = sorted({budget // 3, 2 * budget // 3, budget})
    lines += ["| arm | runs | iterations | true gain at " + " / ".join(f"{m}" for m in marks) + " UNet evals | learned gain, final "
              "| LLM share | screen calibration: per iteration / pooled | seed-blind ceiling | best ranked low | preview calibration "
              "| unclean prompts |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm, s in arms.items():
        at = []
        for m in marks:
            i = max(j for j, u in enumerate(s["unet"]) if u <= m)
            at.append(f"{s['true_gain_mean'][i]:+.2f} ± {s['true_gain_sd'][i]:.2f}")
        fmt = lambda v, f="{:.2f}": "-" if v is None else f.format(v)  # noqa: E731
        calibration = f"{fmt(s['calibration_mean'])} / {fmt(s['calibration_pooled_mean'])}" if s["calibration_mean"] is not None else "-"
        ceiling = (f"{fmt(s.get('calibration_ceiling_mean'))} / {fmt(s.get('calibration_ceiling_pooled_mean'))}"
                   if s.get("calibration_ceiling_mean") is not None else "-")
        low, high = min(s["iterations"]), max(s["iterations"])
        iterations = f"{low}-{high}" if low != high else str(low)
        lines.append(f"| {arm} | {s['runs']} | {iterations} | {' / '.join(at)} | {s['learned_gain_final_mean']:+.2f} ± "
                     f"{s['learned_gain_final_sd']:.2f} | {fmt(s['llm_share'], '{:.0%}')} | {calibration} | {ceiling} | "
                     f"{fmt(s['best_ranked_low'], '{:.0%}')} | {fmt(s['preview_calibration'])} | "
                     f"{s['unclean_prompts']} of {s['rendered_prompts']} |")
    lines += ["", "By images rendered (the second view; previews are not images):", "",
              "| arm | true gain at 26 / 50 / final images | final images |", "|---|---:|---:|"]
    for arm, s in arms.items():
        at = {i: (m, d) for i, m, d in zip(s["images"], s["true_gain_by_images"], s["true_gain_by_images_sd"], strict=True)}
        cells = " / ".join(f"{at[i][0]:+.2f} ± {at[i][1]:.2f}" if i in at else "-" for i in (26, 50, s["images"][-1]))
        lines.append(f"| {arm} | {cells} | {s['images'][-1]} |")
    p = result.get("paired") or {}
    if p.get("arms"):
        lines += ["", f"Paired against `{p['reference']}` (final true gain {p['reference_final_true_gain']:+.2f}), run by run:", "",
                  "| arm | runs | final difference, mean ± sd | wins | UNet evals to reach the reference's final gain |",
                  "|---|---:|---:|---:|---:|"]
        for arm, d in p["arms"].items():
            reach = (f"{d['unet_to_reach_reference']} ({d['fraction_of_budget']:.0%})" if d["unet_to_reach_reference"]
                     else "not within the budget")
            lines.append(f"| {arm} | {d['runs']} | {d['difference_mean']:+.2f} ± {d['difference_sd']:.2f} | "
                         f"{d['wins']} of {d['runs']} | {reach} |")
    mixed = {a: s for a, s in arms.items() if s["pool_shares"]}
    for arm, s in mixed.items():
        names = list(s["pool_shares"])
        lines += ["", f"`{arm}`: mean pool share per iteration (rendered prompts by proposer: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(s["proposers"].items()))
                  + f"; proposer errors recorded: {s['pool_errors']})", "",
                  "| iteration | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for k in range(len(s["pool_shares"][names[0]])):
            lines.append(f"| {k} | " + " | ".join(f"{s['pool_shares'][n][k]:.0%}" for n in names) + " |")
    heads = {a: s["head_calibration_mean"] for a, s in arms.items() if s.get("head_calibration_mean") is not None}
    if heads:
        lines += ["", "Iteration 0, before anything is rendered, ranks by the user's head alone; its calibration: "
                      + ", ".join(f"`{a}` {v:.2f}" for a, v in heads.items()) + "."]
    for key, title in (("calibration_by_archetype", "mean rank correlation per iteration, over the N rendered"),
                       ("calibration_pooled_by_archetype", "one rank correlation per run over all its screened renders after iteration 0")):
        table = {a: s[key] for a, s in arms.items() if s[key]}
        if table:
            ceiling = key.replace("calibration_", "calibration_ceiling_")
            archetypes = sorted({k for v in table.values() for k in v})
            lines += ["", f"Screen calibration by persona archetype ({title}; in brackets the ceiling of a screen "
                          "blind to the run's seeds):", "",
                      "| arm | " + " | ".join(archetypes) + " |", "|---|" + "---:|" * len(archetypes)]
            for arm, v in table.items():
                bound = arms[arm].get(ceiling) or {}
                lines.append(f"| {arm} | " + " | ".join((f"{v[a]:.2f}" + (f" ({bound[a]:.2f})" if a in bound else ""))
                                                     if a in v else "-" for a in archetypes) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict) -> str:
    arms = result["arms"]
    series = {a: s["true_gain_mean"] for a, s in arms.items()}
    spread = {a: ([m - d for m, d in zip(s["true_gain_mean"], s["true_gain_sd"], strict=True)],
                  [m + d for m, d in zip(s["true_gain_mean"], s["true_gain_sd"], strict=True)]) for a, s in arms.items()}
    return line_chart(series, x_label="UNet evaluations (true-taste gain, mean ± sd)", x_values=result["grid"], width=720,
                      height=320, spread=spread)


def _run_groups(args, groups: list[str], budget: int):
    """Run (or resume) every group's experiment; the work folder and the users."""
    with world(args) as (work, store, url, users):
        common = ["--users", ",".join(users), "--iterations", str(4 * args.iterations), "--unet-budget", str(budget),
                  "--n-prompts", str(SHAPE.n_prompts), "--seeds", str(SHAPE.seeds), "--steps", str(SHAPE.steps),
                  "--parallel", str(args.parallel), "--store", str(store), "--url", url,
                  "--llm-timeout", str(args.llm_timeout), "--repeats", str(args.repeats)]
        for prompt in PROMPTS[: args.prompts]:
            common += ["--prompt", prompt]
        for group in groups:
            flags, _ = group_flags(group, args)
            step("experiment", *flags, *common, "--out", str(work / group_folder(group)), *shard_flags(args))
    return work, users


def run(args) -> dict:
    started = time.perf_counter()
    budget = args.unet_budget or default_budget(args.iterations)
    groups = [g for g in args.groups.split(",") if g]
    if args.report_only:
        work = Path(args.work)
        users = sorted({f.name for g in groups for f in (work / group_folder(g) / "runs").glob("*")})
    else:
        work, users = _run_groups(args, groups, budget)
        if stop_after_shard(args, f"its runs of {', '.join(groups)}"):
            return {}
    runs = []
    for group in groups:
        _, suffix = group_flags(group, args)
        kept = group.partition(":")[2].split("+") if ":" in group else None
        for folder in sorted((work / group_folder(group) / "runs").glob("*/*/*")):
            if (folder / "summary.json").exists() and (kept is None or folder.name.split("_")[0] in kept):
                runs.append({"arm": folder.name.rsplit("-r", 1)[0].replace("_", " ") + suffix, **run_curves(folder)})
    first = min(r["unet"][0] for r in runs)
    grid = sorted({*range(first, budget + 1, SHAPE.planned_unet(1)), budget})
    arms = by_arm(runs, grid)
    return {"users": len(users), "prompts": list(PROMPTS[: args.prompts]), "iterations": args.iterations,
            "unet_budget": budget, "grid": grid, "screen": args.screen, "preview_steps": args.preview_steps,
            "preview": args.preview, "preview_scheduler": args.preview_scheduler, "groups": groups, "arms": arms,
            "paired": paired(arms, args.reference), "runs": runs, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    world_arguments(parser, work="build/efficiency", out=RESULTS)
    parser.add_argument("--iterations", type=int, default=10, help="sets the default budget: what this many iterations cost "
                                                                    "without previews (10: 90 images per run)")
    parser.add_argument("--unet-budget", type=int, default=0, help="UNet evaluations per run (default: from --iterations)")
    parser.add_argument("--groups", default=",".join(GROUPS), help="arm groups to run (default %(default)s)")
    parser.add_argument("--screen", type=partial(screens, low=2), default="4",
                        help="K of the screened arms; several (4,16) give each screened arm one per K")
    parser.add_argument("--preview-steps", type=int, default=3, help="denoising steps of a preview (of 20)")
    parser.add_argument("--preview", type=int, default=2, help="previews per rendered prompt")
    parser.add_argument("--preview-scheduler", default="euler_a",
                        help="the previews' scheduler ('': the pipeline's own; default %(default)s)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--reference", default="ga +screen4 greedy", help="the arm the others are paired against")
    parser.add_argument("--report-only", action="store_true", help="tabulate the run folders under --work; run nothing")
    shard_argument(parser)
    parser.add_argument("--llm-timeout", type=float, default=300.0,
                        help="seconds per LLM call: parallel runs queue at the one local LLM (default %(default)s)")
    args = parser.parse_args()
    if args.shard and args.report_only:
        parser.error("--report-only tabulates every shard's runs: give it without --shard")
    result = run(args)
    if result:
        write_results(Path(args.out), "efficiency", result, markdown(result), svg=plot(result) + "\n")


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
