"""A served model's statistics as tests read them. Triton counts an execution once it returns, which
can be after its responses reached the client (seen on a loaded machine), so a test that counts what
it just sent waits for the counts to settle."""

from __future__ import annotations

import time

import httpx


def model_stats(server, model: str) -> dict:
    return httpx.get(f"{server.http_url}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]


def successes(server, model: str = "txt2img") -> int:
    """Requests the model answered without an error."""
    return int(model_stats(server, model)["inference_stats"]["success"]["count"])


def settled(read, before: list[int], expected: int, timeout_s: float = 30.0) -> list[int]:
    """``read()`` (one count per server) minus ``before``, once the differences add up to at least
    ``expected`` or ``timeout_s`` has passed; the caller asserts on what it gets."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = [now - then for now, then in zip(read(), before, strict=True)]
        if sum(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)
