"""``ppo-demo``: the demo world's command line: personas, ratings as a persona, the demo rating set,
linking store users to their personas, training the demo models, and the ``make demo`` walkthrough."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from ppo_client.commands.options import STORE_HELP
from ppo_client.console import console, run_commands
from ppo_client.images import load_rgb
from ppo_client.store import UserStore
from ppo_client.triton import DEFAULT_URL, URL_ENV
from ppo_demo import walkthrough
from ppo_demo.attributes import measure_many
from ppo_demo.personas import load_persona, make_persona, rate_many, save_persona, true_scores
from ppo_demo.ratings import RatingSetConfig, build_with_progress
from ppo_demo.training import __main__ as training
from ppo_demo.truth import link_from_sac


def _persona(args: argparse.Namespace) -> int:
    persona = make_persona(args.archetype, args.seed, args.name)
    save_persona(persona, args.out)
    console.print(f"wrote {args.out} ({persona.archetype}, seed {args.seed})")
    return 0


def _rate(args: argparse.Namespace) -> int:
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
        writer.writerows(zip(args.images, scores, strict=True))
    console.print(f"wrote {len(scores)} {'true scores' if args.true else 'ratings'} to {args.csv}")
    return 0


def _ratings(args: argparse.Namespace) -> int:
    config = RatingSetConfig(users=args.users, images=args.images, seed=args.seed, steps=args.steps)
    build_with_progress(Path(args.out), config, url=args.url)
    return 0


def _link(args: argparse.Namespace) -> int:
    with UserStore(args.store) as store:
        spec = link_from_sac(store, args.name, Path(args.sac), args.sid)
    if spec is None:
        console.print(f"{args.sac} has no persona for rater {args.sid}: nothing linked")
        return 1
    console.print(f"linked {args.name!r} to persona {spec.get('name', '?')} ({spec.get('archetype', '?')}): "
                  "optimization runs for this user now record their true taste")
    return 0


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help=f"Triton server: host:port (gRPC) or http://host:port; default ${URL_ENV} or {DEFAULT_URL}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppo-demo", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)

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

    default = RatingSetConfig()
    ratings = sub.add_parser("ratings", help="generate images with the served demo pipeline and rate them (SAC schema)")
    ratings.add_argument("--out", required=True, help="folder for sac.sqlite and the images")
    ratings.add_argument("--users", type=int, default=default.users, help="virtual users (default %(default)s)")
    ratings.add_argument("--images", type=int, default=default.images, help="images (default %(default)s)")
    ratings.add_argument("--seed", type=int, default=default.seed)
    ratings.add_argument("--steps", type=int, default=default.steps, help="denoising steps (default %(default)s)")
    _add_url(ratings)
    ratings.set_defaults(handler=_ratings)

    link = sub.add_parser("link", help="link a store user to a virtual user of a demo rating set (their true taste)")
    link.add_argument("name", help="user in the store")
    link.add_argument("--sac", required=True, help="demo rating set (sac.sqlite)")
    link.add_argument("--sid", type=int, required=True, help="the virtual user's rater id in that set")
    link.add_argument("--store", default=None, help=STORE_HELP)
    link.set_defaults(handler=_link)

    train = sub.add_parser("train", help="train the demo models (tokenizer, vae, clip, unet, judge) and write them",
                           description=training.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_arguments(train)
    train.set_defaults(handler=training.train)

    run = sub.add_parser("run", help="the whole job on the demo world, offline, end to end (what `make demo` runs)",
                         description=walkthrough.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    walkthrough.add_arguments(run)
    run.set_defaults(handler=walkthrough.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_commands(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
