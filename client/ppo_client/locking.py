"""An advisory lock on a folder a process works in (an optimization run), so that a second process
is refused at once, with the holder's PID, instead of both writing the same files.

The lock is ``flock`` on ``FOLDER/.lock``: the kernel drops it when the holder exits, however it
exits (``kill -9`` included), so a stale lock never needs clearing by hand. The file itself stays.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Callable

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not a POSIX system: folders are not locked there
    fcntl = None

logger = logging.getLogger(__name__)
LOCK_FILE = ".lock"


class FolderLock:
    def __init__(self, folder: Path, *, error: Callable[[str], Exception], what: str = "folder") -> None:
        self.folder = Path(folder)
        self._error = error
        self._what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            logger.debug("no fcntl on this platform: %s is not locked", self.folder)
            return self
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise self._error(
                f"{self.folder} is in use: the {self._what} is being worked on by process {holder}; "
                "wait for it to finish or stop that process"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fcntl is not None:  # a lock is only taken where fcntl exists
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
