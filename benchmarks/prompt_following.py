"""How often do the demo pipeline's images show what the caption names, per sampler setting?

The evaluate stage reports PNDM at four guidance scales; this one takes any scheduler, step count
and guidance (``SCHEDULER:STEPS:GUIDANCE``) on the same 200 held-out captions and seeds, judged by
the same judge, and splits each figure by the main object's size: the VAE's 8x8 latents lose small
objects' shapes even on a round trip, so a UNet is measured best on the large ones.

``SCHEDULER:STEPS:GUIDANCE:STRENGTH`` starts from each caption's own rendered scene noised to that
strength (image-to-image, as SDEdit does) instead of from pure noise: up to which noise level the
UNet keeps what the scene shows tells where in the denoising it loses the caption.

``--grid PNG`` also writes, for the first setting, the first 32 captions' rendered scenes each
beside the image generated for it: what the figures count, to look at.

    python benchmarks/prompt_following.py [--models demo/ppo_demo/models] [--grid G.png] pndm:20:3 pndm:20:3:0.5 ...
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ppo_client.console import sigterm_as_exit
from ppo_demo import models_dir
from ppo_demo.scenes import SIZES, example
from ppo_demo.training.evaluate import HELD_OUT_FIRST, generate, load_pipeline
from ppo_demo.training.judge import hits, load_judge
from ppo_demo.training.vae import vae_round_trip
from ppo_server.backends.schedulers import scheduler_class


def judged(judge, images: np.ndarray, scenes) -> dict:
    """Agreement per attribute: overall, by the main object's size, and by whether the pixels show
    which object is the main one (when another is as large, no judge can tell, however well drawn)."""

    right = hits(judge, images, scenes)  # the judge reads each image once

    def share(chosen: list[int]) -> dict[str, float]:
        return {k: float(r[chosen].mean()) for k, r in right.items()}

    def split(key) -> dict:
        groups = {}
        for i, scene in enumerate(scenes):
            groups.setdefault(key(scene), []).append(i)
        return {name: {"count": len(chosen), **share(chosen)} for name, chosen in groups.items()}

    by_size = split(lambda scene: scene.main.size)
    return {**share(list(range(len(scenes)))),
            "by_main_size": {size: by_size[size] for size in SIZES if size in by_size},
            "by_main_visible": split(lambda scene: "visible" if scene.main_is_visible else "tied")}


@torch.no_grad()
def from_renders(pipe, rendered: np.ndarray, captions: list[str], seeds: list[int], steps: int, guidance: float,
                 strength: float, batch: int = 50) -> np.ndarray:
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image

    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    out = []
    for start in range(0, len(captions), batch):
        chunk = slice(start, start + batch)
        images = img2img(captions[chunk], image=[Image.fromarray(r) for r in rendered[chunk]], strength=strength,
                         num_inference_steps=steps, guidance_scale=guidance, output_type="np",
                         generator=[torch.Generator().manual_seed(s) for s in seeds[chunk]]).images
        out.append((images * 255).round().astype(np.uint8))
    return np.concatenate(out)


def write_grid(path: Path, rendered: np.ndarray, images: np.ndarray, pairs: int = 32, per_row: int = 8) -> None:
    """Each scene beside its generated image, ``per_row`` pairs a row."""
    from PIL import Image

    pairs = min(pairs, len(images)) // per_row * per_row
    tiles = [np.concatenate([scene, image], 1) for scene, image in zip(rendered[:pairs], images[:pairs], strict=True)]
    rows = [np.concatenate(tiles[start:start + per_row], 1) for start in range(0, pairs, per_row)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", metavar="SCHEDULER:STEPS:GUIDANCE")
    parser.add_argument("--models", type=Path, default=models_dir(), help="holds pipeline/ and judge.pt")
    parser.add_argument("--captions", type=int, default=200)
    parser.add_argument("--grid", type=Path, help="PNG of scenes beside the first setting's images")
    args = parser.parse_args()
    seeds = list(range(HELD_OUT_FIRST, HELD_OUT_FIRST + args.captions))
    examples = [example(s) for s in seeds]
    captions, scenes = [e[1] for e in examples], [e[2] for e in examples]
    judge = load_judge(args.models / "judge.pt").float()
    pipe = load_pipeline(args.models)
    exported = pipe.scheduler.config
    rendered = np.stack([e[0] for e in examples])
    results = {"rendered": judged(judge, rendered, scenes),
               "vae_round_trip": judged(judge, vae_round_trip(pipe.vae, rendered), scenes)}
    for setting in args.settings:
        name, steps, guidance, *strength = setting.split(":")
        pipe.scheduler = scheduler_class(name).from_config(exported)
        started = time.perf_counter()
        if strength:
            images = from_renders(pipe, rendered, captions, seeds, int(steps), float(guidance), float(strength[0]))
        else:
            images = generate(pipe, captions, seeds, steps=int(steps), guidance=float(guidance))
        results[setting] = {**judged(judge, images, scenes), "seconds": round(time.perf_counter() - started, 1)}
        if args.grid and setting == args.settings[0]:
            write_grid(args.grid, rendered, images)
    models = os.path.relpath(args.models)  # results are committed: no machine's absolute path in them
    print(json.dumps({"models": models, "captions": args.captions, "results": results}, indent=2))


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
