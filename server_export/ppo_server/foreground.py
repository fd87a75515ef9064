"""Run a started-and-checked service (the embedded Triton server, nginx in front of replicas) in the
foreground of a command: its URLs on stdout, the rest on stderr, until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from typing import Callable, Protocol

from ppo_client.console import console, status


class Service(Protocol):
    @property
    def grpc_url(self) -> str: ...

    @property
    def http_url(self) -> str: ...

    def start(self) -> object: ...

    def check(self) -> None: ...

    def stop(self) -> None: ...


def serve_until_stopped(service: Service, *, starting: str, ready: Callable[[], str]) -> int:
    """Start ``service``, print its two URLs (the command's result) and ``ready()`` (what is known once
    it runs), then check it every second until a signal, and stop it (also when it fails its check:
    the error reaches the CLI boundary)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with status(starting):
        service.start()
    try:
        print(f"grpc: {service.grpc_url}", flush=True)
        print(f"http: {service.http_url}", flush=True)
        console.print(ready())
        while not stop.wait(1.0):
            service.check()
    finally:
        service.stop()
    return 0
