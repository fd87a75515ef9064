"""Active vs random rating order, in the demo world: how well a person's ``bayes`` model knows their
taste after 5, 10, 20 and 40 ratings when the app chooses what they rate next (``app.queue``) vs.
when images come in random order.

For each of the first N virtual users of a demo SAC-format set: 40 of the images they rated are held
out; the rest are the pool. The model learns from the user's own (noisy) ratings of the images it
asked for, with priors from the set's other users (refitted per shot count, as the app does), and is
scored by SROCC against the user's noise-free taste on the held-out images. Random order is averaged
over several shuffles per user.

    python benchmarks/active_rating.py --sac build/demo/ratings/sac.sqlite     # after `make demo`

Results: ``benchmarks/results/app/active_rating.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np

from ppo_client.app.queue import most_informative
from ppo_client.console import sigterm_as_exit
from ppo_client.images import load_rgb
from ppo_client.piaa.methods import Task, bayes_posterior, design, fit_priors
from ppo_client.piaa.metrics import spearman
from ppo_client.sac import read_sac
from ppo_demo.sac import read_personas

RESULTS = Path(__file__).parent / "results" / "app"
BUCKETS = (4, 8, 16, 32, 64)


def bucket(shots: int) -> int:
    return 1 << max(2, int(np.ceil(np.log2(max(shots, 1)))))


def held_out_quality(priors: dict, x_pool: np.ndarray, y_pool: np.ndarray, x_held: np.ndarray, truth: np.ndarray,
                     chosen: list[int]) -> float:
    """SROCC against true taste on the held-out images of the model fitted to the pool images ``chosen``."""
    posterior = bayes_posterior(priors[bucket(len(chosen))], x_pool[chosen], y_pool[chosen])
    return spearman(design(x_held) @ posterior.mean, truth)


def run(args) -> dict:
    from ppo_client.scoring import ScoringClient

    sac = read_sac(Path(args.sac))
    personas = read_personas(Path(args.sac))
    root = Path(args.images_root or Path(args.sac).parent)
    iids = sorted(sac.paths)
    with ScoringClient(args.url) as client:
        embeddings = {}
        for start in range(0, len(iids), 64):
            chunk = iids[start : start + 64]
            for iid, vector in zip(chunk, client.embed([load_rgb(root / sac.paths[i]) for i in chunk]), strict=True):
                embeddings[iid] = vector
    users = sorted(u for u in sac.ratings if u in sac.true_scores)[: args.personas]
    budgets = [int(b) for b in args.budgets.split(",")]
    rows = []
    for u in users:
        started = time.perf_counter()
        rated = sac.ratings[u]
        rng = np.random.default_rng(u)
        ids = np.array(sorted(rated))
        held = set(rng.choice(ids, size=args.held_out, replace=False).tolist())
        pool = [i for i in ids if i not in held]
        held = sorted(held)
        x_pool = np.stack([embeddings[i] for i in pool])
        y_pool = np.array([rated[i] for i in pool], dtype=np.float64)
        x_held = np.stack([embeddings[i] for i in held])
        truth = np.array([sac.true_scores[u][i] for i in held])
        others = [Task(np.stack([embeddings[i] for i in sorted(sac.ratings[v])]),
                       np.array([sac.ratings[v][i] for i in sorted(sac.ratings[v])], dtype=np.float64))
                  for v in sac.ratings if v != u]
        priors = {b: fit_priors(others, b, ["bayes"]) for b in BUCKETS if b >= 4 and b // 2 < max(budgets)}
        quality = partial(held_out_quality, priors, x_pool, y_pool, x_held, truth)

        active, chosen = {}, []
        for t in range(max(budgets)):
            remaining = [i for i in range(len(pool)) if i not in chosen]
            prior = priors[bucket(max(t, 1))]
            (pick, *_), = most_informative(prior, x_pool[chosen] if chosen else None, y_pool[chosen], x_pool[remaining], 1)
            chosen.append(remaining[pick])
            if t + 1 in budgets:
                active[t + 1] = quality(chosen)
        shuffled = {b: [] for b in budgets}
        for r in range(args.repeats):
            order = list(np.random.default_rng([u, r]).permutation(len(pool)))
            for b in budgets:
                shuffled[b].append(quality(order[:b]))
        rows.append({"user": int(u), "archetype": personas.get(u, {}).get("name", ""), "active": active,
                     "random": {b: float(np.mean(v)) for b, v in shuffled.items()}, "seconds": time.perf_counter() - started})
        print(f"user {u}: active {[round(active[b], 3) for b in budgets]} random "
              f"{[round(rows[-1]['random'][b], 3) for b in budgets]} ({rows[-1]['seconds']:.0f} s)", flush=True)
    summary = {}
    for order in ("active", "random"):
        for b in budgets:
            values = [row[order][b] for row in rows]
            summary[f"{order}_{b}"] = {"mean": float(np.mean(values)), "sd": float(np.std(values))}
    return {"sac": Path(args.sac).name, "users": len(rows), "held_out": args.held_out, "random_repeats": args.repeats,
            "budgets": budgets, "summary": summary, "rows": rows,
            "active_10_reaches_random_20": summary["active_10"]["mean"] >= summary["random_20"]["mean"]
            if 10 in budgets and 20 in budgets else None}


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [f"{result['users']} demo users, {result['held_out']} held-out images each; SROCC against true taste "
             f"(mean \u00b1 sd over users; random order averaged over {result['random_repeats']} shuffles per user).", "",
             "| ratings | " + " | ".join(str(b) for b in result["budgets"]) + " |",
             "|---|" + "---:|" * len(result["budgets"])]
    for order in ("active", "random"):
        lines.append(f"| {order} | " + " | ".join(f"{s[f'{order}_{b}']['mean']:.3f} \u00b1 {s[f'{order}_{b}']['sd']:.3f}"
                                                    for b in result["budgets"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sac", default="build/demo/ratings/sac.sqlite")
    parser.add_argument("--images-root", default=None)
    parser.add_argument("--personas", type=int, default=20)
    parser.add_argument("--budgets", default="5,10,20,40")
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5, help="random shuffles per user")
    parser.add_argument("--url", default=None, help="a Triton server serving the demo CLIP (default: $PPO_TRITON_URL)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "active_rating.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "active_rating.md").write_text(markdown(result))
    print(markdown(result), end="")


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
