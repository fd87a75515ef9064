"""An nginx configuration that puts one gRPC and one HTTP address in front of Triton replicas.

The configuration is built as data (``Block``s of directives) and written by one function that
quotes every argument, never pasted together from strings. What it sets, and why:

- gRPC: ``listen ... http2`` (gRPC is HTTP/2; nginx 1.22 takes ``http2`` on the listen) and
  ``grpc_pass grpc://<upstream>``; nginx opens HTTP/2 connections to the replicas and keeps some of
  them open (``keepalive``), so a request does not pay a new connection.
- HTTP: ``proxy_pass`` over HTTP/1.1 with kept-alive upstream connections; request and response
  bodies are streamed, not buffered to temporary files (images and batches are large tensors).
- Timeouts as long as the SDK's own (``DEFAULT_TIMEOUT_S``): an image at many steps on a CPU takes
  minutes, and nginx's default of 60 s between two reads would cut it off.
- ``client_max_body_size``: nginx refuses bodies over 1 MB by default; a batch of images is more.
- Every file nginx writes (pid, logs, temporary bodies) is relative to the prefix folder it runs
  in (``nginx -p PREFIX``), so it runs without root and without touching ``/var``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from ppo_client.triton import DEFAULT_TIMEOUT_S

CONFIG_NAME = "nginx.conf"
PID_NAME = "nginx.pid"
ERROR_LOG_NAME = "error.log"
ACCESS_LOG_NAME = "access.log"
GRPC_UPSTREAM = "triton_grpc"
HTTP_UPSTREAM = "triton_http"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
"""nginx's temporary-file folders, each put inside the prefix (the compiled-in ones are under /var)."""


class Method(enum.Enum):
    """How nginx picks a replica for each request."""

    LEAST_CONN = "least_conn"
    """The replica with the fewest active requests (what the SDK does with several URLs)."""
    ROUND_ROBIN = "round_robin"
    """In turn, whatever each is doing (nginx's default)."""


@dataclass(frozen=True)
class Replica:
    """One Triton server: its gRPC and HTTP addresses, ``host:port`` each."""

    grpc: str
    http: str

    def __post_init__(self) -> None:
        for address in (self.grpc, self.http):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or "/" in address:
                raise ValueError(f"a replica's address must be host:port, not {address!r}")


@dataclass(frozen=True)
class BalancerConfig:
    replicas: tuple[Replica, ...]
    grpc_port: int = 8001
    """Where clients send gRPC (Triton's usual port)."""
    http_port: int = 8000
    """Where clients send HTTP (Triton's usual port)."""
    host: str = "127.0.0.1"
    """Address nginx listens on (0.0.0.0 for all)."""
    method: Method = Method.LEAST_CONN
    request_timeout_s: float = DEFAULT_TIMEOUT_S
    """Longest wait between two reads or writes to a replica (and from a client)."""
    connect_timeout_s: float = 5.0
    max_body_mb: int = 1024
    """Largest request body accepted (0: no limit)."""
    keepalive_connections: int = 32
    """Idle connections to the replicas each nginx worker keeps open, per upstream."""
    worker_processes: int = 1
    access_log: bool = True
    """One line per request naming the replica that served it (``upstream=``) and the times."""

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError("a balancer needs at least one replica")
        if self.max_body_mb < 0 or self.worker_processes < 1 or self.keepalive_connections < 0:
            raise ValueError("max_body_mb, keepalive_connections must be >= 0 and worker_processes >= 1")


Directive = tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """``name args { body }``: a context such as ``http``, ``upstream x`` or ``location /``."""

    head: tuple[str, ...]
    body: tuple[Directive | Block, ...] = field(default_factory=tuple)


_BARE = re.compile(r"[A-Za-z0-9_./:$=\[\]*~^-]+")


def _argument(value: str) -> str:
    """An argument as nginx reads it: bare when safe, else in double quotes with escapes."""
    if _BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(items: tuple[Directive | Block, ...], depth: int = 0) -> str:
    """The text of a configuration: one directive per line, blocks indented by four spaces."""
    indent = "    " * depth
    lines = []
    for item in items:
        if isinstance(item, Block):
            lines.append(f"{indent}{' '.join(_argument(a) for a in item.head)} {{")
            lines.append(write(item.body, depth + 1))
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{' '.join(_argument(a) for a in item)};")
    return "\n".join(line for line in lines if line)


def _seconds(value: float) -> str:
    return f"{max(1, round(value))}s"


def _upstream(name: str, addresses: list[str], config: BalancerConfig) -> Block:
    body: list[Directive | Block] = []
    if config.method is Method.LEAST_CONN:
        body.append(("least_conn",))
    body += [("server", address) for address in addresses]
    if config.keepalive_connections:
        body.append(("keepalive", str(config.keepalive_connections)))
    return Block(("upstream", name), tuple(body))


def _grpc_server(config: BalancerConfig) -> Block:
    timeout = _seconds(config.request_timeout_s)
    return Block(("server",), (
        ("listen", f"{config.host}:{config.grpc_port}", "http2"),
        Block(("location", "/"), (
            ("grpc_pass", f"grpc://{GRPC_UPSTREAM}"),
            ("grpc_connect_timeout", _seconds(config.connect_timeout_s)),
            ("grpc_read_timeout", timeout),
            ("grpc_send_timeout", timeout),
            ("grpc_socket_keepalive", "on"),
        )),
    ))


def _http_server(config: BalancerConfig) -> Block:
    timeout = _seconds(config.request_timeout_s)
    return Block(("server",), (
        ("listen", f"{config.host}:{config.http_port}"),
        Block(("location", "/"), (
            ("proxy_pass", f"http://{HTTP_UPSTREAM}"),
            ("proxy_http_version", "1.1"),
            ("proxy_set_header", "Connection", ""),  # keep upstream connections open
            ("proxy_set_header", "Host", "$host"),
            ("proxy_request_buffering", "off"),
            ("proxy_buffering", "off"),
            ("proxy_connect_timeout", _seconds(config.connect_timeout_s)),
            ("proxy_read_timeout", timeout),
            ("proxy_send_timeout", timeout),
        )),
    ))


def nginx_config(config: BalancerConfig) -> tuple[Directive | Block, ...]:
    """The whole configuration as data; ``render`` writes it."""
    timeout = _seconds(config.request_timeout_s)
    http: list[Directive | Block] = [
        *((f"{name}_temp_path", f"{name}_temp") for name in TEMP_PATHS),
        ("client_max_body_size", f"{config.max_body_mb}m"),
        ("client_body_timeout", timeout),
        ("send_timeout", timeout),
        ("keepalive_timeout", timeout),
    ]
    if config.access_log:
        http += [
            ("log_format", "replicas",
             '$remote_addr [$time_local] "$request" $status upstream=$upstream_addr '
             "request_time=$request_time upstream_time=$upstream_response_time"),
            ("access_log", ACCESS_LOG_NAME, "replicas"),
        ]
    else:
        http.append(("access_log", "off"))
    http += [
        _upstream(GRPC_UPSTREAM, [r.grpc for r in config.replicas], config),
        _upstream(HTTP_UPSTREAM, [r.http for r in config.replicas], config),
        _grpc_server(config),
        _http_server(config),
    ]
    return (
        ("daemon", "off"),  # the caller (or a process manager) owns the process
        ("worker_processes", str(config.worker_processes)),
        ("pid", PID_NAME),
        ("error_log", ERROR_LOG_NAME, "warn"),
        Block(("events",), (("worker_connections", "1024"),)),
        Block(("http",), tuple(http)),
    )


def render(config: BalancerConfig) -> str:
    """``nginx.conf`` for ``nginx -p PREFIX -c nginx.conf``: relative paths land in PREFIX."""
    replicas = ", ".join(r.grpc for r in config.replicas)
    header = f"# nginx in front of {len(config.replicas)} Triton replicas (gRPC {replicas})\n"
    return header + write(nginx_config(config)) + "\n"
