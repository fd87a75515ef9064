"""``ppo-client``: the user's command line. Each subcommand is a small function over the SDK."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppo_client import contract
from ppo_client.console import console, print_json, print_table, results, run_commands, status
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest
from ppo_client.triton import DEFAULT_TIMEOUT_S, DEFAULT_URL, URL_ENV


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help=f"Triton server(s): host:port (gRPC) or http://host:port, several comma-separated; default ${URL_ENV} or {DEFAULT_URL}",
    )


def _generate(args: argparse.Namespace) -> int:
    from ppo_client.txt2img import Txt2ImgClient

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise InvalidRequestError("--out", f"must end in .png, .jpg or .webp, got {out.name!r}")
    request = GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.guidance,
        height=args.height,
        width=args.width,
        scheduler=args.scheduler,
        guidance_rescale=args.guidance_rescale,
    )
    with Txt2ImgClient(args.url, timeout_s=args.timeout) as client:
        with status(f"generating with {client.endpoint} ..."):
            image = client.generate(request)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    console.print(f"wrote {out} ({image.width}x{image.height})")
    return 0


def _models(args: argparse.Namespace) -> int:
    from ppo_client.txt2img import Txt2ImgClient

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppo-client", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    default = GenerationRequest(prompt="")  # the defaults live in one place: the request
    generate = commands.add_parser("generate", help="generate one image from a prompt")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--negative-prompt", default=default.negative_prompt)
    generate.add_argument("--seed", type=int, default=default.seed)
    generate.add_argument("--steps", type=int, default=default.steps,
                          help=f"{contract.MIN_STEPS}..{contract.MAX_STEPS} (default %(default)s)")
    generate.add_argument("--guidance", type=float, default=default.guidance_scale,
                          help="classifier-free guidance scale (<=1: off; default %(default)s)")
    generate.add_argument("--height", type=int, default=default.height, help="pixels; default: the model's native size")
    generate.add_argument("--width", type=int, default=default.width, help="pixels; default: the model's native size")
    generate.add_argument(
        "--scheduler", default=default.scheduler, choices=("", *contract.SCHEDULERS),
        help="default: the checkpoint's own; which of these a served model offers: `ppo-client models`",
    )
    generate.add_argument("--guidance-rescale", type=float, default=default.guidance_rescale,
                          help="0..1; rescales guided noise (about 0.7 suits SD 2.x v-prediction models); default 0 (off)")
    generate.add_argument("--out", required=True, help="image file to write (.png, .jpg, .webp)")
    generate.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                          help="seconds to wait for the image (default %(default)s)")
    _add_url(generate)
    generate.set_defaults(handler=_generate)

    models = commands.add_parser("models", help="what the server serves: models, pipeline family, sizes, schedulers")
    models.add_argument("--json", action="store_true", help="the same as one JSON document on stdout")
    _add_url(models)
    models.set_defaults(handler=_models)

    from ppo_client.piaa.cli import add_piaa_commands

    add_piaa_commands(commands, _add_url)
    from ppo_client.store.cli import add_store_commands

    add_store_commands(commands)
    from ppo_client.optimize.cli import add_optimize_commands

    add_optimize_commands(commands, _add_url)
    from ppo_client.app.cli import add_app_command
    from ppo_client.optimize.cli import add_llm_arguments

    add_app_command(commands, _add_url, add_llm_arguments)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_commands(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
