"""``python -m ppo_server.balancer``: nginx in front of Triton replicas, in the foreground until
SIGINT or SIGTERM, or (``--print-config``) only its configuration, for a system nginx.

    python -m ppo_server.balancer --replica 127.0.0.1:8101 127.0.0.1:8100 --replica 127.0.0.1:8201 127.0.0.1:8200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ppo_client.console import run_cli, setup_logging
from ppo_server.balancer.config import BalancerConfig, Method, Replica, render
from ppo_server.balancer.nginx import STARTUP_TIMEOUT_S, NginxBalancer
from ppo_server.errors import BalancerError
from ppo_server.foreground import serve_until_stopped


def _config(args: argparse.Namespace) -> BalancerConfig:
    try:
        replicas = tuple(Replica(grpc=grpc, http=http) for grpc, http in args.replica)
        return BalancerConfig(
            replicas=replicas, grpc_port=args.grpc_port, http_port=args.http_port, host=args.host,
            method=Method(args.method), request_timeout_s=args.timeout, max_body_mb=args.max_body_mb,
            worker_processes=args.workers,
        )
    except ValueError as exc:
        raise BalancerError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.print_config:
        sys.stdout.write(render(config))
        return 0
    balancer = NginxBalancer(config, prefix=Path(args.prefix) if args.prefix else None, binary=args.nginx,
                             startup_timeout_s=args.startup_timeout)
    return serve_until_stopped(balancer, starting=f"starting nginx in front of {len(config.replicas)} replicas ...",
                               ready=lambda: f"nginx is ready (configuration and logs in {balancer.prefix}); Ctrl-C stops it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ppo_server.balancer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default = BalancerConfig(replicas=(Replica("localhost:8001", "localhost:8000"),))
    parser.add_argument("--replica", nargs=2, action="append", required=True, metavar=("GRPC", "HTTP"),
                        help="a Triton replica's gRPC and HTTP addresses (host:port each); once per replica")
    parser.add_argument("--grpc-port", type=int, default=default.grpc_port, help="gRPC for clients (default %(default)s; 0: a free port)")
    parser.add_argument("--http-port", type=int, default=default.http_port, help="HTTP for clients (default %(default)s; 0: a free port)")
    parser.add_argument("--host", default=default.host, help="address to listen on (0.0.0.0 for all; default %(default)s)")
    parser.add_argument("--method", choices=[m.value for m in Method], default=default.method.value,
                        help="how a replica is picked (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=default.request_timeout_s,
                        help="seconds a request may wait on a replica between two reads (default %(default)g)")
    parser.add_argument("--max-body-mb", type=int, default=default.max_body_mb,
                        help="largest request body (default %(default)s; 0: no limit)")
    parser.add_argument("--workers", type=int, default=default.worker_processes, help="nginx worker processes (default %(default)s)")
    parser.add_argument("--prefix", help="folder for nginx's configuration, pid, logs and temporary files (default: a temporary one)")
    parser.add_argument("--nginx", help="the nginx binary (default: nginx on PATH or in /usr/sbin)")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S,
                        help="seconds to wait until a replica answers ready through nginx (default %(default)g)")
    parser.add_argument("--print-config", action="store_true", help="print the configuration and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
