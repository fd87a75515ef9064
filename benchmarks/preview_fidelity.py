"""Do cheap previews rank prompts as their full renders do? Per scheduler of the served demo pipeline.

For each of the first ``--users`` virtual users of the demo set (trained with ``bayes``, shared with
``optimizer_efficiency.py``) and each demo prompt, ``--candidates`` prompts are drawn as the
optimizer's random-keyword proposer draws them. Each is rendered with the same ``--seeds`` seeds
through the served generate-and-score model at the full ``--steps`` and at each of
``--preview-steps``, with every scheduler the pipeline offers; the user's head scores every image,
and a prompt's score is the mean over its seeds. Per scheduler and preview steps:

- ``spearman``: rank correlation of the preview scores with the full-render scores (same scheduler)
  over the candidates (mean ± sd over user x prompt);
- ``spearman_default``: the same against the full renders of the pipeline's own scheduler (what a
  run renders in full), for a preview that would use another scheduler;
- ``top_recall``: of the full renders' best N = 4, the share that are among the previews' best 2N
  (what the optimizer keeps when it previews 2N and renders N);
- ``cost``: a preview's UNet evaluations as a share of a full render's (``ppo_client.optimize.cost``).

    make demo
    python benchmarks/preview_fidelity.py          # 8 users x 2 prompts x every scheduler

Results: ``benchmarks/results/optimize/preview_fidelity.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from blind_comparison import PROMPTS, world, world_arguments, write_results

from ppo_client.console import sigterm_as_exit
from ppo_client.generation import GenerationRequest
from ppo_client.optimize.cost import unet_evaluations
from ppo_client.optimize.proposers import RandomProposer
from ppo_client.piaa.metrics import spearman

RESULTS = Path(__file__).parent / "results" / "optimize"
TOP = 4


def candidates(prompt: str, count: int, seed: int) -> list[str]:
    proposal = RandomProposer().initial(prompt, count - 1, np.random.default_rng(seed), {prompt.lower()}, list)
    return [prompt, *proposal.prompts]


def scores(client, head, prompts: list[str], seeds: list[int], steps: int, scheduler: str, pool) -> np.ndarray:
    def one(prompt: str) -> float:
        rows = [GenerationRequest(prompt, seed=s, steps=steps, scheduler=scheduler) for s in seeds]
        return float(np.mean([item.score for item in client.generate_and_score(rows, head)]))

    return np.array(list(pool.map(one, prompts)))


def run(args) -> dict:
    from ppo_client.optimize.session import user_scorer
    from ppo_client.scoring import ScoringClient
    from ppo_client.store import UserStore

    started = time.perf_counter()
    preview_steps = [int(s) for s in args.preview_steps.split(",")]
    seeds = list(range(args.seeds))
    rows = []
    with world(args) as (work, store, url, users), ScoringClient(url) as client, ThreadPoolExecutor(args.parallel) as pool:
        pipeline = client.pipeline()
        schedulers = [s for s in (args.schedulers.split(",") if args.schedulers else pipeline.schedulers) if s in pipeline.schedulers]
        with UserStore(store) as user_store:
            heads = {u: user_scorer(user_store, client, u).head for u in users}
        own = pipeline.default_scheduler
        for user in users:
            for p, prompt in enumerate(PROMPTS[: args.prompts]):
                texts = candidates(prompt, args.candidates, p)
                default_full = scores(client, heads[user], texts, seeds, args.steps, "", pool)
                for scheduler in schedulers:
                    full = scores(client, heads[user], texts, seeds, args.steps, scheduler, pool)
                    best = set(np.argsort(-full)[:TOP].tolist())
                    for steps in preview_steps:
                        preview = scores(client, heads[user], texts, seeds, steps, scheduler, pool)
                        rows.append({"user": user, "prompt": prompt, "scheduler": scheduler, "steps": steps,
                                     "spearman": float(spearman(preview, full)),
                                     "spearman_default": float(spearman(preview, default_full)),
                                     "top_recall": len(best & set(np.argsort(-preview)[: 2 * TOP].tolist())) / TOP,
                                     "cost": unet_evaluations(steps, 1, 7.5, scheduler) / unet_evaluations(args.steps, 1, 7.5, scheduler)})
                    print(f"{user} {prompt[:20]} {scheduler}: " + ", ".join(
                        f"{r['steps']} steps {r['spearman']:.2f}" for r in rows[-len(preview_steps):]), flush=True)
    table = {}
    for scheduler in dict.fromkeys(r["scheduler"] for r in rows):
        for steps in preview_steps:
            mine = [r for r in rows if r["scheduler"] == scheduler and r["steps"] == steps]
            table.setdefault(scheduler, {})[str(steps)] = {
                "spearman_mean": float(np.mean([r["spearman"] for r in mine])), "spearman_sd": float(np.std([r["spearman"] for r in mine])),
                "spearman_default_mean": float(np.mean([r["spearman_default"] for r in mine])),
                "top_recall": float(np.mean([r["top_recall"] for r in mine])), "cost": mine[0]["cost"], "n": len(mine)}
    return {"users": len(users), "prompts": list(PROMPTS[: args.prompts]), "candidates": args.candidates, "seeds": args.seeds,
            "steps": args.steps, "preview_steps": preview_steps, "default_scheduler": own,
            "table": table, "rows": rows, "seconds": time.perf_counter() - started}


def markdown(result: dict) -> str:
    steps = result["preview_steps"]
    lines = [f"{result['users']} demo users x {len(result['prompts'])} prompts, {result['candidates']} candidate prompts each "
             f"(random keywords), {result['seeds']} seeds; previews at {', '.join(map(str, steps))} steps against full renders "
             f"at {result['steps']}. Cells: rank correlation of preview and full scores (mean ± sd over user x prompt) / recall "
             f"of the full best {TOP} among the previews' best {2 * TOP} / a preview's UNet cost as a share of a full render's; "
             f"in brackets, the rank correlation against the full renders of the pipeline's own scheduler "
             f"(`{result['default_scheduler']}`), which is what a run renders in full.", "",
             "| scheduler | " + " | ".join(f"{s} steps" for s in steps) + " |", "|---|" + "---:|" * len(steps)]
    for scheduler, by_steps in result["table"].items():
        cells = [f"{c['spearman_mean']:.2f} ± {c['spearman_sd']:.2f} / {c['top_recall']:.0%} / {c['cost']:.0%} "
                 f"({c['spearman_default_mean']:.2f})"
                 for c in (by_steps[str(s)] for s in steps)]
        lines.append(f"| {scheduler} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    world_arguments(parser, work="build/efficiency", out=RESULTS)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preview-steps", default="3,5,8")
    parser.add_argument("--schedulers", default="", help="comma-separated (default: every one the pipeline offers)")
    args = parser.parse_args()
    result = run(args)
    write_results(Path(args.out), "preview_fidelity", result, markdown(result))


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
