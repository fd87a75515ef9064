"""The one CLI boundary: logging set-up, the project's errors turned into a message and an exit code,
and where output goes.

Results (what a command was asked for: listings, tables, summaries, the id of what it made) go to
stdout, through ``results``, ``print_table``, ``print_document`` and ``print_json``, so they can be
piped (``ppo-client user list | grep alice``); messages, progress and logs go to stderr, through
``console``. With ``--json`` a command prints one JSON document on stdout and nothing else there.
Neither console interprets rich markup or emoji codes in what it prints: user names, prompts, paths
and server messages come out as they were typed (``[red]eve`` stays ``[red]eve``). Styled output is
built from ``rich.text.Text``; ``status`` and the ``progress`` columns take plain text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
from typing import Any, Callable, Iterable, Iterator, Sequence

from rich.console import Console
from rich.logging import RichHandler
from rich.status import Status
from rich.table import Table
from rich.text import Text

from ppo_client.errors import PPOError

console = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)
"""User-facing messages and progress go to stderr; stdout stays for results."""
results = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
"""Results, on stdout."""

INTERRUPTED_EXIT_CODE = 130
TERMINATED_EXIT_CODE = 143
"""128 + SIGTERM, what a shell reports for a process that SIGTERM ended."""


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[RichHandler(console=console, show_path=False)])
    if verbose < 2:
        for noisy in ("httpx", "httpcore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While inside, SIGTERM raises ``SystemExit(143)`` instead of ending the process on the spot, so
    every ``finally`` and ``with`` on the way out runs: the servers a command started (each in a
    session of its own, out of reach of a signal to our group) are stopped, not orphaned, when
    ``kill``, ``timeout`` or a service manager ends the command. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it without the clean-up
        raise SystemExit(TERMINATED_EXIT_CODE)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_cli(command: Callable[[], int | None]) -> int:
    """Run ``command``; a ``PPOError`` becomes ``error: <message>`` and its exit code; SIGINT and
    SIGTERM stop it with its clean-up done (130, 143)."""
    try:
        with sigterm_as_exit():
            return command() or 0
    except PPOError as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return INTERRUPTED_EXIT_CODE
    except SystemExit as exc:
        if exc.code != TERMINATED_EXIT_CODE:
            raise
        console.print("terminated")
        return TERMINATED_EXIT_CODE


def run_commands(parser, argv: list[str] | None = None) -> int:
    """The one CLI boundary of a command with subcommands: parse, set up logging (``-v``), run the
    chosen subcommand's ``handler``, and turn project errors into messages and exit codes."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_cli(lambda: args.handler(args))


def progress():
    """A rich progress display on the CLI console (stderr), removed when done; task descriptions are
    plain text."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )


def status(text: str) -> Status:
    """A spinner with ``text`` (plain, not markup) on the CLI console while a block runs."""
    return console.status(Text(text))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str = "") -> None:
    """A result table on stdout: drawn on a terminal; piped, one tab-separated line per row after a
    header line, so that ``grep``, ``cut`` and ``sort`` see whole values, however long."""
    cells = [[str(cell) for cell in row] for row in rows]
    if results.is_terminal:
        table = Table(*columns, title=Text(title) if title else None)
        for line in cells:
            table.add_row(*(Text(cell) for cell in line))
        results.print(table)
        return
    clean = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
    for line in (list(columns), *cells):  # written as they are: rich would expand the tabs
        results.file.write("\t".join(cell.translate(clean) for cell in line) + "\n")


def print_document(text: str) -> None:
    """A whole text result (a markdown table) on stdout, exactly as it is: not wrapped, tabs kept."""
    results.file.write(text)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity in it replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def print_json(payload: dict) -> None:
    """A command's whole result as one JSON document on stdout (``--json``); a number that is not
    finite becomes ``null``."""
    results.file.write(json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")
