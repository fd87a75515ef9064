"""``ppo-client store ...``: check a store, and copy one to another database."""

from __future__ import annotations

from ppo_client.commands.options import add_store
from ppo_client.console import console, print_json, progress, results
from ppo_client.store import UserStore
from ppo_client.store.copying import copy_store


def register(commands) -> None:

    store = commands.add_parser("store", help="the user store itself")
    sub = store.add_subparsers(dest="store_command", required=True)
    check = sub.add_parser("check", help="schema version, integrity, images referred to but missing or damaged, "
                                         "images nothing refers to; one line per problem")
    check.add_argument("--repair", action="store_true", help="remove the images nothing refers to")
    check.add_argument("--json", action="store_true", help="the findings as JSON on stdout")
    add_store(check)
    check.set_defaults(handler=_check)
    copy = sub.add_parser("copy", help="copy a whole store to another (SQLite <-> PostgreSQL), then verify it")
    copy.add_argument("source", help="a file path or postgresql:// URL")
    copy.add_argument("destination", help="a file path or postgresql:// URL (empty, unless --replace)")
    copy.add_argument("--replace", action="store_true", help="delete what the destination holds first")
    copy.set_defaults(handler=_copy)


def _check(args) -> int:
    """Exit 0: nothing wrong (or all repaired); 1: a problem, one line each on stdout (how to repair
    what can be repaired goes to stderr)."""
    with UserStore(args.store) as store:
        found = store.check(repair=args.repair)
    if args.json:
        payload = {"store": found.location, "schema_version": found.schema_version, "clean": found.clean,
                   "integrity": list(found.integrity), "missing": list(found.missing), "damaged": list(found.damaged),
                   "unreferenced": list(found.unreferenced), "unreferenced_bytes": found.unreferenced_bytes,
                   "repaired": found.repaired, "problems": found.problems}
        print_json(payload)
        return 0 if found.clean else 1
    results.print(f"{found.location}: schema version {found.schema_version}")
    for line in found.problems:
        results.print(line)
    if found.repaired and found.unreferenced:
        results.print(f"removed {len(found.unreferenced)} images nothing referred to ({found.unreferenced_bytes / 1e6:.1f} MB)")
    if found.clean:
        results.print("no problems found")
    elif found.unreferenced and not found.repaired:
        console.print(f"remove what nothing refers to with: ppo-client store check --repair --store {found.location}")
    return 0 if found.clean else 1


def _copy(args) -> int:
    with UserStore(args.source) as source, UserStore(args.destination) as destination:
        with progress() as bar:
            tasks: dict[str, object] = {}

            def advance(table: str, rows: int) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(f"copying {table}", total=None)
                bar.advance(tasks[table], rows)

            report = copy_store(source, destination, replace=args.replace, progress=advance)
    console.print(f"copied and verified {report.source} -> {report.destination}")
    counts = [f"{table}={count}" for table, count in report.rows.items()] + [f"image_bytes={report.image_bytes}"]
    results.file.write("\t".join(counts) + "\n")  # written as it is: rich would expand the tabs
    return 0
