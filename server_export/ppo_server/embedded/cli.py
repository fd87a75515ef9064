"""``ppo-serve``: run the embedded Triton server in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppo_client.console import run_cli, setup_logging
from ppo_server.embedded.server import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, EmbeddedTritonServer, ServerConfig
from ppo_server.foreground import serve_until_stopped


def _serve(args: argparse.Namespace) -> int:
    config = ServerConfig(
        repository=Path(args.repository),
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        host=args.host,
        log_file=Path(args.log_file) if args.log_file else None,
        startup_timeout_s=args.startup_timeout,
    )
    server = EmbeddedTritonServer(config)
    return serve_until_stopped(server, starting=f"starting Triton on {args.repository} (log: {server.log_file}) ...",
                               ready=lambda: f"Triton is ready (log: {server.log_file}); Ctrl-C stops it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppo-serve", description=__doc__)
    default = ServerConfig(repository=Path("model_repository"))  # the defaults live in one place: the config
    parser.add_argument("--repository", default=str(default.repository), help="model repository (default: %(default)s)")
    parser.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT,
                        help="default %(default)s (Triton's usual port); 0 picks a free port")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help="default %(default)s (Triton's usual port); 0 picks a free port")
    parser.add_argument("--host", default=default.host, help="address to bind (0.0.0.0 for all; default %(default)s)")
    parser.add_argument("--log-file", help="server log (default: a temporary file)")
    parser.add_argument("--startup-timeout", type=float, default=default.startup_timeout_s,
                        help="seconds to wait for readiness (default %(default)g)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: _serve(args))


if __name__ == "__main__":
    sys.exit(main())
