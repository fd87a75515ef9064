"""``ppo-client piaa-eval``: few-shot PIAA evaluation of the preference methods on a SAC-format set."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ppo_client.commands.options import add_store, add_url
from ppo_client.console import console, print_document, progress
from ppo_client.errors import InvalidRequestError
from ppo_client.piaa.embeddings import sac_users
from ppo_client.piaa.evaluation import EvalConfig, evaluate, markdown_table
from ppo_client.piaa.methods import METHODS, MethodConfig
from ppo_client.sac import read_sac
from ppo_client.scoring import ScoringClient
from ppo_client.store import UserStore


def register(commands) -> None:
    default = EvalConfig()  # the defaults live in one place: the evaluation's configuration
    parser = commands.add_parser("piaa-eval", help="few-shot PIAA evaluation on a SAC-format rating set")
    parser.add_argument("--sac", required=True)
    parser.add_argument("--images-root", required=True)
    parser.add_argument("--shots", type=_shots, default=default.shots,
                          help=f"comma-separated (default: {','.join(map(str, default.shots))})")
    parser.add_argument("--splits", type=int, default=default.splits, help="(default %(default)s)")
    parser.add_argument("--methods", type=_methods, default=default.methods, help=f"comma-separated from {','.join(METHODS)}")
    parser.add_argument("--train-fraction", type=float, default=default.train_fraction,
                          help="share of users in training per split (default %(default)s)")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--out", required=True, help="folder for piaa_eval.json and piaa_eval.md")
    add_store(parser)
    add_url(parser)
    parser.set_defaults(handler=run)


def _shots(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("shot counts must be positive")
    return values


def _methods(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in values if v not in METHODS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"unknown method {unknown[0] if unknown else ''!r}; choose from {','.join(METHODS)}")
    return values


def run(args: argparse.Namespace) -> int:
    config = EvalConfig(shots=args.shots, splits=args.splits, methods=args.methods,
                        train_fraction=args.train_fraction, seed=args.seed)
    try:
        config.checked()
    except ValueError as exc:
        raise InvalidRequestError("piaa-eval", str(exc)) from None
    sac = read_sac(Path(args.sac))
    with UserStore(args.store) as store, ScoringClient(args.url) as client:
        users, embeddings = sac_users(sac, Path(args.images_root), client, store)
        encoder = client.encoder_info().encoder_id
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"evaluating {len(args.methods)} methods on {len(users)} users", total=args.splits)
        result = evaluate(users, embeddings, config, MethodConfig(seed=args.seed), on_split=lambda: bar.advance(task))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {**result.to_json(), "sac": str(args.sac), "encoder": encoder, "seconds": time.perf_counter() - started}
    (out / "piaa_eval.json").write_text(json.dumps(payload, indent=2) + "\n")
    table = markdown_table(result)
    (out / "piaa_eval.md").write_text(table)
    print_document(table)
    console.print(f"wrote {out / 'piaa_eval.json'} and {out / 'piaa_eval.md'}")
    return 0
