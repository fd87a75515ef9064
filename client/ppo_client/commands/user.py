"""``ppo-client user ...``: the user store's people, their ratings, choices, descriptions and
preference models."""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.text import Text

from ppo_client.commands.options import add_store, add_url
from ppo_client.console import console, print_json, print_table, results, status
from ppo_client.errors import DataError, InvalidRequestError, StoreError
from ppo_client.images import read_image
from ppo_client.piaa.imports import choices_rows, csv_rows, sac_rows
from ppo_client.piaa.methods import METHODS, design
from ppo_client.piaa.training import train_user
from ppo_client.scoring import ScoringClient
from ppo_client.store import RatingRow, UserStore


def register(commands) -> None:
    user = commands.add_parser("user", help="users, their ratings and their preference models")
    sub = user.add_subparsers(dest="user_command", required=True)
    for name, handler, text in (
        ("create", _create, "create a user"),
        ("delete", _delete, "delete a user with their ratings, choices, description and models"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("name")
        add_store(parser)
        parser.set_defaults(handler=handler)
    show = sub.add_parser("show", help="a user's ratings and models")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="the same as one JSON document on stdout")
    add_store(show)
    show.set_defaults(handler=_show)
    listing = sub.add_parser("list", help="all users")
    listing.add_argument("--json", action="store_true", help="the users as one JSON document on stdout")
    add_store(listing)
    listing.set_defaults(handler=_list)

    imports = sub.add_parser("import", help="import ratings or choices (all or nothing)")
    imports.add_argument("name")
    source = imports.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="CSV of image,rating rows (paths relative to the CSV)")
    source.add_argument("--sac", help="SAC-format sqlite file")
    source.add_argument("--choices", help="CSV of shown1|shown2|...,chosen rows: 2-4 images shown and the one chosen "
                                          "(one of those paths, or none); paths relative to the CSV")
    imports.add_argument("--sid", type=int, help="with --sac: the rater to import")
    imports.add_argument("--images-root", help="with --sac: the folder its paths are relative to")
    add_store(imports)
    imports.set_defaults(handler=_import)

    describe = sub.add_parser("describe", help="keep a new version of the user's description of their taste")
    describe.add_argument("name")
    describe.add_argument("text", help='one or a few sentences, e.g. "dark, moody blue scenes; no yellow, no clutter"')
    add_store(describe)
    describe.set_defaults(handler=_describe)

    score = sub.add_parser("score", help="score image files with the user's model, best first (embedded by the server)")
    score.add_argument("name")
    score.add_argument("images", nargs="+", metavar="IMAGE")
    score.add_argument("--model", type=int, help="the model id (default: the user's latest; `user show` lists them)")
    score.add_argument("--csv", help="also write image,score,sd rows to this file (sd empty where the model has none)")
    add_store(score)
    add_url(score)
    score.set_defaults(handler=_score)

    train = sub.add_parser("train", help="train the user's preference model on served embeddings")
    train.add_argument("name")
    train.add_argument("--method", choices=METHODS, default="bayes")
    train.add_argument("--prior-sac", help="learn the prior from this SAC-format set (default: the store's other users)")
    train.add_argument("--images-root", help="with --prior-sac: its images folder (default: beside the file)")
    train.add_argument("--signals", help="what to learn from, some of ratings,choices,description (default: all the user has)")
    add_store(train)
    add_url(train)
    train.set_defaults(handler=_train)


def _store(args: argparse.Namespace) -> UserStore:
    return UserStore(args.store)


def _create(args) -> int:
    with _store(args) as store:
        store.create_user(args.name)
        console.print(f"created user {args.name!r} in {store.path}")
    return 0


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _iso(timestamp: float) -> str:
    """A store time for ``--json``: ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def _figure(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _list(args) -> int:
    with _store(args) as store:
        users, where = store.users(), store.path
    if args.json:
        print_json({"store": where, "users": [
            {"name": u.name, "created": _iso(u.created), "ratings": u.ratings, "choices": u.choices, "models": u.models,
             "description_version": u.description_version or None}
            for u in users
        ]})
        return 0
    print_table(("user", "ratings", "models", "created"),
                [(u.name, u.ratings, u.models, _when(u.created)) for u in users])
    return 0


def _counts(sources) -> dict[str, int]:
    return dict(sorted(Counter(sources).items()))


def _show_json(user, ratings, choices, description, models) -> dict:
    values = [r.rating for r in ratings]
    return {
        "name": user.name,
        "created": _iso(user.created),
        "ratings": {"count": len(values), "mean": sum(values) / len(values) if values else None,
                    "min": min(values, default=None), "max": max(values, default=None),
                    "sources": _counts(r.source for r in ratings)},
        "choices": {"count": len(choices), "picked": sum(c.outcome == "chosen" for c in choices),
                    "sources": _counts(c.source for c in choices)},
        "description": None if description is None else {
            "version": description.version, "text": description.text, "created": _iso(description.created)},
        "models": [
            {"id": m.id, "method": m.method, "encoder": m.encoder, "created": _iso(m.created),
             "ratings": m.params.get("ratings"), "signals": m.params.get("signals"),
             "cv_srocc": m.metrics.get("cv_srocc"), "cv_mae": m.metrics.get("cv_mae"), "metrics": m.metrics}
            for m in models
        ],
    }


def _show(args) -> int:
    with _store(args) as store:
        user, ratings, models = store.user(args.name), store.ratings(args.name), store.models(args.name)
        choices, description = store.choices(args.name), store.description(args.name)
    if args.json:
        print_json(_show_json(user, ratings, choices, description, models))
        return 0
    values = [r.rating for r in ratings]
    results.print(Text.assemble((user.name, "bold"), f": {len(ratings)} ratings" + (
        f", mean {sum(values) / len(values):.2f}, range {min(values):g}-{max(values):g}" if values else "")))
    for source in sorted({r.source for r in ratings}):
        results.print(f"  from {source}: {sum(r.source == source for r in ratings)}")
    if choices:  # like the rating sources, shown where there are some
        picked = sum(c.outcome == "chosen" for c in choices)
        results.print(f"{len(choices)} choices ({picked} picked one, {len(choices) - picked} none or no preference)")
        for source in sorted({c.source for c in choices}):
            results.print(f"  from {source}: {sum(c.source == source for c in choices)}")
    if description is not None:
        results.print(f"description (version {description.version}, {_when(description.created)}): {description.text}")
    if models:
        print_table(("id", "method", "encoder", "ratings", "CV SROCC", "CV MAE", "trained"), [
            (m.id, m.method, m.encoder, m.params.get("ratings", ""), _figure(m.metrics.get("cv_srocc"), ".3f"),
             _figure(m.metrics.get("cv_mae"), ".2f"), _when(m.created))
            for m in models
        ])
    return 0


def _delete(args) -> int:
    with _store(args) as store:
        store.delete_user(args.name)
    console.print(f"deleted user {args.name!r} with their ratings, choices, description and models")
    return 0


def _import(args) -> int:
    if args.choices:
        source = f"csv:{Path(args.choices).name}"
        with _store(args) as store:
            with status(f"checking and importing the choices of {source} ..."):
                count = store.import_choices(args.name, choices_rows(Path(args.choices)), source=source)
        console.print(f"imported {count} choices for {args.name!r}")
        return 0
    rows: Iterable[RatingRow]
    if args.csv:
        rows, source = csv_rows(Path(args.csv)), f"csv:{Path(args.csv).name}"
    else:
        if args.sid is None or args.images_root is None:
            raise InvalidRequestError("--sac", "needs --sid and --images-root")
        rows = sac_rows(Path(args.sac), args.sid, Path(args.images_root))
        source = f"sac:{Path(args.sac).name}:{args.sid}"
    with _store(args) as store:
        with status(f"checking and importing the ratings of {source} ..."):
            count = store.import_ratings(args.name, rows, source=source)
    console.print(f"imported {count} ratings for {args.name!r}")
    return 0


def _describe(args) -> int:
    with _store(args) as store:
        version = store.describe(args.name, args.text)
    results.print(version)
    console.print(f"saved version {version} of {args.name!r}'s description")
    return 0


def _chosen_model(store, name: str, model_id: int | None):
    if model_id is None:
        return store.latest_model(name)
    for model in store.models(name):
        if model.id == model_id:
            return model
    raise StoreError(f"user {name!r} has no model {model_id}; `ppo-client user show {name}` lists their models")


def _score(args) -> int:
    """Each image's predicted score under the user's model and, where the model keeps a posterior
    covariance, its predictive standard deviation; best first."""

    images = [read_image(Path(path))[1].convert("RGB") for path in args.images]  # every file checked before the server
    with _store(args) as store:
        model = _chosen_model(store, args.name, args.model)
    with ScoringClient(args.url) as client:
        encoder = client.encoder_info().encoder_id
        if encoder != model.encoder:
            raise StoreError(f"model {model.id} of {args.name!r} was trained on the encoder {model.encoder}, and the server "
                             f"serves {encoder}; train it again with `ppo-client user train {args.name}` against this server")
        embeddings = client.embed([np.asarray(image) for image in images])
    scores = model.head.score(embeddings)
    if model.covariance is None:
        sds = [None] * len(scores)
    else:
        a = design(embeddings)
        sds = np.sqrt(np.maximum(np.einsum("nd,de,ne->n", a, model.covariance.astype(np.float64), a), 0)).tolist()
    ranked = sorted(zip(args.images, scores.tolist(), sds, strict=True), key=lambda row: -row[1])
    print_table(("image", "score", "sd"), [(p, f"{s:.3f}", "-" if sd is None else f"{sd:.3f}") for p, s, sd in ranked],
                title=f"{args.name}'s model {model.id} ({model.method})")
    if args.csv:
        try:
            with open(args.csv, "w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(("image", "score", "sd"))
                writer.writerows((p, repr(s), "" if sd is None else repr(sd)) for p, s, sd in ranked)
        except OSError as exc:
            raise DataError(f"cannot write {args.csv} ({exc.strerror or exc})") from None
        console.print(f"wrote {len(ranked)} scores to {args.csv}")
    return 0


def _train(args) -> int:
    signals = frozenset(s.strip() for s in args.signals.split(",") if s.strip()) if args.signals else None
    with _store(args) as store, ScoringClient(args.url) as client:
        trained = train_user(
            client, store, args.name, args.method,
            prior_sac=Path(args.prior_sac) if args.prior_sac else None,
            images_root=Path(args.images_root) if args.images_root else None,
            signals=signals,
        )
    m, p = trained.metrics, trained.params
    seen = ", ".join(f"{p.get(s, 0) if s != 'description' else 'a'} {s}" for s in p.get("signals", ["ratings"]))
    checks = []
    if m.get("cv_srocc") is not None:
        checks.append(f"{m['cv_folds']}-fold CV SROCC {m['cv_srocc']:.3f}, MAE {m['cv_mae']:.2f}")
    if m.get("cv_choice_accuracy") is not None:
        checks.append(f"held-out choice accuracy {m['cv_choice_accuracy']:.3f}")
    results.print(trained.model_id)  # the new model's id, for `user score --model`
    console.print(f"trained {args.method} for {args.name!r} (model {trained.model_id}, from {seen}): "
                  + ("; ".join(checks) or "too little to cross-validate"))
    return 0
