"""Which of a person's answers teach ``bayes`` their taste fastest, in the demo world: ratings (random
or active order), active picks among four images, active pairs and a one-sentence description, alone
and mixed.

Everything runs in-process, without a server: procedural scenes (``ppo_demo.scenes.example``) are
the images, embedded by the demo CLIP's image tower (the package's ``models/clip``, the same weights
the served ``image_encoder`` exports), and descriptions by its text tower (the served ``clip_text``).

1. **Priors.** ``--train-users`` archetype users (``population``, as ``make demo``'s 30) rate 100 or
   more of ``--train-images`` training scenes with noise; ``bayes`` priors are fitted on them once
   per shot bucket (4, 8, 16, ...), as the app does, and shared by every test persona.
2. **Test personas.** ``--personas`` archetype personas (``make_persona``, spread evenly over the
   archetypes) and, reported apart, as many off-archetype ones: weights drawn at random over all 22
   attributes, rating noise 1.5, scale set so the utility's logit spread is the archetypes' 1.4.
   Each has ``--held-out`` held-out scenes and a pool of ``--pool`` others to be asked about, drawn
   from scenes no training user saw.
3. **Answers.** A rating is ``rate_many`` (integer, noisy); a pick among k images is
   ``ppo_demo.answers.choose`` (argmax of the true scores plus the persona's own rating noise, so a
   pick is as noisy as the ratings it stands for); a description is ``describe(persona, seed)``.
4. **Arms**, each scored after 0, 5, 10, 20 and 40 actions (an action is one rating or one pick) by
   SROCC of the posterior mean head on the held-out scenes against the persona's TRUE scores.

    python benchmarks/taste_signals.py --personas 20             # ~ an hour on 2 cores
    python benchmarks/taste_signals.py --personas 2 --budgets 0,2,4 --pool 40 --out /tmp/t --plot ""  # a smoke run

Results: ``benchmarks/results/taste/taste_signals.{json,md}`` and a plot ``docs/results/taste_signals.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ppo_client.app.queue import most_informative
from ppo_client.console import sigterm_as_exit
from ppo_client.piaa.active import most_informative_slate
from ppo_client.piaa.choices import ChoiceData
from ppo_client.piaa.description import read_description, split_description
from ppo_client.piaa.methods import BayesPosterior, Priors, Task, bayes_posterior, design, fit_priors
from ppo_client.piaa.metrics import spearman
from ppo_demo.answers import choose, describe
from ppo_demo.attributes import ATTRIBUTES, measure_many
from ppo_demo.personas import (
    ARCHETYPES,
    LOGIT_SPREAD,
    Persona,
    make_persona,
    population,
    rate_many,
    true_scores,
    utility,
)
from ppo_demo.scenes import example

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "taste"
PLOT = ROOT / "docs" / "results" / "taste_signals.png"

ARMS = ("ratings-random", "ratings-active", "picks-4", "pairs", "description", "description+picks-4",
        "description+ratings-active")
"""The last is an extra mix: a description, then active ratings."""
MIXES = ("description+picks-4", "description+ratings-active")
"""Arms that combine signals: "the best mix" of the targets is the best of these."""
TRAIN_SEED_BASE = 3_000_000
TEST_SEED_BASE = 4_000_000
OFF_ARCHETYPE_NOISE = 1.5
MIN_TRAIN_RATINGS = 100
TRAIN_DESCRIPTION_SEED = 50_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bucket(shots: int) -> int:
    """The shot count priors are tuned for (4, 8, 16, ...), as ``app.queue.PriorCache`` rounds."""
    return 1 << max(2, int(np.ceil(np.log2(max(shots, 1)))))


# --- the world: scenes, their embeddings, the demo CLIP ---


@dataclass(frozen=True)
class Scenes:
    x: np.ndarray
    """[n, D] unit CLIP image embeddings."""
    attrs: np.ndarray
    """[n, 22] attributes a persona looks at."""


def demo_clip() -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[list[str]], np.ndarray]]:
    """(embed_images, embed_texts) with the demo CLIP in-process (as tests/unit/test_description_prior.py)."""
    import torch
    import transformers

    from ppo_demo import models_dir
    from ppo_demo.training.clip import _features, normalize
    from ppo_demo.training.data import to_pixels

    folder = models_dir() / "clip"
    if not (folder / "config.json").exists():
        raise SystemExit(f"error: the demo CLIP is not built ({folder} has no config.json)")
    model = transformers.CLIPModel.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(folder)

    @torch.no_grad()
    def embed_images(images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), 128):
            chunk = normalize(to_pixels(np.ascontiguousarray(images[start:start + 128])))
            out.append(_features(model.get_image_features(pixel_values=chunk)).numpy())
        features = np.concatenate(out).astype(np.float64)
        return features / np.linalg.norm(features, axis=1, keepdims=True)

    @torch.no_grad()
    def embed_texts(texts: list[str]) -> np.ndarray:
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        return _features(model.get_text_features(input_ids=tokens.input_ids)).numpy().astype(np.float64)

    return embed_images, embed_texts


def make_scenes(seeds: range, embed_images) -> Scenes:
    images = np.stack([example(seed)[0] for seed in seeds])
    return Scenes(embed_images(images), measure_many(list(images)))


# --- people ---


def archetype_personas(count: int, seed: int) -> list[Persona]:
    names = list(ARCHETYPES)
    return [make_persona(names[i % len(names)], 10_000 * (seed + 1) + i, name=f"test-{i:03d}-{names[i % len(names)]}")
            for i in range(count)]


def off_archetype_personas(count: int, seed: int, attrs: np.ndarray) -> list[Persona]:
    """Tastes from none of the archetypes: random weights over every attribute, noise 1.5, and the
    scale that gives the archetypes' logit spread on ``attrs``."""
    people = []
    for i in range(count):
        rng = np.random.default_rng([seed, 77, i])
        weights = {a: round(float(w), 3) for a, w in zip(ATTRIBUTES, rng.normal(0.0, 1.0, len(ATTRIBUTES)), strict=True)}
        persona = Persona(f"off-{i:03d}", "off-archetype", weights, round(float(np.clip(rng.normal(0, 0.4), -1, 1)), 3),
                          1.0, OFF_ARCHETYPE_NOISE)
        spread = float(np.std(utility(persona, attrs)))
        people.append(replace(persona, scale=round(LOGIT_SPREAD / max(spread, 1e-6), 3)))
    return people


def training_tasks(scenes: Scenes, users: int, seed: int, embed_texts=None) -> list[Task]:
    """``users`` archetype users (``population``) each rating 100 or more of ``scenes``, with noise
    (the ``make demo`` rating set's participation: 100 plus a long tail), and, with ``embed_texts``,
    each describing their taste once (``describe``, seeds apart from the test personas')."""
    rng = np.random.default_rng([seed, 7])
    tasks = []
    for u, persona in enumerate(population(users, seed)):
        count = int(min(len(scenes.x), MIN_TRAIN_RATINGS + rng.pareto(1.5) * 40))
        chosen = np.sort(rng.choice(len(scenes.x), size=count, replace=False))
        described = (read_description(split_description(describe(persona, TRAIN_DESCRIPTION_SEED + u)), embed_texts)
                     if embed_texts is not None else None)
        tasks.append(Task(scenes.x[chosen], rate_many(persona, scenes.attrs[chosen], rng).astype(np.float64),
                          None if described is None else described.features))
    return tasks


# --- one persona, every arm ---


def run_persona(persona: Persona, index: int, scenes: Scenes, priors: dict[int, Priors], embed_texts,
                args) -> dict:
    budgets = args.budget_list
    top = max(budgets)
    rng = np.random.default_rng([args.seed, index, 1])
    order = rng.permutation(len(scenes.x))
    held, pool = order[: args.held_out], order[args.held_out: args.held_out + args.pool]
    x_pool, a_pool = scenes.x[pool], scenes.attrs[pool]
    x_held, truth = scenes.x[held], true_scores(persona, scenes.attrs[held])
    y_pool = rate_many(persona, a_pool, rng).astype(np.float64)
    empty_x, empty_y = np.zeros((0, x_pool.shape[1])), np.zeros(0)
    sentence = describe(persona, index)
    described = read_description(split_description(sentence), embed_texts)

    def quality(posterior: BayesPosterior) -> float:
        return spearman(design(x_held) @ posterior.mean, truth)

    def ratings_posterior(chosen, with_description=False):
        return bayes_posterior(priors[bucket(len(chosen))], x_pool[chosen] if chosen else empty_x,
                               y_pool[chosen] if chosen else empty_y,
                               description=described if with_description else None)

    def ratings_random() -> dict:
        scores = {b: [] for b in budgets}
        for r in range(args.repeats):
            shuffled = list(np.random.default_rng([args.seed, index, 2, r]).permutation(len(pool)))
            for b in budgets:
                scores[b].append(quality(ratings_posterior(shuffled[:b])))
        return {b: float(np.mean(v)) for b, v in scores.items()}

    def ratings_active(with_description: bool) -> dict:
        scores, chosen = {}, []
        for t in range(top + 1):
            posterior = ratings_posterior(chosen, with_description)
            if t in budgets:
                scores[t] = quality(posterior)
            if t == top:
                break
            remaining = [i for i in range(len(pool)) if i not in chosen]
            # most_informative refits the posterior itself; a description is not one of its inputs, so
            # with a description the order is the ratings-only one (the app's rate page does the same)
            (pick, *_), = most_informative(priors[bucket(max(t, 1))], x_pool[chosen] if chosen else None,
                                           y_pool[chosen], x_pool[remaining], 1)
            chosen.append(remaining[pick])
        return scores

    def picks(k: int, with_description: bool) -> dict:
        answer_rng = np.random.default_rng([args.seed, index, 3, k])
        slate_rng = np.random.default_rng([args.seed, index, 4, k])
        shown: list[tuple[int, ...]] = []
        answers: list[int] = []
        scores = {}
        for t in range(top + 1):
            choices = ChoiceData(x_pool, tuple(shown), tuple(answers)) if shown else None
            posterior = bayes_posterior(priors[bucket(max(t, 1))], empty_x, empty_y, choices=choices,
                                        description=described if with_description else None)
            if t in budgets:
                scores[t] = quality(posterior)
            if t == top:
                break
            slate = most_informative_slate(posterior, x_pool, k, slate_rng)
            shown.append(tuple(slate.indices))
            answers.append(choose(persona, a_pool[list(slate.indices)], answer_rng))
        return scores

    started = time.perf_counter()
    arms: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for arm, compute in (
        ("ratings-random", ratings_random),
        ("ratings-active", lambda: ratings_active(False)),
        ("picks-4", lambda: picks(4, False)),
        ("pairs", lambda: picks(2, False)),
        ("description", lambda: dict.fromkeys(budgets, quality(ratings_posterior([], True)))),
        ("description+picks-4", lambda: picks(4, True)),
        ("description+ratings-active", lambda: ratings_active(True)),
    ):
        if arm not in args.arm_list:
            continue
        t0 = time.perf_counter()
        arms[arm] = compute()
        seconds[arm] = time.perf_counter() - t0
    return {"persona": persona.name, "archetype": persona.archetype, "description": sentence,
            "arms": arms, "seconds": seconds, "total_seconds": time.perf_counter() - started}


# --- the whole run ---


def summarize(rows: list[dict], arms: list[str], budgets: list[int]) -> dict:
    summary = {}
    for arm in arms:
        summary[arm] = {}
        for b in budgets:
            values = [row["arms"][arm][b] for row in rows if arm in row["arms"]]
            summary[arm][b] = {"mean": float(np.mean(values)), "sd": float(np.std(values)), "n": len(values)}
    return summary


def targets(summary: dict) -> list[dict]:
    """The targets, each with the measured value and pass/miss (None when not measured)."""
    arche, off = summary.get("archetype", {}), summary.get("off-archetype", {})

    def cell(group, arm, b):
        return group.get(arm, {}).get(b, {}).get("mean")

    def best_mix(group, b):
        measured = [(cell(group, arm, b), arm) for arm in MIXES if cell(group, arm, b) is not None]
        return max(measured) if measured else (None, None)

    rows = [("description alone, 0 actions (archetype)", cell(arche, "description", 0), 0.35, "description"),
            ("description + 10 active picks of 4 (archetype)", cell(arche, "description+picks-4", 10), 0.687,
             "description+picks-4")]
    value, arm = best_mix(arche, 40)
    rows.append(("best mix, 40 actions (archetype)", value, 0.75, arm))
    value, arm = best_mix(off, 20)
    rows.append(("best mix, 20 actions (off-archetype)", value, 0.60, arm))
    return [{"target": name, "arm": arm, "value": value, "threshold": threshold,
             "passed": None if value is None else bool(value >= threshold)} for name, value, threshold, arm in rows]


def ceiling(args) -> dict:
    """What a linear head on the demo CLIP's image embedding can reach at all: ridge heads fitted to
    each test persona's noise-free true scores on the training scenes plus the first
    ``test_images - held_out`` test scenes, scored (SROCC against true taste) on the last ``held_out``
    test scenes, by ridge penalty."""
    embed_images, _ = demo_clip()
    train = make_scenes(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + args.train_images), embed_images)
    test = make_scenes(range(TEST_SEED_BASE, TEST_SEED_BASE + args.test_images), embed_images)
    cut = args.test_images - args.held_out
    fit_x, fit_attrs = np.vstack([train.x, test.x[:cut]]), np.vstack([train.attrs, test.attrs[:cut]])
    a = design(fit_x)
    groups = {"archetype": archetype_personas(args.personas, args.seed),
              "off-archetype": off_archetype_personas(args.off_personas, args.seed, test.attrs)}
    result = {"fit_scenes": int(len(fit_x)), "held_out": args.held_out, "by_ridge": {}}
    for ridge in (0.01, 0.1, 1.0):
        result["by_ridge"][str(ridge)] = {}
        for group, people in groups.items():
            scores = []
            for persona in people:
                theta = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ true_scores(persona, fit_attrs))
                scores.append(spearman(design(test.x[cut:]) @ theta, true_scores(persona, test.attrs[cut:])))
            result["by_ridge"][str(ridge)][group] = {"mean": float(np.mean(scores)), "sd": float(np.std(scores))}
    return result


def _prior_summary(p: Priors) -> dict:
    learnt = p.bayes_description
    return {"clusters": int(len(p.bayes_weights)), "shrinkage": p.bayes_shrinkage, "noise_variance": p.bayes_noise,
            "description_map": None if learnt is None else {"users": int(len(learnt.features)), "ridge": learnt.ridge,
                                                            "kappa": learnt.kappa,
                                                            "typical_novelty": learnt.typical_novelty}}


def run(args) -> dict:
    started = time.perf_counter()
    log("loading the demo CLIP ...")
    embed_images, embed_texts = demo_clip()
    log(f"rendering and embedding {args.train_images} training and {args.test_images} test scenes ...")
    train = make_scenes(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + args.train_images), embed_images)
    test = make_scenes(range(TEST_SEED_BASE, TEST_SEED_BASE + args.test_images), embed_images)
    tasks = training_tasks(train, args.train_users, args.seed, None if args.undescribed_training else embed_texts)
    needed = sorted({bucket(max(b, 1)) for b in range(max(args.budget_list) + 1)})
    priors = {}
    for shots in needed:
        t0 = time.perf_counter()
        priors[shots] = fit_priors(tasks, shots, ["bayes"])
        log(f"priors for {shots} shots: {_prior_summary(priors[shots])} ({time.perf_counter() - t0:.0f} s)")
    groups = {"archetype": archetype_personas(args.personas, args.seed),
              "off-archetype": off_archetype_personas(args.off_personas, args.seed, test.attrs)}
    groups = {g: people for g, people in groups.items() if args.group in ("both", g)}
    rows = {g: [] for g in groups}
    partial = Path(args.out) / f"taste_signals.{args.group}.rows.jsonl"
    partial.write_text("")
    partial.with_name(f"taste_signals.{args.group}.priors.json").write_text(json.dumps(
        {str(s): _prior_summary(p)
         for s, p in priors.items()}, indent=2) + "\n")
    for group, people in groups.items():
        for i, persona in enumerate(people):
            index = i if group == "archetype" else 1000 + i
            row = run_persona(persona, index, test, priors, embed_texts, args)
            rows[group].append(row)
            with partial.open("a") as handle:  # every persona is kept the moment it is done
                handle.write(json.dumps({"group": group, **row}) + "\n")
            log(f"{group} {i + 1}/{len(people)} {persona.name}: " + ", ".join(
                f"{arm} {[round(row['arms'][arm][b], 2) for b in args.budget_list]}" for arm in row["arms"])
                + f" ({row['total_seconds']:.0f} s)")
    return result_of(rows, args, {str(s): {"clusters": int(len(p.bayes_weights)), "shrinkage": p.bayes_shrinkage,
                                           "noise_variance": p.bayes_noise} for s, p in priors.items()},
                     int(test.x.shape[1]), time.perf_counter() - started)


def result_of(rows: dict[str, list[dict]], args, priors: dict, dim: int | None, seconds: float) -> dict:
    summary = {g: summarize(r, args.arm_list, args.budget_list) for g, r in rows.items() if r}
    return {
        "config": {"personas": len(rows.get("archetype", [])), "off_personas": len(rows.get("off-archetype", [])),
                   "train_users": args.train_users,
                   "train_images": args.train_images, "test_images": args.test_images, "pool": args.pool,
                   "held_out": args.held_out, "random_repeats": args.repeats, "budgets": args.budget_list,
                   "arms": args.arm_list, "seed": args.seed,
                   "described_training_users": not args.undescribed_training, "off_archetype_noise": OFF_ARCHETYPE_NOISE,
                   "embedding_dim": dim},
        "priors": priors,
        "summary": {g: {arm: {str(b): v for b, v in cells.items()} for arm, cells in s.items()} for g, s in summary.items()},
        "targets": targets(summary),
        "rows": rows,
        "seconds": seconds,
    }


def _read_rows(files: list[str]) -> list[dict]:
    rows = []
    for file in files:
        for line in Path(file).read_text().splitlines():
            row = json.loads(line)
            row["arms"] = {arm: {int(b): v for b, v in cells.items()} for arm, cells in row["arms"].items()}
            rows.append(row)
    return rows


def from_rows(files: list[str], args) -> dict:
    """The result of earlier runs' per-persona rows (``taste_signals.*.rows.jsonl``), e.g. the two
    groups run as two processes; budget keys come back from JSON as strings. Arms a row lacks are
    taken from the same persona's row in ``args.arms_from`` (arms an earlier run measured with the
    same seeds and code)."""
    earlier = {(row["group"], row["persona"]): row for row in _read_rows(args.arms_from or [])}
    rows: dict[str, list[dict]] = {}
    for row in _read_rows(files):
        before = earlier.get((row["group"], row["persona"]))
        if before is not None:
            row["arms"] = {**{arm: before["arms"][arm] for arm in before["arms"] if arm not in row["arms"]}, **row["arms"]}
            row["seconds"] = {**{arm: before["seconds"][arm] for arm in before["seconds"] if arm not in row["seconds"]},
                              **row["seconds"]}
            row["total_seconds"] = sum(row["seconds"].values())
        rows.setdefault(row.pop("group"), []).append(row)
    priors = {}
    for file in files:
        sidecar = Path(file).with_name(Path(file).name.replace(".rows.jsonl", ".priors.json"))
        if sidecar.exists():
            priors = json.loads(sidecar.read_text())
    seconds = sum(row["total_seconds"] for group in rows.values() for row in group)
    return result_of(rows, args, priors, None, seconds)


def _summary_cells(result: dict) -> dict:
    return {g: {arm: {int(b): v for b, v in cells.items()} for arm, cells in s.items()} for g, s in result["summary"].items()}


def markdown(result: dict) -> str:
    c = result["config"]
    summary = _summary_cells(result)
    lines = [f"SROCC against true taste on {c['held_out']} held-out scenes per persona (mean \u00b1 sd over personas); "
             f"priors from {c['train_users']} archetype training users; pool of {c['pool']} scenes per persona; "
             f"random rating order averaged over {c['random_repeats']} shuffles per persona. "
             f"An action is one rating or one pick.", ""]
    for group, cells in summary.items():
        count = c["personas"] if group == "archetype" else c["off_personas"]
        lines += [f"**{group}** ({count} personas)", "",
                  "| arm \\ actions | " + " | ".join(str(b) for b in c["budgets"]) + " |",
                  "|---|" + "---:|" * len(c["budgets"])]
        for arm, row in cells.items():
            lines.append(f"| {arm} | " + " | ".join(f"{row[b]['mean']:.3f} \u00b1 {row[b]['sd']:.3f}" for b in c["budgets"]) + " |")
        lines.append("")
    lines += ["| target | arm | measured | threshold | result |", "|---|---|---:|---:|---|"]
    for t in result["targets"]:
        value = "not measured" if t["value"] is None else f"{t['value']:.3f}"
        verdict = "-" if t["passed"] is None else ("pass" if t["passed"] else "**miss**")
        lines.append(f"| {t['target']} | {t['arm'] or '-'} | {value} | {t['threshold']} | {verdict} |")
    return "\n".join(lines) + "\n"


# --- the plot ---

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194))


def plot(result: dict, path: Path) -> str:
    """SROCC vs actions per arm, one panel per persona group. matplotlib when installed, else Pillow."""
    summary = _summary_cells(result)
    budgets = result["config"]["budgets"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_pillow(summary, budgets, path)
        return "pillow"
    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.5), sharey=True, squeeze=False)
    for ax, (group, cells) in zip(axes[0], summary.items(), strict=True):
        for arm, row in cells.items():
            ax.errorbar(budgets, [row[b]["mean"] for b in budgets], yerr=[row[b]["sd"] for b in budgets],
                        label=arm, marker="o", capsize=2)
        ax.set_title(group)
        ax.set_xlabel("actions (ratings or picks)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("SROCC vs true taste")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return "matplotlib"


def _plot_pillow(summary: dict, budgets: list[int], path: Path) -> None:
    from PIL import Image, ImageDraw

    panel_w, panel_h, margin = 520, 400, 60
    legend_h = 18 * len(ARMS) + 20
    image = Image.new("RGB", (panel_w * len(summary), panel_h + legend_h), "white")
    draw = ImageDraw.Draw(image)
    values = [row[b]["mean"] for cells in summary.values() for row in cells.values() for b in budgets]
    low, high = min(0.0, np.floor(min(values) * 10) / 10), max(0.8, np.ceil(max(values) * 10) / 10)
    span = max(budgets) - min(budgets) or 1
    for p, (group, cells) in enumerate(summary.items()):
        left, right, top, bottom = p * panel_w + margin, (p + 1) * panel_w - 20, 30, panel_h - 40

        def at(b, v, left=left, right=right, top=top, bottom=bottom):  # this panel's box
            return (left + (b - min(budgets)) / span * (right - left), bottom - (v - low) / (high - low) * (bottom - top))

        draw.text((left, 8), f"{group}: SROCC vs true taste", fill="black")
        draw.rectangle((left, top, right, bottom), outline="black")
        for tick in np.arange(low, high + 1e-9, 0.1):
            y = at(min(budgets), tick)[1]
            draw.line((left, y, right, y), fill=(225, 225, 225))
            draw.text((left - 35, y - 6), f"{tick:.1f}", fill="black")
        for b in budgets:
            x = at(b, low)[0]
            draw.text((x - 6, bottom + 6), str(b), fill="black")
        draw.text(((left + right) / 2 - 60, bottom + 22), "actions (ratings or picks)", fill="black")
        for arm, row in cells.items():
            colour = COLOURS[ARMS.index(arm) % len(COLOURS)]
            points = [at(b, row[b]["mean"]) for b in budgets]
            draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    for a, arm in enumerate(ARMS):
        y = panel_h + 10 + 18 * a
        draw.line((margin, y + 6, margin + 30, y + 6), fill=COLOURS[a % len(COLOURS)], width=3)
        draw.text((margin + 40, y), arm, fill="black")
    image.save(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--personas", type=int, default=20, help="archetype test personas")
    parser.add_argument("--off-personas", type=int, default=None, help="off-archetype test personas (default: --personas)")
    parser.add_argument("--train-users", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--test-images", type=int, default=240, help="scenes the test personas' pools and held-out sets are drawn from")
    parser.add_argument("--pool", type=int, default=200, help="scenes per persona that may be asked about")
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--budgets", default="0,5,10,20,40")
    parser.add_argument("--repeats", type=int, default=3, help="random rating orders per persona")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--undescribed-training", action="store_true",
                        help="training users give no description: a description is read zero-shot (its CLIP direction)")
    parser.add_argument("--group", choices=("both", "archetype", "off-archetype"), default="both",
                        help="which personas to run (two processes can run one group each)")
    parser.add_argument("--rows-from", nargs="+", default=None, metavar="ROWS_JSONL",
                        help="run nothing: summarise these earlier runs' per-persona rows (same other options)")
    parser.add_argument("--arms-from", nargs="+", default=None, metavar="ROWS_JSONL",
                        help="with --rows-from: take the arms a persona's row lacks from its row in these files")
    parser.add_argument("--ceiling", action="store_true",
                        help="run nothing else: how well noise-free linear heads on the image embedding rank held-out scenes")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--plot", default=str(PLOT))
    args = parser.parse_args(argv)
    args.off_personas = args.personas if args.off_personas is None else args.off_personas
    if args.ceiling:
        result = ceiling(args)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "taste_signals.ceiling.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return result
    args.budget_list = sorted({int(b) for b in args.budgets.split(",")})
    args.arm_list = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arm_list if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if args.held_out + args.pool > args.test_images:
        parser.error(f"--held-out + --pool ({args.held_out + args.pool}) exceeds --test-images ({args.test_images})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.rows_from:
        result = from_rows(args.rows_from, args)
    else:
        (out / f"taste_signals.{args.group}.config.json").write_text(json.dumps(
            {k: v for k, v in vars(args).items() if k not in ("budget_list", "arm_list", "out", "plot")}, indent=2) + "\n")
        result = run(args)
    (out / "taste_signals.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "taste_signals.md").write_text(markdown(result))
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        result["plot"] = plot(result, Path(args.plot))
        log(f"plot ({result['plot']}): {args.plot}")
    print(markdown(result), end="")
    log(f"done in {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
