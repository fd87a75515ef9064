"""``ppo-demo train STAGE... [--out DIR] [--models DIR]``: train the demo world.

Stages, in order; each resumes from its checkpoint under ``--out`` when one exists, so a killed run
continues where it stopped:

    tokenizer  BPE vocabulary over scene captions and common prompt words
    vae        AutoencoderKL, 64x64 images to 8x8x8 latents
    clip       small CLIP, contrastive on scene/caption pairs
    unet       text-conditioned latent denoiser (needs vae, clip)
    judge      CNN that reads main colour, main shape and background colour off pixels
               (renders and their round trips through the vae)
    pipeline   write the shipped artefacts (half precision) to --models
    evaluate   prompt-following and retrieval figures, written to --models/training_report.json

``all`` runs every stage; ``--smoke`` runs each for a few steps on 64 images (the tests do this).
``--device cuda`` trains on a GPU (a run is deterministic per device; checkpoints resume anywhere).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ppo_client.console import setup_logging
from ppo_demo import models_dir
from ppo_demo.training.data import SceneSet
from ppo_demo.training.tokenizer import build_demo_tokenizer

logger = logging.getLogger("ppo_demo.training")
STAGES = ("tokenizer", "vae", "clip", "unet", "judge", "pipeline", "evaluate")


def run_stage(stage: str, out: Path, models: Path, data, smoke: bool, device: str = "cpu",
              latents: tuple[int, int] = (8, 8)) -> dict:
    from transformers import CLIPTokenizer

    def cfg(config):
        return config.smoke() if smoke else config

    if stage == "tokenizer":
        seeds = range(200) if smoke else range(20000)
        tokenizer = build_demo_tokenizer(out / "tokenizer", caption_seeds=seeds, vocab_size=1024 if smoke else 4096)
        return {"vocab_size": len(tokenizer)}
    if stage == "vae":
        # deferred: needs torch (server extra); ppo-demo builds its parser from this module
        from ppo_demo.training.vae import CONFIG, LatentShape, train_vae

        shape = LatentShape(*latents)
        vae, error = train_vae(data, out, cfg(CONFIG), device, shape)
        side = 64 // shape.downsample
        result = {"reconstruction_error_per_255": error, "latents": f"{side}x{side}x{shape.channels}"}
        if (models / "judge.pt").exists():  # how much of each attribute survives the round trip
            # deferred: needs torch (server extra); ppo-demo builds its parser from this module
            from ppo_demo.training.evaluate import vae_ceiling

            result["judge_accuracy_on_round_trip"] = vae_ceiling(vae, models / "judge.pt", 16 if smoke else 200)
        return result
    if stage == "clip":
        # deferred: needs torch (server extra); ppo-demo builds its parser from this module
        from ppo_demo.training.clip import CONFIG, train_clip

        train_clip(data, CLIPTokenizer.from_pretrained(out / "tokenizer"), out, cfg(CONFIG), device)
        return {}
    if stage == "unet":
        from diffusers import AutoencoderKL
        from transformers import CLIPModel

        # deferred: needs torch (server extra); ppo-demo builds its parser from this module
        from ppo_demo.training.pipeline import text_encoder_of

        # deferred: needs torch (server extra); ppo-demo builds its parser from this module
        from ppo_demo.training.unet import CONFIG, train_unet

        vae = AutoencoderKL.from_pretrained(out / "vae")
        clip = CLIPModel.from_pretrained(out / "clip")
        tokenizer = CLIPTokenizer.from_pretrained(out / "clip")
        unet = train_unet(data, vae, text_encoder_of(clip), tokenizer, out, cfg(CONFIG), device)
        unet.save_pretrained(out / "unet")
        return {"parameters": sum(p.numel() for p in unet.parameters())}
    if stage == "judge":
        from diffusers import AutoencoderKL

        # deferred: needs torch (server extra); ppo-demo builds its parser from this module
        from ppo_demo.training.judge import CONFIG, train_judge

        vae = AutoencoderKL.from_pretrained(out / "vae") if (out / "vae").exists() else None
        train_judge(data, out, cfg(CONFIG), device, vae)
        return {"trained_on_vae_round_trips": vae is not None}
    if stage == "pipeline":
        # deferred: needs torch (server extra); ppo-demo builds its parser from this module
        from ppo_demo.training.pipeline import assemble

        assemble(out, models)
        files = [p for p in models.rglob("*") if p.is_file()]
        return {"megabytes": round(sum(p.stat().st_size for p in files) / 2**20, 2)}
    if stage == "evaluate":
        # deferred: needs torch (server extra); ppo-demo builds its parser from this module
        from ppo_demo.training.evaluate import evaluate

        report = evaluate(models, count=8 if smoke else 200, steps=2 if smoke else 20)
        return report
    raise ValueError(stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stages", nargs="+", choices=(*STAGES, "all"))
    parser.add_argument("--out", default="build/demo_training", help="checkpoints and full-precision models")
    parser.add_argument("--models", default=str(models_dir()), help="where the shipped models go")
    parser.add_argument("--images", type=int, default=40000, help="training scenes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch decides)")
    parser.add_argument("--smoke", action="store_true", help="a few steps per stage on 64 images")
    parser.add_argument("--device", default="cpu", help="where the training stages run: cpu, cuda, cuda:1 ...")
    parser.add_argument("--latent-channels", type=int, default=8, help="VAE latent depth (shipped: 8)")
    parser.add_argument("--latent-downsample", type=int, default=8, choices=(2, 4, 8),
                        help="VAE latents are this many times smaller per side than the 64x64 scenes (shipped: 8)")
    parser.add_argument("-v", "--verbose", action="count", default=1)


def train(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out, models = Path(args.out), Path(args.models)
    stages = STAGES if "all" in args.stages else [s for s in STAGES if s in args.stages]
    data = SceneSet(64 if args.smoke else args.images, cache=out / "data")
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    for stage in stages:
        started = time.perf_counter()
        result = run_stage(stage, out, models, data, args.smoke, args.device,
                           (args.latent_channels, args.latent_downsample))
        report[stage] = {**result, "wall_seconds": round(time.perf_counter() - started, 1),
                         "threads": torch.get_num_threads(), "device": args.device}
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        if stage in ("pipeline", "evaluate"):
            (models / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ppo-demo train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
