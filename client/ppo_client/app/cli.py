"""``ppo-client app``: start the web app and print its address with an access token (as Jupyter does)."""

from __future__ import annotations

import importlib.util
import logging
import secrets
from pathlib import Path

from ppo_client.console import console
from ppo_client.errors import DependencyError, InvalidRequestError

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_PORT = 8765


def import_folder(store_path: Path, folder: Path) -> tuple[int, int]:
    """The person's own images into the pool (origin ``folder``); unreadable files are skipped with a
    warning. Returns (kept, skipped)."""
    from ppo_client.errors import DataError
    from ppo_client.store import PoolEntry, UserStore

    if not folder.is_dir():
        raise InvalidRequestError("--images", f"{folder} is not a folder")
    kept = skipped = 0
    with UserStore(store_path) as store:
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                store.add_to_pool([PoolEntry(path.read_bytes(), "folder", path.name)])
                kept += 1
            except (DataError, OSError) as exc:
                logger.warning("skipped %s: %s", path, exc)
                skipped += 1
    return kept, skipped


def _app(args) -> int:
    missing = [m for m in ("starlette", "uvicorn", "jinja2") if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(f"the app needs {', '.join(missing)}: pip install 'ppo-t2i[app]'")
    import uvicorn

    from ppo_client.app import gallery
    from ppo_client.app.runs import RunManager
    from ppo_client.app.web import AppState, create_app
    from ppo_client.optimize.cli import chat_config
    from ppo_client.processes import free_port
    from ppo_client.scoring import ScoringClient
    from ppo_client.store import UserStore

    with UserStore(args.store) as store:  # checked here once; requests open it without the check
        store_path = store.path
    client = ScoringClient(args.url)
    served = client.pipeline()  # fails now, with the server named, if it cannot be reached
    if args.images:
        kept, skipped = import_folder(store_path, Path(args.images))
        console.print(f"{kept} images from {args.images} can be rated" + (f" ({skipped} unreadable, skipped)" if skipped else ""))
    runs_dir = Path(args.runs) if args.runs else store_path.parent / f"{store_path.stem}_runs"
    state = AppState(store_path, args.token or secrets.token_urlsafe(18), client,
                     RunManager(store_path, args.url, runs_dir, chat_config(args)))
    if not args.no_gallery:
        state.gallery = gallery.start(store_path, client, steps=args.gallery_steps, guidance=args.gallery_guidance)
    port = args.port or free_port(args.host)
    address = f"http://{args.host}:{port}/?token={state.token}"
    console.print(f"serving {served.family} images from {client.endpoint}; user store {store_path}; runs in {runs_dir}")
    console.print("open this link (it holds the access token); Ctrl-C stops the app:")
    print(address, flush=True)
    try:
        uvicorn.run(create_app(state), host=args.host, port=port, log_level="warning")
    finally:
        client.close()
    return 0


def add_app_command(commands, add_url, add_llm) -> None:
    app = commands.add_parser("app", help="a local web app: rate images, train your taste, optimize, compare blind")
    app.add_argument("--store", default=None, help="user store file (default: $PPO_STORE or the user data dir)")
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
    app.set_defaults(handler=_app)
