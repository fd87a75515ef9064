"""``make demo``: export the demo pipeline, serve it with the embedded Triton server, generate a few
images through the SDK (all requests in flight at once, so the server batches them), stop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

from ppo_client.console import console, run_cli, setup_logging
from ppo_client.generation import GenerationRequest
from ppo_client.txt2img import AsyncTxt2ImgClient
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.cli import default_pipeline_dir

PROMPTS = (
    "a large red circle on a blue background",
    "a yellow square next to a small green triangle against a black backdrop",
    "a white cross on a purple striped background, bright",
    "an outlined orange triangle over a green checkered backdrop",
    "a big blue disc on a yellow dotted background, warm, grainy",
    "a black square in the top left on a white background",
)


async def _generate_all(url: str, requests: list[GenerationRequest]):
    async with AsyncTxt2ImgClient(url) as client:
        return await asyncio.gather(*(client.generate(r) for r in requests))


def _unet_batches(http_url: str) -> tuple[int, int]:
    stats = httpx.get(f"{http_url}/v2/models/unet/stats", timeout=10).json()["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"]), int(stats["execution_count"])


def _demo(args: argparse.Namespace) -> int:
    from ppo_server.export.presets import build_tiny_clip, build_tiny_pipeline, demo_clip_dir, demo_pipeline_dir
    from ppo_server.export.repository import export_pipeline

    repository, out = Path(args.repository), Path(args.out)
    with console.status(f"exporting the {args.preset} pipeline to ONNX ..."):
        if args.preset == "demo":
            folder, clip = demo_pipeline_dir(), demo_clip_dir()
        else:
            folder = build_tiny_pipeline(default_pipeline_dir("tiny"))
            clip = build_tiny_clip(folder / "clip")
        export_pipeline(str(folder), repository, clip=str(clip))
    console.print(f"exported the {args.preset} pipeline to {repository}")

    requests = [
        GenerationRequest(prompt=p, seed=i, steps=args.steps, guidance_scale=7.5)
        for i, p in enumerate(PROMPTS[: args.images])
    ]
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        console.print(f"Triton is serving on {server.grpc_url} (gRPC) and {server.http_url} (log: {server.log_file})")
        started = time.perf_counter()
        with console.status(f"generating {len(requests)} images, all requests in flight at once ..."):
            images = asyncio.run(_generate_all(server.grpc_url, requests))
        seconds = time.perf_counter() - started
        unet_requests, unet_batches = _unet_batches(server.http_url)
    out.mkdir(parents=True, exist_ok=True)
    for i, (request, image) in enumerate(zip(requests, images)):
        path = out / f"image_{i}.png"
        image.save(path)
        console.print(f"  {path}  [dim]{request.prompt!r}, seed {request.seed}[/]")
    console.print(
        f"{len(images)} images in {seconds:.2f} s; the UNet ran {unet_batches} batches for {unet_requests} calls."
    )
    if args.preset == "tiny":
        console.print("The tiny pipeline has random weights: expect noise, not pictures.")
    print(out.resolve())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ppo_server.demo", description=__doc__)
    parser.add_argument("--repository", default="build/demo_repository")
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--preset", choices=("demo", "tiny"), default="demo")
    parser.add_argument("--images", type=int, default=4, choices=range(1, len(PROMPTS) + 1))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: _demo(args))


if __name__ == "__main__":
    sys.exit(main())
