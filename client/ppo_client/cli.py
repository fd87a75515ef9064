"""``ppo-client``: the user's command line; the commands are ``ppo_client.commands``, one module each."""

from __future__ import annotations

import sys

from ppo_client.commands import build_parser
from ppo_client.console import run_commands


def main(argv: list[str] | None = None) -> int:
    return run_commands(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
