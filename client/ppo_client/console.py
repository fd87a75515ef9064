"""The one CLI boundary: logging set-up, and the project's errors turned into a message and an exit code."""

from __future__ import annotations

import logging
from typing import Callable

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from ppo_client.errors import PPOError

console = Console(stderr=True, soft_wrap=True)
"""User-facing messages and progress go to stderr; stdout stays for results."""

INTERRUPTED_EXIT_CODE = 130


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[RichHandler(console=console, show_path=False)])
    if verbose < 2:
        for noisy in ("httpx", "httpcore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def run_cli(command: Callable[[], int | None]) -> int:
    """Run ``command``; a ``PPOError`` becomes ``error: <message>`` and its exit code."""
    try:
        return command() or 0
    except PPOError as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return INTERRUPTED_EXIT_CODE


def run_commands(parser, argv: list[str] | None = None) -> int:
    """The one CLI boundary of a command with subcommands: parse, set up logging (``-v``), run the
    chosen subcommand's ``handler``, and turn project errors into messages and exit codes."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: args.handler(args))


def progress():
    """A rich progress display on the CLI console (stderr), removed when done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )
