"""`ppo-client experiment --shard I/N` and `experiment merge` against the real Triton server (tiny
models): a small grid of random-optimizer runs split in two shards gives the tables of the same grid
run whole, whether the shards run at once into one folder or into folders of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ppo_client.cli import main
from tests.integration.test_optimize_cli import store  # noqa: F401  (the user with a trained model)

pytestmark = pytest.mark.integration

TIMED = ("llm_s", "render_s", "total_s")
"""Table entries that measure time: the only ones that differ between two runs of the same grid."""


def grid(triton_server, store):  # noqa: F811
    argv = ["--users", "ana", "--prompt", "a red cat", "--prompt", "a green tree", "--optimizers", "random,ga",
            "--repeats", "2", "--iterations", "1", "--n-prompts", "2", "--seeds", "1", "--steps", "2",
            "--subject-guard", "0", "--parallel", "2", "--store", store, "--url", triton_server.grpc_url]
    return argv


def table(folder) -> dict:
    return json.loads((folder / "experiment.json").read_text())["table"]


def untimed(table: dict) -> dict:
    return {arm: {k: v for k, v in row.items() if k not in TIMED} for arm, row in table.items()}


def assert_same_tables(merged: dict, whole: dict) -> None:
    """Same arms, run counts and prompt sources; figures equal up to what a CPU's batch shapes can
    move in a score (the server may batch two shards' requests together)."""
    assert list(merged) == list(whole)
    for arm in whole:
        got, want = untimed(merged)[arm], untimed(whole)[arm]
        assert set(got) == set(want) and got["runs"] == want["runs"]
        for column, value in want.items():
            if isinstance(value, dict):
                assert got[column]["mean"] == pytest.approx(value["mean"], abs=0.05), (arm, column)
                assert got[column]["std"] == pytest.approx(value["std"], abs=0.05), (arm, column)
            else:
                assert got[column] == value, (arm, column)


def iterations_per_run(folder) -> dict:
    return {p.parent.relative_to(folder / "runs").as_posix(): len(p.read_text().splitlines())
            for p in folder.glob("runs/*/*/*/iterations.jsonl")}


@pytest.fixture(scope="module")
def whole(triton_server, store, tmp_path_factory):  # noqa: F811
    """The grid run unsharded, as the reference."""
    out = tmp_path_factory.mktemp("whole") / "exp"
    assert main(["experiment", *grid(triton_server, store), "--out", str(out)]) == 0
    assert sum(row["runs"] for row in table(out).values()) == 8
    return out


def test_two_shards_at_once_into_one_folder_merge_to_the_unsharded_tables(triton_server, store, whole, tmp_path, capsys):  # noqa: F811
    shared = tmp_path / "exp"
    command = [sys.executable, "-m", "ppo_client.cli", "experiment", *grid(triton_server, store), "--out", str(shared)]
    processes = [subprocess.Popen([*command, "--shard", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}) for i in (1, 2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert all("shard" in err and "ppo-client experiment merge" in err for _, err in outputs)
    assert not (shared / "experiment.json").exists(), "a shard writes only its manifest"
    manifests = {p.name: json.loads(p.read_text()) for p in (shared / "shards").glob("*.json")}
    assert sorted(manifests) == ["1-of-2.json", "2-of-2.json"] and all(m["done"] for m in manifests.values())
    assert sorted(manifests["1-of-2.json"]["runs"] + manifests["2-of-2.json"]["runs"]) == sorted(iterations_per_run(whole))
    assert len(manifests["1-of-2.json"]["runs"]) == len(manifests["2-of-2.json"]["runs"]) == 4

    assert main(["experiment", "merge", str(shared), "--out", str(shared)]) == 0
    assert_same_tables(table(shared), table(whole))
    assert "Table 1 shape" in capsys.readouterr().out

    # a shard started again skips its finished runs
    before = iterations_per_run(shared)
    assert main(["experiment", *grid(triton_server, store), "--out", str(shared), "--shard", "1/2"]) == 0
    assert iterations_per_run(shared) == before == {k: 2 for k in before}


def test_shards_in_folders_of_their_own_merge_and_a_merge_of_the_unsharded_folder_is_its_own_table(
        triton_server, store, whole, tmp_path, capsys):  # noqa: F811
    folders = [tmp_path / f"shard{i}" for i in (1, 2)]
    for i, folder in enumerate(folders, 1):
        assert main(["experiment", *grid(triton_server, store), "--out", str(folder), "--shard", f"{i}/2"]) == 0
    assert main(["experiment", "merge", str(folders[0]), "--out", str(tmp_path / "merged")]) == 1
    assert "4 of the grid's 8 runs are missing or unfinished" in capsys.readouterr().err
    assert main(["experiment", "merge", *map(str, folders), "--out", str(tmp_path / "merged")]) == 0
    assert_same_tables(table(tmp_path / "merged"), table(whole))

    # the same runs read back from their folders give the unsharded experiment's table to the last digit
    assert main(["experiment", "merge", str(whole), "--out", str(tmp_path / "again")]) == 0
    assert table(tmp_path / "again") == table(whole)
    assert (tmp_path / "again" / "experiment.md").read_text() == (whole / "experiment.md").read_text()

    # a shard of another grid is refused
    other = tmp_path / "other"
    argv = ["--users", "ana", "--prompt", "a red cat", "--optimizers", "random", "--iterations", "1", "--n-prompts", "2",
            "--seeds", "1", "--steps", "2", "--store", store, "--url", triton_server.grpc_url]
    assert main(["experiment", *argv, "--out", str(other), "--shard", "2/2"]) == 0  # a share of 0 or 1 runs
    assert main(["experiment", "merge", str(folders[0]), str(other), "--out", str(tmp_path / "merged")]) == 2
    assert "the shards disagree on the grid" in capsys.readouterr().err
