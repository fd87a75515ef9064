"""What every Triton client of the SDK shares: URLs, protocol modules, tensors, error mapping."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Sequence

import numpy as np

from ppo_client import contract
from ppo_client.errors import (
    DependencyError,
    InferenceError,
    ModelNotFoundError,
    ServerError,
    ServerUnavailableError,
)

DEFAULT_URL = "localhost:8001"
URL_ENV = "PPO_TRITON_URL"


@dataclass(frozen=True)
class Endpoint:
    """``host:port`` or ``grpc://host:port`` mean gRPC; ``http://host:port`` means HTTP."""

    protocol: str
    address: str
    ssl: bool = False

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        url = url.strip().rstrip("/")
        for prefix, protocol, ssl in (("grpc://", "grpc", False), ("http://", "http", False), ("https://", "http", True)):
            if url.startswith(prefix):
                return cls(protocol, url[len(prefix) :], ssl)
        if "://" in url:
            raise ValueError(f"unsupported URL scheme in {url!r}; use host:port, grpc://, http:// or https://")
        return cls("grpc", url)

    def __str__(self) -> str:
        return f"{'https' if self.ssl else self.protocol}://{self.address}"


def protocol_module(protocol: str, *, aio: bool = False) -> ModuleType:
    """``tritonclient.grpc`` / ``tritonclient.http`` (or their ``.aio``), with an install hint."""
    name = f"tritonclient.{protocol}" + (".aio" if aio else "")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DependencyError(
            f"{name} is not importable ({exc}); install it with: pip install 'tritonclient[{protocol}]'"
        ) from exc


def txt2img_inputs(module: ModuleType, rows: Sequence) -> list:
    """Batch rows (``GenerationRequest``s) as the ``txt2img`` contract's input tensors."""
    values = {
        "PROMPT": [r.prompt.encode("utf-8") for r in rows],
        "NEGATIVE_PROMPT": [r.negative_prompt.encode("utf-8") for r in rows],
        "SEED": [r.seed for r in rows],
        "STEPS": [r.steps for r in rows],
        "GUIDANCE_SCALE": [r.guidance_scale for r in rows],
        "HEIGHT": [r.height for r in rows],
        "WIDTH": [r.width for r in rows],
        "SCHEDULER": [r.scheduler.encode("utf-8") for r in rows],
    }
    inputs = []
    for spec in contract.TXT2IMG.inputs:
        array = np.array(values[spec.name], dtype=spec.dtype.numpy).reshape(len(rows), 1)
        tensor = module.InferInput(spec.name, list(array.shape), spec.dtype.wire)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def requested_outputs(module: ModuleType, model: contract.ModelContract) -> list:
    return [module.InferRequestedOutput(spec.name) for spec in model.outputs]


def map_error(exc: Exception, *, model: str, url: str) -> ServerError:
    """One place that turns tritonclient's exceptions into the SDK's."""
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    message = message or type(exc).__name__
    status = str(exc.status()) if hasattr(exc, "status") and callable(exc.status) else ""
    lowered = message.lower()
    if "unknown model" in lowered or ("not found" in lowered and "model" in lowered):
        return ModelNotFoundError(f"the server does not serve {model!r}: {message}", url=url)
    if (
        "UNAVAILABLE" in status
        or "DEADLINE_EXCEEDED" in status
        or isinstance(exc, (ConnectionError, OSError))
        or "failed to connect" in lowered
        or "connection refused" in lowered
    ):
        return ServerUnavailableError(f"cannot reach the Triton server: {message}", url=url)
    return InferenceError(message, model=model, url=url)
