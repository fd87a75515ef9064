"""``ppo-client models``: what a server serves (models, pipeline family, sizes, schedulers)."""

from __future__ import annotations

import argparse

from ppo_client import contract
from ppo_client.commands.options import add_url
from ppo_client.console import print_json, print_table, results
from ppo_client.txt2img import Txt2ImgClient


def register(commands) -> None:
    parser = commands.add_parser("models", help="what the server serves: models, pipeline family, sizes, schedulers")
    parser.add_argument("--json", action="store_true", help="the same as one JSON document on stdout")
    add_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with Txt2ImgClient(args.url) as client:
        endpoint = str(client.endpoint)
        models = client.served_models()
        served = client.pipeline() if (contract.TXT2IMG.name, "READY") in models else None
    if args.json:
        print_json({"endpoint": endpoint, "models": [{"name": name, "state": state or None} for name, state in models],
                    "txt2img": None if served is None else _pipeline_json(served)})
        return 0
    print_table(("model", "state"), [(name, state or "-") for name, state in models], title=f"models on {endpoint}")
    if served is None:
        return 0
    limits = served.limits
    results.print(
        f"txt2img: family {served.family}, native {limits.native_side}x{limits.native_side}, sides "
        f"{limits.min_side}..{limits.max_side} in steps of {limits.multiple}"
    )
    results.print(f"schedulers: default {served.default_scheduler or '?'} (the checkpoint's own); "
                  f"by name: {', '.join(served.schedulers) or 'none'}")
    return 0


def _pipeline_json(served: contract.ServedPipeline) -> dict:
    limits = served.limits
    return {"family": served.family, "native_side": limits.native_side, "min_side": limits.min_side,
            "max_side": limits.max_side, "side_multiple": limits.multiple,
            "default_scheduler": served.default_scheduler or None, "schedulers": list(served.schedulers)}
