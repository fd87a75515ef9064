"""How often does a demo judge read main colour, background and main shape right, on scenes no
training or evaluation set holds, rendered and after a round trip through the demo VAE?

Generated images are decoded by that VAE, so the round-trip figure is the one that bounds how well
prompt-following can be measured. ``WEIGHTS=MODULE`` loads a judge written for another version of
the judge's code (e.g. ``git show REV:server_export/ppo_server/demo_training/judge.py > old.py``, the
path before the demo world had a package of its own), so two judges can be compared on the same scenes.

    python benchmarks/judge_accuracy.py demo/ppo_demo/models/judge.pt [old.pt=old.py ...] [--scenes 1000] [--first 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from ppo_client.console import sigterm_as_exit
from ppo_demo.preset import demo_pipeline_dir
from ppo_demo.scenes import example
from ppo_demo.training import judge as current
from ppo_demo.training.evaluate import HELD_OUT_FIRST
from ppo_demo.training.vae import vae_round_trip

FIRST = HELD_OUT_FIRST + 10_000
"""Beyond the 200-500 held-out scenes the evaluate stage uses, so these were never looked at."""


def judge_module(path: str | None):
    if path is None:
        return current
    spec = importlib.util.spec_from_file_location("judge_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("judges", nargs="+", metavar="WEIGHTS[=MODULE]",
                        help="judge weights (.pt), with the judge code they were written for (default: this checkout's)")
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--first", type=int, default=FIRST, help="first scene seed (0: the training set's)")
    args = parser.parse_args()
    examples = [example(seed) for seed in range(args.first, args.first + args.scenes)]
    renders, scenes = np.stack([e[0] for e in examples]), [e[2] for e in examples]
    vae = AutoencoderKL.from_pretrained(demo_pipeline_dir() / "vae")
    round_trips = vae_round_trip(vae, renders)
    results = {}
    for spec in args.judges:
        weights, _, code = spec.partition("=")
        module = judge_module(code or None)
        judge = module.Judge()
        judge.load_state_dict(torch.load(Path(weights)))
        judge = judge.float().eval()
        results[spec] = {
            "rendered": module.agreement(judge, renders, scenes),
            "vae_round_trip": module.agreement(judge, round_trips, scenes),
        }
    print(json.dumps({"scenes": args.scenes, "seeds_from": args.first, "judges": results}, indent=2))


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
