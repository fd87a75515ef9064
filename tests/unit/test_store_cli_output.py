"""What the user commands print: results on stdout (pipeable), messages on stderr, and user text
(names, paths, server messages) exactly as typed, never read as rich markup or emoji codes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ppo_client.cli import main
from ppo_client.console import print_table, progress, status

HOSTILE = ["[red]eve", "[bold]x[not bold]", ":smile:y", "[link=mailto:e]z", "a[b]c"]


@pytest.fixture()
def store(tmp_path):
    return ["--store", str(tmp_path / "s" / "store.sqlite")]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_user_name_is_printed_as_typed_everywhere(store, tmp_path, capsys, name):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "r.csv").write_text("a.png,6\n")
    assert main(["user", "create", name, *store]) == 0
    assert main(["user", "import", name, "--csv", str(tmp_path / "r.csv"), *store]) == 0
    assert main(["user", "create", name, *store]) == 2
    err = capsys.readouterr().err
    assert f"created user {name!r}" in err and f"imported 1 ratings for {name!r}" in err
    assert f"user {name!r} already exists" in err
    assert main(["user", "list", *store]) == 0
    assert f"\n{name}\t1\t0\t" in capsys.readouterr().out
    assert main(["user", "show", name, *store]) == 0
    assert capsys.readouterr().out.startswith(f"{name}: 1 ratings, mean 6.00")
    assert main(["user", "delete", name, *store]) == 0
    assert f"deleted user {name!r}" in capsys.readouterr().err


def test_an_error_message_holding_markup_is_printed_as_is(store, capsys):
    assert main(["user", "show", "[bold]nobody", *store]) == 2
    expected = "error: unknown user '[bold]nobody'; create it with `ppo-client user create [bold]nobody`\n"
    assert capsys.readouterr().err == expected


def test_listings_go_to_stdout_one_line_per_user_whatever_its_length(store, capsys):
    names = ["alice", "b" * 64, "carol"]
    for name in names:
        assert main(["user", "create", name, *store]) == 0
    capsys.readouterr()
    assert main(["user", "list", *store]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].split("\t") == ["user", "ratings", "models", "created"]
    assert [line.split("\t")[0] for line in lines[1:]] == names
    assert main(["user", "show", "alice", *store]) == 0
    captured = capsys.readouterr()
    assert captured.out == "alice: 0 ratings\n" and captured.err == ""


def test_user_list_can_be_piped_into_grep(store):
    for name in ("alice", "bob"):
        assert main(["user", "create", name, *store]) == 0
    listing = subprocess.run([sys.executable, "-m", "ppo_client.cli", "user", "list", *store],
                             capture_output=True, text=True, check=True)
    found = subprocess.run(["grep", "alice"], input=listing.stdout, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.startswith("alice\t0\t0\t") and listing.stderr == ""


def test_spinners_progress_and_tables_show_plain_text(capsys):
    assert status("[red]eve").renderable.text.plain == "[red]eve"
    bar = progress()
    task = bar.add_task("[red]eve", total=1)
    column = bar.columns[0]
    assert column.render(bar.tasks[task]).plain == "[red]eve"
    print_table(("a\tb", "c"), [("[red]x\ty", ":smile:")])
    assert capsys.readouterr().out == "a b\tc\n[red]x y\t:smile:\n"
