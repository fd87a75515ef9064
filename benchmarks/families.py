"""The checkpoint-family support matrix: for each tiny pipeline shaped like a family people run
(``presets.TINY_FAMILIES``), export it, serve it, and compare every scheduler it offers with diffusers
in-process at the same seed; also export and first-request times.

    python benchmarks/families.py                         # python target, every family and scheduler
    python benchmarks/families.py --targets python,torch-cuda --families sdxl

Results: ``benchmarks/results/<device>/families.{json,md}`` (max pixel difference out of 255 per cell).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from serving import RESULTS, device_name

from ppo_client import contract
from ppo_client.console import sigterm_as_exit
from ppo_client.errors import RequestRejectedError
from ppo_client.generation import GenerationRequest

SETTINGS = {  # steps, guidance: what each family is run with
    "sd15-dpm-karras": (6, 6.0), "sd15-euler-a": (6, 6.0), "sd2-v": (6, 6.0), "sdxl": (6, 6.0), "sdxl-turbo": (2, 0.0),
}


def in_process(folder: Path):
    from diffusers import DiffusionPipeline

    from ppo_server.reference import render

    pipe = DiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return lambda request: render(pipe, request)


def measure(family: str, target: str, work: Path) -> dict:
    from ppo_client.txt2img import Txt2ImgClient
    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
    from ppo_server.export.builders import build_tiny_family
    from ppo_server.export.options import ExportOptions, Target
    from ppo_server.export.repository import export_pipeline

    folder = build_tiny_family(work / family / "pipeline", family)
    started = time.perf_counter()
    result = export_pipeline(str(folder), work / family / target, ExportOptions(target=Target(target)))
    export_s = time.perf_counter() - started
    steps, guidance = SETTINGS[family]
    render = in_process(folder)
    row = {"family": family, "target": target, "pipeline_family": result.family, "export_s": export_s,
           "offered": result.schedulers, "parity": {}}
    started = time.perf_counter()
    with EmbeddedTritonServer(ServerConfig(work / family / target, log_file=work / family / f"{target}.log")) as server:
        row["server_start_s"] = time.perf_counter() - started
        with Txt2ImgClient(server.grpc_url) as client:
            for i, name in enumerate(("", *result.schedulers)):
                request = GenerationRequest("a lighthouse at dusk", seed=7, steps=steps, guidance_scale=guidance,
                                            height=64, width=96, negative_prompt="fog" if guidance > 1 else "", scheduler=name)
                started = time.perf_counter()
                try:
                    served = np.asarray(client.generate(request))
                except RequestRejectedError:  # e.g. PNDM below its minimum steps: refused per request
                    row["parity"][name or "own"] = f"refused at {steps} steps"
                    continue
                if i == 0:
                    row["first_request_s"] = time.perf_counter() - started
                row["parity"][name or "own"] = int(np.abs(served.astype(int) - render(request).astype(int)).max())
    print(f"{family} ({target}): export {export_s:.1f} s, first request {row['first_request_s']:.2f} s, "
          f"parity {row['parity']}", flush=True)
    return row


def markdown(rows: list[dict]) -> str:
    names = ["own", *contract.SCHEDULERS]
    lines = ["| family | target | export s | first request s | " + " | ".join(names) + " |",
             "|---|---|---:|---:|" + "---:|" * len(names)]
    for r in rows:
        cells = [str(r["parity"][n]) if n in r["parity"] else "not offered" for n in names]
        lines.append(f"| {r['family']} | {r['target']} | {r['export_s']:.1f} | {r['first_request_s']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from ppo_server.export.builders import TINY_FAMILIES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(TINY_FAMILIES))
    parser.add_argument("--targets", default="python", help="python and/or torch-cuda (fp32 on a CPU)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/<device>")
    args = parser.parse_args()
    out = Path(args.out or RESULTS / device_name())
    rows = []
    with tempfile.TemporaryDirectory(prefix="ppo-families-") as work:
        for family in args.families.split(","):
            for target in args.targets.split(","):
                rows.append(measure(family, target, Path(work)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "families.json").write_text(json.dumps({"settings": SETTINGS, "rows": rows}, indent=2) + "\n")
    (out / "families.md").write_text(markdown(rows))
    print(markdown(rows), end="")


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
