"""``ppo-client``'s commands, one module each (its parser and its run function), assembled here in
the order ``--help`` lists them."""

from __future__ import annotations

import argparse

from ppo_client.commands import app, experiment, generate, models, optimize, piaa_eval, store, user

COMMANDS = (generate, models, user, piaa_eval, store, optimize, experiment, app)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppo-client", description="ppo-client: the user's command line.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser
