"""Blind comparison for people who taught their taste the quick way: one sentence and 10 picks.

Does a virtual user whose model was trained from only a description and 10 actively chosen picks of
one image among four (no rating at all) prefer the optimized prompt's images to their own prompt's?
Measured apart for archetype personas (the demo rating set's own first ``--users`` raters, who are
not among the training users) and for off-archetype personas (random weights over all 22 attributes,
as ``benchmarks/taste_signals.py`` makes them: a taste the store has never seen).

1. **The store's other people.** The demo rating set's remaining raters are imported with their
   ratings, and each describes their taste once (``ppo_demo.answers.describe``): the training users
   from whom ``bayes`` learns its priors and how to read a description (as the app does, from the
   store, not from ``--prior-sac``). The set's images are the app's rating pool.
2. **Teaching, as in the app.** Each test persona describes their taste (``user describe``'s store
   call), then answers 10 slates of four chosen by ``app.slates.choose`` (the app's own expected
   information), picking as ``ppo_demo.answers.choose`` does (argmax of noisy scores), every answer
   stored at once; then ``ppo-client user train NAME --method bayes``.
3. **Optimization and blind pairs** as ``benchmarks/blind_comparison.py``: ``ppo-client experiment``
   (``--optimizers``, default ``random``, 6 iterations), then the persona answers each run's blind
   pairs with its own noisy ratings. Win rates count "same" as half, with Wilson 95% intervals.

    make demo                                   # the demo rating set, reused here
    python benchmarks/taste_blind.py            # 8 + 8 personas x 2 prompts

Results: ``benchmarks/results/taste/taste_blind.{json,md}``. The work folder (``--work``) keeps the
store and the run folders, so the same command resumes. ``--shard I/N`` runs shard I of N of the
experiment and answers its runs' pairs, as ``blind_comparison.py`` does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from blind_comparison import (
    PROMPTS,
    answer_pairs,
    pooled,
    preparing,
    run_folders,
    shard_argument,
    shard_flags,
    step,
    stop_after_shard,
    triton,
    win_table,
    world_arguments,
    write_results,
)
from taste_signals import off_archetype_personas

from ppo_client.app.queue import PriorCache
from ppo_client.app.slates import choose as choose_slate
from ppo_client.console import sigterm_as_exit
from ppo_client.images import decode_rgb
from ppo_client.sac import read_sac
from ppo_client.store import PoolEntry, UserStore
from ppo_demo.answers import choose, describe
from ppo_demo.attributes import measure_many
from ppo_demo.personas import Persona
from ppo_demo.sac import read_personas
from ppo_demo.truth import link_persona

RESULTS = Path(__file__).parent / "results" / "taste"
PICKS = 10
GROUPS = ("archetype", "off-archetype")


def attributes(store: UserStore, image_hash: str) -> np.ndarray:
    return measure_many([np.asarray(decode_rgb(store.image(image_hash).data, image_hash))])[0]


def prepare_store(args, url: str, store: Path) -> tuple[dict[str, Persona], dict[str, np.ndarray]]:
    """Training users imported and described, the pool filled; returns the test personas by user
    name and every pool image's attributes by hash."""
    sac_path = Path(args.sac)
    sac, specs = read_sac(sac_path), read_personas(sac_path)
    sids = sorted(s for s in sac.ratings if s in specs)
    test_sids, train_sids = sids[: args.users], sids[args.users:]
    with UserStore(store) as users:
        known = {u.name for u in users.users()}
    for sid in train_sids:
        name = f"t{sid}"
        if name in known:
            continue
        step("user", "create", name, "--store", str(store))
        step("user", "import", name, "--sac", args.sac, "--sid", str(sid), "--images-root", str(sac_path.parent),
             "--store", str(store))
        with UserStore(store) as users:
            users.describe(name, describe(Persona.from_dict(specs[sid]), seed=sid))
    with UserStore(store) as users:
        if not users.pool():
            files = sorted(p for p in (sac_path.parent / "images").rglob("*") if p.is_file())
            users.add_to_pool([PoolEntry(f.read_bytes(), "folder", f.name) for f in files])
        attrs = {p.image_hash: attributes(users, p.image_hash) for p in users.pool()}
    personas = {f"a{sid}": Persona.from_dict(specs[sid]) for sid in test_sids}
    matrix = np.stack(list(attrs.values()))
    for i, persona in enumerate(off_archetype_personas(args.users, args.seed, matrix)):
        personas[f"o{i}"] = persona
    return personas, attrs


def teach(store: Path, client, url: str, name: str, persona: Persona, attrs: dict, seed: int, cache: PriorCache) -> dict:
    """A description and ``PICKS`` active picks of four, then ``user train``; what was taught."""
    with UserStore(store) as users:
        if users.has_user(name) and users.models(name):
            return {"description": users.description(name).text, "choices": len(users.choices(name))}
        if not users.has_user(name):
            users.create_user(name)
            link_persona(users, name, persona.to_dict())
        if users.description(name) is None:
            users.describe(name, describe(persona, seed=seed))
        rng = np.random.default_rng([seed, 5])
        while len(users.choices(name)) < PICKS:
            shown, _, _ = choose_slate(users, client, name, 4, priors=cache, rng=rng)
            picked = choose(persona, np.stack([attrs[p.image_hash] for p in shown]), rng)
            users.add_choice(name, [p.image_hash for p in shown], shown[picked].image_hash, source="benchmark:taste_blind")
        description = users.description(name).text
    step("user", "train", name, "--method", "bayes", "--store", str(store), "--url", url)
    return {"description": description, "choices": PICKS}


def run(args) -> dict:
    from ppo_client.scoring import ScoringClient

    started = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store.sqlite"
    with triton(args) as url, ScoringClient(url) as client:
        with preparing(work):
            personas, attrs = prepare_store(args, url, store)
            cache = PriorCache()
            taught = {name: teach(store, client, url, name, persona, attrs, args.seed * 1000 + i, cache)
                      for i, (name, persona) in enumerate(personas.items())}
        with UserStore(store) as users:
            reading = {name: users.models(name)[-1].params.get("description", {}) for name in personas}
        argv = ["experiment", "--users", ",".join(personas), "--optimizers", args.optimizers, "--contexts", args.context,
                "--iterations", str(args.iterations), "--n-prompts", "4", "--seeds", "2", "--steps", "20",
                "--out", str(work / "experiment"), "--parallel", str(args.parallel), "--store", str(store), "--url", url,
                *shard_flags(args)]
        for prompt in PROMPTS[: args.prompts]:
            argv += ["--prompt", prompt]
        step(*argv)
        rows = []
        for position, folder in run_folders(work / "experiment", args):
            stored = json.loads((folder / "config.json").read_text())
            name = stored["config"]["user"]
            result = answer_pairs(folder, client, store, np.random.default_rng(position))
            rows.append({"run": str(folder.relative_to(work)), "user": name,
                         "group": "archetype" if name.startswith("a") else "off-archetype", **result})
            print(f"{rows[-1]['run']}: win rate {result['win_rate']:.2f} ({result['answered']} pairs)", flush=True)
    if stop_after_shard(args, f"{len(rows)} runs optimized and their pairs answered"):
        return {}
    by_group = {g: pooled([r for r in rows if r["group"] == g]) for g in GROUPS if any(r["group"] == g for r in rows)}
    return {"sac": Path(args.sac).name, "users_per_group": args.users, "prompts": list(PROMPTS[: args.prompts]),
            "optimizers": args.optimizers, "iterations": args.iterations, "picks": PICKS, "taught": taught,
            "reading": reading, "by_group": by_group, "rows": rows, "seconds": time.perf_counter() - started}


def markdown(result: dict) -> str:
    readings = [r for r in result["reading"].values() if r]
    learnt = sum(r.get("read") == "learnt" for r in readings)
    lines = [f"{result['users_per_group']} personas per group x {len(result['prompts'])} prompts; each taught with one "
             f"description and {result['picks']} active picks of four (no rating), trained with `bayes` from the store "
             f"(descriptions read as learnt from other users for {learnt} of {len(readings)} personas); "
             f"`{result['optimizers']}`, {result['iterations']} iterations; blind pairs answered by the persona's noisy "
             "ratings (a tie is \"same\", counted half).", ""]
    return "\n".join(lines + win_table("personas", result["by_group"])) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    world_arguments(parser, work="build/taste-blind", out=RESULTS)
    shard_argument(parser)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--optimizers", default="random")
    parser.add_argument("--context", default="s+p", help="for the llm optimizer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args)
    if result:
        write_results(Path(args.out), "taste_blind", result, markdown(result))


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
