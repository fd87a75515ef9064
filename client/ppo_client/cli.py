"""``ppo-client``: the user's command line. Each subcommand is a small function over the SDK."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppo_client import contract
from ppo_client.console import console, run_cli, setup_logging
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest
from ppo_client.triton import DEFAULT_URL, URL_ENV


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
    )
    with Txt2ImgClient(args.url, timeout_s=args.timeout) as client:
        with console.status(f"generating with {client.endpoint} ..."):
            image = client.generate(request)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    console.print(f"wrote {out} ({image.width}x{image.height})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppo-client", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="generate one image from a prompt")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--negative-prompt", default="")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--steps", type=int, default=20, help=f"{contract.MIN_STEPS}..{contract.MAX_STEPS}")
    generate.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (<=1: off)")
    generate.add_argument("--height", type=int, default=0, help="pixels; default: the model's native size")
    generate.add_argument("--width", type=int, default=0, help="pixels; default: the model's native size")
    generate.add_argument(
        "--scheduler", default="", choices=("", *contract.SCHEDULERS), help="default: the exported one"
    )
    generate.add_argument("--out", required=True, help="image file to write (.png, .jpg, .webp)")
    generate.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the image")
    _add_url(generate)
    generate.set_defaults(handler=_generate)

    from ppo_client.demo.cli import add_demo_commands

    add_demo_commands(commands, _add_url)
    from ppo_client.piaa.cli import add_piaa_commands

    add_piaa_commands(commands, _add_url)
    from ppo_client.optimize.cli import add_optimize_commands

    add_optimize_commands(commands, _add_url)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
