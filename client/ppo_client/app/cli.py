"""``ppo-client app``: start the web app and print its address with an access token (as Jupyter does)."""

from __future__ import annotations

import errno
import importlib.util
import logging
import secrets
import socket
from pathlib import Path

from ppo_client.console import console, results
from ppo_client.errors import ConfigurationError, DependencyError, InvalidRequestError
from ppo_client.store.cli import STORE_HELP

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


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one) and listening, so that the link is printed
    only for an address the app holds; a busy port is a ``ConfigurationError`` that says what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
        sock.close()
        if getattr(exc, "errno", None) == errno.EADDRINUSE:
            why = "the port is in use; pass another --port, or --port 0 for a free one"
        else:
            why = f"{str(getattr(exc, 'strerror', None) or exc).rstrip('.')}; check --host and --port"
        raise ConfigurationError(f"cannot listen on {host}:{port}: {why}") from None
    return sock


def _app(args) -> int:
    missing = [m for m in ("starlette", "uvicorn", "jinja2") if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(f"the app needs {', '.join(missing)}: pip install 'ppo-t2i[app]'")
    import uvicorn

    from ppo_client.app import gallery
    from ppo_client.app.runs import RunManager
    from ppo_client.app.web import AppState, create_app
    from ppo_client.optimize.cli import chat_config
    from ppo_client.scoring import ScoringClient
    from ppo_client.store import UserStore

    with UserStore(args.store) as store:  # checked here once; requests open it without the check
        store_path, shown, beside = store.address, store.path, store.location.path
    sock = listening_socket(args.host, args.port)  # a taken port fails here, before anything else starts
    client = ScoringClient(args.url)
    try:
        served = client.pipeline()  # fails now, with the server named, if it cannot be reached
        if args.images:
            kept, skipped = import_folder(store_path, Path(args.images))
            console.print(f"{kept} images from {args.images} can be rated" + (f" ({skipped} unreadable, skipped)" if skipped else ""))
        runs_dir = Path(args.runs) if args.runs else default_runs_dir(beside)
        state = AppState(store_path, args.token or secrets.token_urlsafe(18), client,
                         RunManager(store_path, args.url, runs_dir, chat_config(args)))
        if not args.no_gallery:
            state.gallery = gallery.start(store_path, client, steps=args.gallery_steps, guidance=args.gallery_guidance)
        port = sock.getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        console.print(f"serving {served.family} images from {client.endpoint}; user store {shown}; runs in {runs_dir}")
        console.print("open this link (it holds the access token); Ctrl-C stops the app:")
        results.print(f"http://{host}:{port}/?token={state.token}")  # the command's one result, on stdout
        server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning"))
        server.run(sockets=[sock])
    finally:
        client.close()
        sock.close()
    return 0


def default_runs_dir(store_file: Path | None) -> Path:
    """Beside an SQLite store's file; for a database server, in this machine's user data directory."""
    if store_file is not None:
        return store_file.parent / f"{store_file.stem}_runs"
    from platformdirs import user_data_dir

    return Path(user_data_dir("ppo")) / "app_runs"


def add_app_command(commands, add_url, add_llm) -> None:
    app = commands.add_parser("app", help="a local web app: rate images, train your taste, optimize, compare blind")
    app.add_argument("--store", default=None, help=STORE_HELP)
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
