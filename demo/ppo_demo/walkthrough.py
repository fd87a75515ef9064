"""``make demo``: the whole job on the demo world, offline, end to end.

1. export the demo pipeline and the demo CLIP (``ppo-export --preset demo``);
2. serve them with the embedded Triton server;
3. make a small demo rating set (virtual users rating demo images; cached in ``build/demo``);
4. import one virtual user's ratings into a user store, link the user to that virtual user (their
   true taste, which the run then records beside the learned one), train their preference model
   (``bayes``);
5. optimize a prompt for that user with the embedded local LLM (``ppo-client optimize``);
6. print the path of the run's HTML report.

Every step is the command a user would run; ``--preset tiny`` only generates a few images from a
random-weight pipeline (no taste to learn there).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from ppo_client.cli import main as client_main
from ppo_client.console import console, status
from ppo_client.generation import GenerationRequest
from ppo_client.store import UserStore
from ppo_client.txt2img import AsyncTxt2ImgClient
from ppo_demo.errors import DemoStepError
from ppo_demo.preset import demo_clip_dir, demo_pipeline_dir
from ppo_demo.ratings import RatingSetConfig, build_with_progress
from ppo_demo.truth import link_from_sac
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.builders import build_tiny_clip, build_tiny_pipeline
from ppo_server.export.cli import default_pipeline_dir

DEMO_USER = "demo-user"
DEMO_SID = 1
DEMO_PROMPT = "a red circle on a blue background"


def _cli(server, *argv: str) -> None:
    code = client_main(list(argv))
    if code:
        server.check()  # a step that failed because the server died says so, with the server's own log
        raise DemoStepError(f"`ppo-client {' '.join(argv[:2])}` failed (exit code {code}); see the message above")


def _export(preset: str, repository: Path) -> None:
    # deferred: the exporter needs torch (server extra); ppo-demo builds its parser from this module
    from ppo_server.export.repository import export_pipeline

    with status(f"exporting the {preset} pipeline and CLIP to ONNX ..."):
        if preset == "demo":
            folder, clip = demo_pipeline_dir(), demo_clip_dir()
        else:
            folder = build_tiny_pipeline(default_pipeline_dir("tiny"))
            clip = build_tiny_clip(folder / "clip")
        export_pipeline(str(folder), repository, clip=str(clip))
    console.print(f"exported the {preset} models to {repository}")


def _tiny(url: str, out: Path) -> None:
    async def generate():
        async with AsyncTxt2ImgClient(url) as client:
            return await asyncio.gather(*(client.generate(GenerationRequest(DEMO_PROMPT, seed=i)) for i in range(4)))

    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(asyncio.run(generate())):
        image.save(out / f"image_{i}.png")
    console.print("The tiny pipeline has random weights: expect noise, not pictures.")
    print(out.resolve())


def run(args: argparse.Namespace) -> int:
    work, repository = Path(args.work), Path(args.repository)
    started = time.perf_counter()
    _export(args.preset, repository)
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        url = server.grpc_url
        console.print(f"Triton is serving on {url} (log: {server.log_file})")
        if args.preset == "tiny":
            _tiny(url, work / "tiny_images")
            return 0
        sac = work / "ratings" / "sac.sqlite"
        if not sac.exists():
            console.print(f"making a demo rating set ({args.users} virtual users, {args.images} images) in {sac.parent} ...")
            build_with_progress(sac.parent, RatingSetConfig(users=args.users, images=args.images), url=url)
        store = ["--store", str(work / "store.sqlite")]
        with UserStore(work / "store.sqlite") as user_store:
            fresh = not user_store.has_user(DEMO_USER)
        if fresh:
            _cli(server, "user", "create", DEMO_USER, *store)
            _cli(server, "user", "import", DEMO_USER, "--sac", str(sac), "--sid", str(DEMO_SID), "--images-root", str(sac.parent), *store)
            with UserStore(work / "store.sqlite") as user_store:  # their true taste: the run reports it
                link_from_sac(user_store, DEMO_USER, sac, DEMO_SID)
            _cli(server, "user", "train", DEMO_USER, "--method", "bayes", "--prior-sac", str(sac), *store, "--url", url)
        run = work / "runs" / time.strftime("%Y%m%d-%H%M%S")
        _cli(server, "optimize", "--user", DEMO_USER, "--prompt", args.prompt, "--iterations", str(args.iterations),
             "--n-prompts", "4", "--seeds", "2", "--run-dir", str(run), *store, "--url", url)
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s; open the report: {run / 'report.html'}")
    console.print(
        "to rate images, train and compare blind in the browser as the demo user, serve the models and start the app:\n"
        f"  ppo-serve --repository {repository} &\n  ppo-client app --store {work / 'store.sqlite'} --url localhost:8001"
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", default="build/demo_repository")
    parser.add_argument("--work", default="build/demo", help="rating set, user store and runs (reused between demos)")
    parser.add_argument("--preset", choices=("demo", "tiny"), default="demo")
    parser.add_argument("--prompt", default=DEMO_PROMPT)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--images", type=int, default=200)
