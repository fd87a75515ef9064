"""What starting the app needs before its web server runs: the person's own images in the pool, a
socket that holds the address before the link is printed, and where runs go. No web framework here."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from platformdirs import user_data_dir

from ppo_client.errors import ConfigurationError, DataError, InvalidRequestError
from ppo_client.store import PoolEntry, UserStore

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_PORT = 8765


def import_folder(store_path: str | Path, folder: Path) -> tuple[int, int]:
    """The person's own images into the pool (origin ``folder``); unreadable files are skipped with a
    warning. Returns (kept, skipped)."""
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


def default_runs_dir(store_file: Path | None) -> Path:
    """Beside an SQLite store's file; for a database server, in this machine's user data directory."""
    if store_file is not None:
        return store_file.parent / f"{store_file.stem}_runs"
    return Path(user_data_dir("ppo")) / "app_runs"
