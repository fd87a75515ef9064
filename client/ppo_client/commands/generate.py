"""``ppo-client generate``: one image from a prompt, written to a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ppo_client import contract
from ppo_client.commands.options import add_url
from ppo_client.console import console, status
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest
from ppo_client.triton import DEFAULT_TIMEOUT_S
from ppo_client.txt2img import Txt2ImgClient


def register(commands) -> None:
    default = GenerationRequest(prompt="")  # the defaults live in one place: the request
    parser = commands.add_parser("generate", help="generate one image from a prompt")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default=default.negative_prompt)
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--steps", type=int, default=default.steps,
                        help=f"{contract.MIN_STEPS}..{contract.MAX_STEPS} (default %(default)s)")
    parser.add_argument("--guidance", type=float, default=default.guidance_scale,
                        help="classifier-free guidance scale (<=1: off; default %(default)s)")
    parser.add_argument("--height", type=int, default=default.height, help="pixels; default: the model's native size")
    parser.add_argument("--width", type=int, default=default.width, help="pixels; default: the model's native size")
    parser.add_argument(
        "--scheduler", default=default.scheduler, choices=("", *contract.SCHEDULERS),
        help="default: the checkpoint's own; which of these a served model offers: `ppo-client models`",
    )
    parser.add_argument("--guidance-rescale", type=float, default=default.guidance_rescale,
                        help="0..1; rescales guided noise (about 0.7 suits SD 2.x v-prediction models); default 0 (off)")
    parser.add_argument("--out", required=True, help="image file to write (.png, .jpg, .webp)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help="seconds to wait for the image (default %(default)s)")
    add_url(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
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
