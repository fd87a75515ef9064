"""What every Triton client of the SDK shares: URLs, protocol modules, tensors, error mapping, and
the policy for a server that refuses connections.

A gRPC channel that failed to connect waits out a reconnect backoff before it tries again (grpc's
default starts at 1 s and grows to 2 min), and every call made meanwhile fails at once, though the
server may be back already: the first call after a server restart used to fail that way. So the SDK's
channels back off briefly (``RECONNECT_BACKOFF_MS`` up to ``MAX_RECONNECT_BACKOFF_MS``), keep their
connections to themselves (a fresh client does not inherit another's backoff), and a call that
failed without reaching the server is tried again for up to ``connect_retry_s`` (``CONNECT_RETRY_S``)
before the server is reported unreachable.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import numpy as np

from ppo_client import contract
from ppo_client.contract import TensorSpec
from ppo_client.errors import (
    ConfigurationError,
    DependencyError,
    InferenceError,
    ModelNotFoundError,
    RequestRejectedError,
    ServerError,
    ServerUnavailableError,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)

DEFAULT_URL = "localhost:8001"
DEFAULT_TIMEOUT_S = 600.0
"""Seconds a request may take (an image at many steps on a CPU takes minutes)."""
URL_ENV = "PPO_TRITON_URL"
RECONNECT_BACKOFF_MS = 100
"""A gRPC channel's first wait before it reconnects to a server it lost (grpc's default: 1000)."""
MAX_RECONNECT_BACKOFF_MS = 1000
"""... and its longest (grpc's default: 120000)."""
CONNECT_RETRY_S = 2.0
"""How long a call that could not reach the server is tried again: enough for a channel's backoff to
let it reach a server that is back; an unreachable server is reported after it."""
RETRY_DELAY_S = 0.05
RETRY_DELAY_CAP_S = 0.5


@dataclass(frozen=True)
class Endpoint:
    """``host:port`` or ``grpc://host:port`` mean gRPC; ``http://host:port`` means HTTP."""

    protocol: str
    address: str
    ssl: bool = False

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        url = url.strip().rstrip("/")
        protocol, address, ssl = "grpc", url, False
        for prefix, scheme, secure in (("grpc://", "grpc", False), ("http://", "http", False), ("https://", "http", True)):
            if url.startswith(prefix):
                protocol, address, ssl = scheme, url[len(prefix) :], secure
                break
        else:
            if "://" in url:
                raise ConfigurationError(f"unsupported URL scheme in {url!r}; use host:port, grpc://, http:// or https://")
        host, _, port = address.rpartition(":")
        if not address or "/" in address or (protocol == "grpc" and not (host and port.isdigit())):
            raise ConfigurationError(f"the Triton URL {url!r} is not host:port (gRPC) or http://host:port")
        return cls(protocol, address, ssl)

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


def server_errors() -> tuple[type[BaseException], ...]:
    """What tritonclient's calls raise when the server or the network fails (its own exception, and
    socket, asyncio and aiohttp errors), so the SDK catches those and nothing else."""
    from tritonclient.utils import InferenceServerException

    errors: list[type[BaseException]] = [InferenceServerException, OSError, asyncio.TimeoutError]
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    return tuple(errors)


def grpc_channel_args() -> list[tuple[str, int]]:
    """tritonclient's own channel arguments (message sizes, keepalive), with a short reconnect
    backoff and a subchannel pool of the channel's own."""
    from tritonclient.grpc import KeepAliveOptions

    keepalive = KeepAliveOptions()
    largest = 2**31 - 1  # tritonclient's MAX_GRPC_MESSAGE_SIZE: images and batches are large
    return [
        ("grpc.max_send_message_length", largest),
        ("grpc.max_receive_message_length", largest),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ("grpc.use_local_subchannel_pool", 1),
    ]


def should_retry(exc: BaseException) -> bool:
    """Whether a failed call never reached the server (so sending it again cannot run it twice): no
    connection could be made, or the channel is still waiting out its reconnect backoff."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    status = str(exc.status() or "") if hasattr(exc, "status") and callable(exc.status) else ""
    lowered = (message or "").lower()
    refused = "failed to connect" in lowered or "connection refused" in lowered
    return refused and (not status or "UNAVAILABLE" in status)


def retry_delay_s(attempt: int) -> float:
    """Capped exponential backoff with jitter before the next try (``attempt`` counts from 0)."""
    return min(RETRY_DELAY_CAP_S, RETRY_DELAY_S * 2**attempt) * random.uniform(0.5, 1.0)


def resolve_url(url: str | None) -> Endpoint:
    return resolve_urls(url)[0]


def resolve_urls(url: str | Sequence[str] | None) -> list[Endpoint]:
    """One or several servers: a list, or a comma-separated string (``$PPO_TRITON_URL`` likewise)."""
    if url is None or url == "":
        url = os.environ.get(URL_ENV) or DEFAULT_URL
    parts = [u for u in (url.split(",") if isinstance(url, str) else url) if u.strip()]
    endpoints = [Endpoint.parse(u) for u in parts]
    if not endpoints:
        raise ConfigurationError("no Triton server URL given")
    if len({e.protocol for e in endpoints}) > 1:
        raise ConfigurationError("all Triton servers of one client must use the same protocol (all gRPC or all HTTP)")
    return endpoints


class ClientBase:
    """The connections every SDK client shares (sync or asyncio); subclasses add the calls.

    With several servers (``"host1:8001,host2:8001"``) every inference goes to the server with the
    fewest requests outstanding from this client; model configurations are read from the first.
    """

    _aio = False

    def __init__(self, url: str | Sequence[str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 connect_retry_s: float = CONNECT_RETRY_S) -> None:
        self.endpoints = resolve_urls(url)
        self.endpoint = self.endpoints[0]
        self.timeout_s = timeout_s
        self.connect_retry_s = connect_retry_s
        self._module = protocol_module(self.endpoint.protocol, aio=self._aio)
        self._server_errors = server_errors()
        self._grpc = self.endpoint.protocol == "grpc"
        timeouts: dict[str, Any]
        if self._grpc:
            timeouts = {"channel_args": grpc_channel_args()}
        elif self._aio:
            timeouts = {"conn_timeout": timeout_s}
        else:
            timeouts = {"network_timeout": timeout_s, "connection_timeout": timeout_s}
        self._clients = [
            self._module.InferenceServerClient(e.address, ssl=e.ssl, **timeouts) for e in self.endpoints
        ]
        self._client = self._clients[0]
        self._outstanding = [0] * len(self._clients)
        self.requests_sent = [0] * len(self._clients)
        self._turn = 0
        self._lock = threading.Lock()

    def _acquire(self) -> int:
        with self._lock:
            low = min(self._outstanding)
            candidates = [i for i, n in enumerate(self._outstanding) if n == low]
            index = candidates[self._turn % len(candidates)]  # ties rotate
            self._turn += 1
            self._outstanding[index] += 1
            self.requests_sent[index] += 1
            return index

    def _release(self, index: int) -> None:
        with self._lock:
            self._outstanding[index] -= 1

    def _retrying(self, call: Callable[[], T], index: int = 0) -> T:
        """``call()``, tried again while it fails without reaching the server, up to ``connect_retry_s``."""
        deadline = time.monotonic() + self.connect_retry_s
        attempt = 0
        while True:
            try:
                return call()
            except self._server_errors as exc:
                delay = retry_delay_s(attempt)
                if not should_retry(exc) or time.monotonic() + delay > deadline:
                    raise
                logger.debug("%s not reached (%s); trying again in %.2f s", self.endpoints[index], exc, delay)
            time.sleep(delay)
            attempt += 1

    async def _retrying_async(self, call: Callable[[], Awaitable[T]], index: int = 0) -> T:
        deadline = time.monotonic() + self.connect_retry_s
        attempt = 0
        while True:
            try:
                return await call()
            except self._server_errors as exc:
                delay = retry_delay_s(attempt)
                if not should_retry(exc) or time.monotonic() + delay > deadline:
                    raise
                logger.debug("%s not reached (%s); trying again in %.2f s", self.endpoints[index], exc, delay)
            await asyncio.sleep(delay)
            attempt += 1

    def _infer(self, **kwargs):
        """One inference on the least busy server (a coroutine for the asyncio clients)."""
        index = self._acquire()
        if self._aio:
            return self._infer_async(index, kwargs)
        try:
            return self._retrying(lambda: self._clients[index].infer(**kwargs), index)
        except self._server_errors as exc:
            raise self._error(exc, kwargs["model_name"], index) from exc
        finally:
            self._release(index)

    async def _infer_async(self, index: int, kwargs: dict):
        try:
            return await self._retrying_async(lambda: self._clients[index].infer(**kwargs), index)
        except self._server_errors as exc:
            raise self._error(exc, kwargs["model_name"], index) from exc
        finally:
            self._release(index)

    def _config_kwargs(self) -> dict:
        return {"as_json": True} if self._grpc else {}

    def served_models(self) -> list[tuple[str, str]]:
        """(name, state) of every model in the first server's repository (sync clients only)."""
        try:
            index = self._retrying(lambda: self._client.get_model_repository_index(**self._config_kwargs()))
        except self._server_errors as exc:
            raise self._error(exc, "repository index") from exc
        entries = index.get("models", []) if isinstance(index, dict) else index
        return sorted((e.get("name", "?"), e.get("state", "")) for e in entries)

    def _model_config(self, model: str):
        """A served model's configuration from the first server (a coroutine for the asyncio clients)."""
        if self._aio:
            return self._model_config_async(model)
        try:
            return self._retrying(lambda: self._client.get_model_config(model, **self._config_kwargs()))
        except self._server_errors as exc:
            raise self._error(exc, model) from exc

    async def _model_config_async(self, model: str):
        try:
            return await self._retrying_async(lambda: self._client.get_model_config(model, **self._config_kwargs()))
        except self._server_errors as exc:
            raise self._error(exc, model) from exc

    def _infer_kwargs(self, model: contract.ModelContract, inputs: list) -> dict:
        kwargs: dict[str, Any] = {"model_name": model.name, "inputs": inputs, "outputs": requested_outputs(self._module, model)}
        if self._grpc:
            kwargs["client_timeout"] = self.timeout_s
        return kwargs

    def _tensor(self, spec: TensorSpec, array: np.ndarray):
        return input_tensor(self._module, spec, array)

    def _error(self, exc: BaseException, model: str, index: int = 0) -> ServerError:
        return map_error(exc, model=model, url=str(self.endpoints[index]))


def model_parameters(config: dict) -> dict[str, str]:
    """A model config's ``parameters`` as plain strings (gRPC wraps the config, HTTP does not)."""
    config = config.get("config", config)
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def served_parameters(parse: Callable[[dict[str, str]], T], config: dict, *, model: str, url: str) -> T:
    """A model config's parameters read through one of the contract's ``from_parameters``; a missing
    or malformed one is a ``ServerError`` that names the model and says to re-export."""
    try:
        return parse(model_parameters(config))
    except ValueError as exc:
        raise ServerError(f"{model}: {exc}", url=url) from None


def txt2img_inputs(module: ModuleType, rows: Sequence) -> list:
    """Batch rows (``GenerationRequest``s) as the ``txt2img`` contract's input tensors."""
    model = contract.TXT2IMG
    values = {
        model.PROMPT: [r.prompt.encode("utf-8") for r in rows],
        model.NEGATIVE_PROMPT: [r.negative_prompt.encode("utf-8") for r in rows],
        model.SEED: [r.seed for r in rows],
        model.STEPS: [r.steps for r in rows],
        model.GUIDANCE_SCALE: [r.guidance_scale for r in rows],
        model.HEIGHT: [r.height for r in rows],
        model.WIDTH: [r.width for r in rows],
        model.SCHEDULER: [r.scheduler.encode("utf-8") for r in rows],
        model.GUIDANCE_RESCALE: [r.guidance_rescale for r in rows],
    }
    inputs = []
    for spec in model.inputs:
        inputs.append(input_tensor(module, spec, np.array(values[spec], dtype=spec.dtype.numpy).reshape(len(rows), 1)))
    return inputs


def input_tensor(module: ModuleType, spec: TensorSpec, array: np.ndarray):
    """``array`` as the protocol module's input tensor ``spec`` (converted to its dtype)."""
    array = np.ascontiguousarray(array, dtype=spec.dtype.numpy)
    tensor = module.InferInput(spec.name, list(array.shape), spec.dtype.wire)
    tensor.set_data_from_numpy(array)
    return tensor


def requested_outputs(module: ModuleType, model: contract.ModelContract) -> list:
    return [module.InferRequestedOutput(spec.name) for spec in model.outputs]


def map_error(exc: BaseException, *, model: str, url: str) -> ServerError:
    """One place that turns tritonclient's exceptions into the SDK's."""
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    message = message or type(exc).__name__
    status = str(exc.status() or "") if hasattr(exc, "status") and callable(exc.status) else ""
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
    if status in ("StatusCode.INVALID_ARGUMENT", "400"):
        return RequestRejectedError(message, model=model, url=url, status=status)
    return InferenceError(message, model=model, url=url, status=status)
