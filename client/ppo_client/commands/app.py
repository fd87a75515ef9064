"""``ppo-client app``: start the web app and print its address with an access token (as Jupyter does)."""

from __future__ import annotations

import argparse
import importlib.util
import secrets
from pathlib import Path

from ppo_client.app import gallery
from ppo_client.app.launch import DEFAULT_PORT, default_runs_dir, import_folder, listening_socket
from ppo_client.app.runs import RunManager
from ppo_client.commands.options import add_llm, add_store, add_url, chat_config
from ppo_client.console import console, results
from ppo_client.errors import DependencyError
from ppo_client.scoring import ScoringClient
from ppo_client.store import UserStore


def register(commands) -> None:
    app = commands.add_parser("app", help="a local web app: rate images, train your taste, optimize, compare blind")
    add_store(app)
    app.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    app.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (default %(default)s)")
    app.add_argument("--token", default=None, help="access token (default: a new random one, printed in the link)")
    app.add_argument("--images", default=None, help="a folder of your own images to rate as well")
    app.add_argument("--runs", default=None, help="folder for optimization runs (default: beside the store)")
    app.add_argument("--no-gallery", action="store_true", help="do not render the starter gallery")
    app.add_argument("--gallery-steps", type=int, default=20, help="denoising steps of the starter gallery's images")
    app.add_argument("--gallery-guidance", type=float, default=7.5, help="guidance of the starter gallery's images")
    add_llm(app)
    add_url(app)
    app.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    missing = [m for m in ("starlette", "uvicorn", "jinja2") if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(f"the app needs {', '.join(missing)}: pip install 'ppo-t2i[app]'")
    import uvicorn  # the `app` extra, checked just above

    # deferred: the web module needs the `app` extra (starlette, jinja2), checked just above
    from ppo_client.app.web import AppState, create_app

    with UserStore(args.store) as store:  # checked here once; requests open it without the check
        store_path, shown, beside = store.address, store.path, store.location.path
    sock = listening_socket(args.host, args.port)  # a taken port fails here, before anything else starts
    client = ScoringClient(args.url)
    runs = RunManager(store_path, args.url, Path(args.runs) if args.runs else default_runs_dir(beside), chat_config(args))
    try:
        served = client.pipeline()  # fails now, with the server named, if it cannot be reached
        if args.images:
            kept, skipped = import_folder(store_path, Path(args.images))
            console.print(f"{kept} images from {args.images} can be rated" + (f" ({skipped} unreadable, skipped)" if skipped else ""))
        state = AppState(store_path, args.token or secrets.token_urlsafe(18), client, runs)
        if not args.no_gallery:
            state.gallery = gallery.start(store_path, client, steps=args.gallery_steps, guidance=args.gallery_guidance)
        port = sock.getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        console.print(f"serving {served.family} images from {client.endpoint}; user store {shown}; runs in {runs.runs_dir}")
        console.print("open this link (it holds the access token); Ctrl-C stops the app:")
        results.print(f"http://{host}:{port}/?token={state.token}")  # the command's one result, on stdout
        server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning"))
        server.run(sockets=[sock])
    finally:
        if runs.active():
            console.print("stopping the runs in progress after their current iteration (they resume from their folders) ...")
        left = runs.stop()
        if left:
            console.print(f"runs still working when the app gave up waiting: {', '.join(left)}")
        client.close()
        sock.close()
    return 0
