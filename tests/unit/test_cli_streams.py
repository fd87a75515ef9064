"""Which stream each command writes to: what it was asked for (listings, tables, summaries, the id of
what it made) on stdout, messages and progress on stderr, and with ``--json`` one JSON document on
stdout and nothing else there. The commands that need a server are in
``tests/integration/test_cli_streams.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

from ppo_client.cli import main
from ppo_client.head import PreferenceHead
from ppo_client.store import UserStore
from tests.unit.test_user_store import picture

USER_KEYS = {"name", "created", "ratings", "choices", "models", "description_version"}
SHOW_KEYS = {"name", "created", "ratings", "choices", "description", "models"}
MODEL_KEYS = {"id", "method", "encoder", "created", "ratings", "signals", "cv_srocc", "cv_mae", "metrics"}
CHECK_KEYS = {"store", "schema_version", "clean", "integrity", "missing", "damaged", "unreferenced",
              "unreferenced_bytes", "repaired", "problems"}


@pytest.fixture()
def store(tmp_path):
    return ["--store", str(tmp_path / "store.sqlite")]


@pytest.fixture()
def alice(tmp_path, store, capsys):
    """A user with two ratings, a description and a model whose cross-validation gave no figures."""
    for i in range(2):
        picture(tmp_path / f"{i}.png", i)
    (tmp_path / "ratings.csv").write_text("0.png,7\n1.png,4\n")
    assert main(["user", "create", "alice", *store]) == 0
    assert main(["user", "import", "alice", "--csv", str(tmp_path / "ratings.csv"), *store]) == 0
    assert main(["user", "describe", "alice", "dark blue scenes", *store]) == 0
    with UserStore(tmp_path / "store.sqlite") as s:
        s.save_model("alice", "ridge", "enc", PreferenceHead.linear(np.ones(4), 0.0), {"ratings": 2, "signals": ["ratings"]},
                     {"cv_srocc": float("nan"), "cv_mae": None, "cv_folds": 0})
    capsys.readouterr()
    return "alice"


def cli(capsys, *argv: str) -> tuple[str, str]:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_making_importing_and_deleting_say_so_on_stderr_and_leave_stdout_empty(tmp_path, store, capsys):
    picture(tmp_path / "0.png", 0)
    (tmp_path / "ratings.csv").write_text("0.png,7\n")
    out, err = cli(capsys, "user", "create", "bo", *store)
    assert out == "" and "created user 'bo'" in err
    out, err = cli(capsys, "user", "import", "bo", "--csv", str(tmp_path / "ratings.csv"), *store)
    assert out == "" and "imported 1 ratings for 'bo'" in err
    out, err = cli(capsys, "user", "delete", "bo", *store)
    assert out == "" and "deleted user 'bo'" in err


def test_describe_prints_the_new_version_alone_on_stdout(store, capsys):
    cli(capsys, "user", "create", "bo", *store)
    out, err = cli(capsys, "user", "describe", "bo", "warm light", *store)
    assert out == "1\n" and "saved version 1 of 'bo'" in err


def test_user_list_is_a_table_on_stdout_with_nothing_on_stderr(alice, store, capsys):
    out, err = cli(capsys, "user", "list", *store)
    assert err == ""
    assert out.splitlines()[0] == "user\tratings\tmodels\tcreated"
    assert out.splitlines()[1].startswith("alice\t2\t1\t")


def test_user_list_json_is_one_document_with_the_documented_keys(alice, store, tmp_path, capsys):
    out, err = cli(capsys, "user", "list", "--json", *store)
    listing = json.loads(out)
    assert err == "" and set(listing) == {"store", "users"}
    assert listing["store"] == str(tmp_path / "store.sqlite")
    [user] = listing["users"]
    assert set(user) == USER_KEYS
    assert (user["name"], user["ratings"], user["choices"], user["models"], user["description_version"]) == ("alice", 2, 0, 1, 1)
    assert datetime.fromisoformat(user["created"]).utcoffset().total_seconds() == 0


def test_user_list_json_of_an_empty_store_is_an_empty_list(store, capsys):
    out, err = cli(capsys, "user", "list", "--json", *store)
    assert json.loads(out)["users"] == [] and err == ""


def test_user_show_prints_everything_on_stdout_and_a_missing_figure_as_a_dash(alice, store, capsys):
    out, err = cli(capsys, "user", "show", "alice", *store)
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "alice: 2 ratings, mean 5.50, range 4-7"
    assert any(line.startswith("description (version 1, ") and line.endswith("): dark blue scenes") for line in lines)
    assert lines[-2] == "id\tmethod\tencoder\tratings\tCV SROCC\tCV MAE\ttrained"
    assert lines[-1].split("\t")[1:6] == ["ridge", "enc", "2", "nan", "-"]


def test_user_show_json_has_the_documented_keys_and_null_for_missing_figures(alice, store, capsys):
    out, err = cli(capsys, "user", "show", "alice", "--json", *store)
    shown = json.loads(out)
    assert err == "" and set(shown) == SHOW_KEYS and shown["name"] == "alice"
    assert shown["ratings"] == {"count": 2, "mean": 5.5, "min": 4.0, "max": 7.0, "sources": {"csv:ratings.csv": 2}}
    assert shown["choices"] == {"count": 0, "picked": 0, "sources": {}}
    assert shown["description"]["version"] == 1 and shown["description"]["text"] == "dark blue scenes"
    [model] = shown["models"]
    assert set(model) == MODEL_KEYS
    assert (model["method"], model["encoder"], model["ratings"], model["signals"]) == ("ridge", "enc", 2, ["ratings"])
    assert model["cv_srocc"] is None and model["cv_mae"] is None and model["metrics"]["cv_folds"] == 0
    assert "NaN" not in out  # a figure that is not a number is null: strict JSON readers accept the document


def test_user_show_json_of_a_user_with_nothing_yet(store, capsys):
    cli(capsys, "user", "create", "bo", *store)
    shown = json.loads(cli(capsys, "user", "show", "bo", "--json", *store)[0])
    assert shown["ratings"] == {"count": 0, "mean": None, "min": None, "max": None, "sources": {}}
    assert shown["description"] is None and shown["models"] == []


def test_an_unknown_user_is_an_error_on_stderr_and_nothing_on_stdout_even_with_json(store, capsys):
    assert main(["user", "show", "nobody", "--json", *store]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: unknown user 'nobody'")


def test_store_check_reports_on_stdout_and_json_keeps_its_keys(alice, store, capsys):
    out, err = cli(capsys, "store", "check", *store)
    assert out.splitlines()[-1] == "no problems found" and err == ""
    out, err = cli(capsys, "store", "check", "--json", *store)
    found = json.loads(out)
    assert err == "" and set(found) == CHECK_KEYS and found["clean"] is True


def test_store_copy_shows_progress_on_stderr_and_the_counts_tab_separated_on_stdout(alice, tmp_path, store, capsys):
    out, err = cli(capsys, "store", "copy", store[1], str(tmp_path / "copy.sqlite"))
    assert "copied and verified" in err
    counts = dict(field.split("=") for field in out.rstrip("\n").split("\t"))
    assert counts["users"] == "1" and counts["ratings"] == "2" and int(counts["image_bytes"]) > 0


def run(*argv: str) -> subprocess.CompletedProcess:
    """``ppo-client`` in a process of its own, with stdout and stderr on separate pipes."""
    return subprocess.run([sys.executable, "-m", "ppo_client.cli", *argv], capture_output=True, text=True, check=True)


def test_user_list_and_show_piped_into_grep_and_a_json_reader(alice, store):
    listing = run("user", "list", *store)
    found = subprocess.run(["grep", "alice"], input=listing.stdout, capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.startswith("alice\t2\t1\t") and listing.stderr == ""
    shown = run("user", "show", "alice", "--json", *store)
    assert json.loads(shown.stdout)["name"] == "alice" and shown.stderr == ""
    model = subprocess.run([sys.executable, "-c", "import json, sys; print(json.load(sys.stdin)['models'][0]['id'])"],
                           input=shown.stdout, capture_output=True, text=True, check=True)
    assert int(model.stdout) >= 1
