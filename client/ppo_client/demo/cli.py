"""``ppo-client demo ...``: make personas, rate images as one, and build the demo rating set."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from ppo_client.console import console


def _persona(args: argparse.Namespace) -> int:
    from ppo_client.demo.personas import make_persona, save_persona

    persona = make_persona(args.archetype, args.seed, args.name)
    save_persona(persona, args.out)
    console.print(f"wrote {args.out} ({persona.archetype}, seed {args.seed})")
    return 0


def _rate(args: argparse.Namespace) -> int:
    import numpy as np

    from ppo_client.demo.attributes import measure_many
    from ppo_client.demo.personas import load_persona, rate_many, true_scores
    from ppo_client.images import load_rgb

    persona = load_persona(args.persona)
    pixels = [load_rgb(name) for name in args.images]
    attributes = measure_many(pixels)
    if args.true:
        scores = [round(float(s), 3) for s in true_scores(persona, attributes)]
    else:
        scores = [int(r) for r in rate_many(persona, attributes, np.random.default_rng(args.seed))]
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "rating"])
        writer.writerows(zip(args.images, scores))
    console.print(f"wrote {len(scores)} {'true scores' if args.true else 'ratings'} to {args.csv}")
    return 0


def _ratings(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from ppo_client.demo.ratings import RatingSetConfig, build_rating_set

    config = RatingSetConfig(users=args.users, images=args.images, seed=args.seed, steps=args.steps).checked()
    with Progress(console=console) as progress:
        task = progress.add_task("generating images", total=config.images)
        path = build_rating_set(Path(args.out), config, url=args.url, progress=lambda: progress.advance(task))
    console.print(f"wrote {path} ({config.users} users, {config.images} images)")
    return 0


def add_demo_commands(commands, add_url) -> None:
    demo = commands.add_parser("demo", help="the demo world: personas, ratings as a persona, the demo rating set")
    sub = demo.add_subparsers(dest="demo_command", required=True)

    persona = sub.add_parser("persona", help="write a persona spec drawn from an archetype")
    persona.add_argument("--archetype", required=True)
    persona.add_argument("--seed", type=int, default=0)
    persona.add_argument("--name", default=None)
    persona.add_argument("--out", required=True, help="JSON file to write")
    persona.set_defaults(handler=_persona)

    rate = sub.add_parser("rate", help="rate image files as a persona; writes image,rating rows")
    rate.add_argument("--persona", required=True, help="persona spec (JSON)")
    rate.add_argument("--true", action="store_true", help="noise-free taste instead of noisy 1-10 ratings")
    rate.add_argument("--seed", type=int, default=0, help="rating noise seed")
    rate.add_argument("--csv", required=True, help="CSV file to write")
    rate.add_argument("images", nargs="+", metavar="IMAGE")
    rate.set_defaults(handler=_rate)

    ratings = sub.add_parser("ratings", help="generate images with the served demo pipeline and rate them (SAC schema)")
    ratings.add_argument("--out", required=True, help="folder for sac.sqlite and the images")
    ratings.add_argument("--users", type=int, default=60)
    ratings.add_argument("--images", type=int, default=600)
    ratings.add_argument("--seed", type=int, default=0)
    ratings.add_argument("--steps", type=int, default=20)
    add_url(ratings)
    ratings.set_defaults(handler=_ratings)
