"""Train a demo UNet on the shipped VAE and text encoder, and write a models folder to measure it.

A trial of a UNet recipe without rebuilding the whole demo world: the latents and captions are the
training stage's, the VAE, text encoder, tokenizer and judge are the shipped ones, and only the
UNet changes (``--from-shipped`` continues the shipped UNet instead of starting afresh). Measure
the result with ``benchmarks/prompt_following.py --models OUT/NAME``. Resumable like every
training stage (checkpoints under ``OUT/checkpoints/NAME``).

``--standard-latents`` trains on the shipped VAE's latents standardised per channel (the VAE is
re-expressed in those coordinates and written with the trial's UNet; it decodes the same images).

    python benchmarks/unet_trial.py --out build/unet_trial --name v3000 --prediction v_prediction
    python benchmarks/unet_trial.py --out build/unet_trial --name more1500 --from-shipped --steps 1500 --lr 2e-4 --warmup 50 --seed 1
    python benchmarks/unet_trial.py --out build/unet_trial --name std3000 --standard-latents
    python benchmarks/unet_trial.py --out build/unet_trial --name wide3000 --widths 96 128
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import torch

from ppo_client.console import setup_logging, sigterm_as_exit
from ppo_demo import models_dir
from ppo_demo.training.data import SceneSet
from ppo_demo.training.unet import CONFIG, WIDTHS, train_unet
from ppo_demo.training.vae import with_standard_latents
from ppo_server.backends.schedulers import sd_scheduler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", required=True, help="the trial's checkpoint folder and models folder")
    parser.add_argument("--prediction", default="epsilon", choices=("epsilon", "v_prediction"))
    parser.add_argument("--from-shipped", action="store_true", help="start from the shipped UNet's weights")
    parser.add_argument("--steps", type=int, default=CONFIG.steps)
    parser.add_argument("--lr", type=float, default=CONFIG.lr)
    parser.add_argument("--warmup", type=int, default=CONFIG.warmup)
    parser.add_argument("--seed", type=int, default=CONFIG.seed)
    parser.add_argument("--images", type=int, default=40000, help="training scenes (the training stage's default)")
    parser.add_argument("--device", default="cpu", help="where the UNet trains: cpu, cuda, cuda:1 ...")
    parser.add_argument("--widths", type=int, nargs=2, default=WIDTHS, metavar=("C8", "C4"),
                        help="UNet channels at the 8x8 and 4x4 levels (multiples of 32; shipped: 64 128)")
    parser.add_argument("--standard-latents", action="store_true",
                        help="zero mean and unit variance per latent channel (statistics of 4,096 training scenes)")
    args = parser.parse_args()
    setup_logging(1)
    from diffusers import StableDiffusionPipeline

    shipped = models_dir()
    pipe = StableDiffusionPipeline.from_pretrained(shipped / "pipeline", dtype=torch.float32)
    config = dataclasses.replace(CONFIG, steps=args.steps, lr=args.lr, warmup=args.warmup, seed=args.seed)
    data = SceneSet(args.images, cache=args.out / "data")
    if args.standard_latents:
        pipe.vae = with_standard_latents(pipe.vae, data.pixels(np.arange(min(4096, len(data)))))
    unet = train_unet(data, pipe.vae, pipe.text_encoder, pipe.tokenizer, args.out, config, args.device,
                      prediction=args.prediction, init=pipe.unet if args.from_shipped else None, name=args.name,
                      widths=tuple(args.widths))
    models = args.out / args.name
    shutil.rmtree(models, ignore_errors=True)
    shutil.copytree(shipped / "pipeline", models / "pipeline", ignore=shutil.ignore_patterns("unet"))
    if args.standard_latents:
        pipe.vae.to(torch.float16).save_pretrained(models / "pipeline" / "vae", safe_serialization=True)
    shutil.copy(shipped / "judge.pt", models / "judge.pt")
    unet.to(torch.float16).save_pretrained(models / "pipeline" / "unet", safe_serialization=True)
    sd_scheduler(args.prediction).save_pretrained(models / "pipeline" / "scheduler")


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
