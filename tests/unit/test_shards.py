"""Grids across machines: the shard split, ``--shard`` parsing, and ``experiment merge`` over run
folders made here (no server): every run in exactly one shard, the merge's tables those of the
whole grid, and a clear refusal when shards disagree or runs are missing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_client.cli import main
from ppo_client.errors import DataError, InvalidRequestError, OptimizationError
from ppo_client.llm.chat import ChatConfig
from ppo_client.optimize import shards
from ppo_client.optimize.config import Optimizer, RunConfig
from ppo_client.optimize.experiment import ExperimentConfig, aggregate, grid_spec, jobs, merge
from ppo_client.optimize.records import IterationRecord
from ppo_client.optimize.shards import Shard, assign

keys = st.sets(st.text(min_size=1, max_size=30), max_size=60)


@settings(max_examples=150, deadline=None)
@given(keys=keys, count=st.integers(1, 5))
def test_every_key_lands_in_exactly_one_shard_and_the_shards_differ_in_size_by_at_most_one(keys, count):
    owner = assign(keys, count)
    assert set(owner) == keys and set(owner.values()) <= set(range(1, count + 1))
    shares = [Shard(i, count).share(keys) for i in range(1, count + 1)]
    assert sorted(k for share in shares for k in share) == sorted(keys)  # a partition: none twice, none left out
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=100, deadline=None)
@given(keys=keys, count=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_the_split_depends_on_the_keys_alone_not_on_their_order_or_the_call(keys, count, seed):
    ordered = sorted(keys)
    shuffled = list(ordered)
    random.Random(seed).shuffle(shuffled)
    assert assign(ordered, count) == assign(shuffled, count) == assign(ordered, count)
    assert Shard(1, count).share(shuffled) == [k for k in shuffled if assign(keys, count)[k] == 1]


def test_the_split_is_pinned():
    """A change here would move runs between the shards of grids already running on other machines."""
    runs = [f"ana/00-a-cat/random-r{r}" for r in range(6)]
    assert [assign(runs, 3)[k] for k in runs] == [1, 3, 1, 3, 2, 2]
    assert [assign(runs[:4], 2)[k] for k in runs[:4]] == [1, 2, 1, 2]


@pytest.mark.parametrize(("text", "shard"), [("1/1", Shard()), ("2/3", Shard(2, 3)), (" 4 / 4 ", Shard(4, 4))])
def test_a_shard_is_i_of_n_counted_from_one(text, shard):
    assert Shard.parse(text) == shard and str(shard) == f"{shard.index}/{shard.count}"


@pytest.mark.parametrize(("text", "message"), [
    ("0/2", "I must be from 1 to N = 2 (counted from 1), got 0"),
    ("3/2", "I must be from 1 to N = 2 (counted from 1), got 3"),
    ("1/0", "N must be 1 or more, got 0"),
    ("0/0", "N must be 1 or more, got 0"),
    ("a/b", "must be I/N"), ("2", "must be I/N"), ("1/2/3", "must be I/N"), ("-1/2", "must be I/N"),
    ("1.5/2", "must be I/N"), ("", "must be I/N"),
])
def test_a_bad_shard_is_refused_naming_the_flag(text, message):
    with pytest.raises(InvalidRequestError, match="^--shard: ") as caught:
        Shard.parse(text)
    assert message in str(caught.value)


# --- merge, over run folders made here --------------------------------------------------------------

ITERATIONS = 2


def grid_config(out: Path, **changes) -> ExperimentConfig:
    fields = dict(out=out, prompts=("a red cat", "a blue dog"), users=("ana", "bob"), optimizers=(Optimizer.RANDOM, Optimizer.GA),
                  repeats=2, run=RunConfig(iterations=ITERATIONS, n_prompts=2, seeds=1))
    return ExperimentConfig(**{**fields, **changes}).checked()


def summary_of(job) -> dict:
    """A run's summary with figures that differ from run to run (so that order and grouping show)."""
    value = sum(map(ord, job.key)) % 97 / 10
    return {"iterations_done": ITERATIONS, "max": value, "max_minus_init": value / 3, "k_star": len(job.key) % 3,
            "timings": {"llm_s": 0.0, "render_s": value, "total_s": 2 * value}, "fallback_prompts": 1}


def fake_run(job, *, iterations: int = ITERATIONS + 1, config: RunConfig | None = None) -> None:
    """What a finished run leaves for readers: config.json, iterations.jsonl and summary.json."""
    job.folder.mkdir(parents=True, exist_ok=True)
    (job.folder / "config.json").write_text(json.dumps({"config": (config or job.config).to_dict()}))
    lines = [json.dumps(IterationRecord(k, [0], []).to_dict()) for k in range(iterations)]
    (job.folder / "iterations.jsonl").write_text("".join(line + "\n" for line in lines))
    (job.folder / "summary.json").write_text(json.dumps({**summary_of(job), "iterations_done": iterations - 1}))


def fake_shard(out: Path, shard: Shard, **changes) -> list:
    """Shard ``shard`` of the grid as ``run_experiment`` leaves it in ``out``: its manifest and its runs."""
    config = grid_config(out, **changes)
    grid = jobs(config, ChatConfig(""))
    mine = shard.share(job.key for job in grid)
    shards.write_manifest(out, shard, grid_spec(config, grid), mine)
    for job in grid:
        if job.key in mine:
            fake_run(job)
    return grid


def whole_table(grid) -> dict:
    by_arm: dict[str, list] = {}
    for job in grid:
        by_arm.setdefault(job.arm.label, []).append(summary_of(job))
    return aggregate(by_arm)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_merged_shards_give_the_whole_grids_table_whether_in_one_folder_or_their_own(tmp_path, count):
    for i in range(1, count + 1):
        grid = fake_shard(tmp_path / "own" / str(i), Shard(i, count))
        fake_shard(tmp_path / "shared", Shard(i, count))
    own = merge([tmp_path / "own" / str(i) for i in range(1, count + 1)], tmp_path / "merged-own")
    shared = merge([tmp_path / "shared"], tmp_path / "shared")
    assert own.table == shared.table == whole_table(grid)
    assert list(own.table) == ["random", "ga"] and own.table["ga"]["runs"] == 8 and own.missing == []
    written = json.loads((tmp_path / "shared" / "experiment.json").read_text())
    assert written["table"] == own.table and written["missing"] == [] and written["iterations"] == ITERATIONS
    assert (tmp_path / "merged-own" / "experiment.md").read_text() == (tmp_path / "shared" / "experiment.md").read_text()


def test_shards_that_disagree_on_the_grid_are_refused_naming_the_difference(tmp_path):
    fake_shard(tmp_path / "1", Shard(1, 2))
    fake_shard(tmp_path / "2", Shard(2, 2), run=RunConfig(iterations=3, n_prompts=2, seeds=1))
    with pytest.raises(DataError, match=r"the shards disagree on the grid: .* differ in iterations \(2 vs 3\)"):
        merge([tmp_path / "1", tmp_path / "2"], tmp_path / "out")
    fake_shard(tmp_path / "3", Shard(2, 2), prompts=("a red cat",))
    with pytest.raises(DataError, match="differ in prompts"):
        merge([tmp_path / "1", tmp_path / "3"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_unfinished_runs_are_named_with_their_shard_unless_partial(tmp_path):
    fake_shard(tmp_path / "1", Shard(1, 2))
    with pytest.raises(OptimizationError, match=r"8 of the grid's 16 runs are missing or unfinished: [^,]+ \(shard 2/2\), "
                                                 r".* and 3 more; run their shards again"):
        merge([tmp_path / "1"], tmp_path / "out")
    grid = fake_shard(tmp_path / "2", Shard(2, 2))
    stopped = next(job for job in grid if job.key in Shard(2, 2).share(j.key for j in grid))
    fake_run(stopped, iterations=ITERATIONS)  # one iteration left: not finished
    with pytest.raises(OptimizationError, match=rf"1 of the grid's 16 runs are missing or unfinished: {stopped.key} \(shard 2/2\)"):
        merge([tmp_path / "1", tmp_path / "2"], tmp_path / "out")
    result = merge([tmp_path / "1", tmp_path / "2"], tmp_path / "out", partial=True)
    assert result.missing == [stopped.key] and result.runs == 15
    assert sum(row["runs"] for row in result.table.values()) == 15
    assert "partial: 1 of the grid's runs missing" in (tmp_path / "out" / "experiment.md").read_text()


def test_a_run_folder_of_another_grid_is_refused(tmp_path):
    grid = fake_shard(tmp_path / "1", Shard(1, 1))
    fake_run(grid[0], config=RunConfig(user=grid[0].config.user, prompt=grid[0].config.prompt, iterations=ITERATIONS,
                                       n_prompts=3, seeds=1, optimizer=Optimizer.RANDOM))
    with pytest.raises(DataError, match=r"was run with n_prompts 3 \(the grid's: 2\)"):
        merge([tmp_path / "1"], tmp_path / "out")


def test_merge_errors_on_the_command_line_are_one_line(tmp_path, capsys):
    fake_shard(tmp_path / "1", Shard(1, 2))
    fake_shard(tmp_path / "2", Shard(2, 2), repeats=1)
    (tmp_path / "empty").mkdir()
    cases = [([str(tmp_path / "1"), str(tmp_path / "2")], 2, "the shards disagree on the grid"),
             ([str(tmp_path / "1")], 1, "runs are missing or unfinished"),
             ([str(tmp_path / "empty")], 2, "holds no experiment shard"),
             ([str(tmp_path / "nowhere")], 2, "is not a folder")]
    for folders, code, message in cases:
        assert main(["experiment", "merge", *folders, "--out", str(tmp_path / "out")]) == code
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert main(["experiment", "merge", str(tmp_path / "1"), "--partial", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "Table 1 shape" in captured.out and "partial tables: 8 runs" in captured.err


@pytest.mark.parametrize("content", ["not json", "{}", '{"shard": "1/2", "grid": {"runs": {"a/b/c": 1}}}',
                                     '{"shard": "0/2", "grid": {"runs": {}}}'], ids=["text", "empty", "run", "shard"])
def test_a_damaged_manifest_is_named(tmp_path, content):
    (tmp_path / "exp" / "shards").mkdir(parents=True)
    (tmp_path / "exp" / "shards" / "1-of-2.json").write_text(content)
    with pytest.raises(DataError, match=r"1-of-2.json is not an experiment shard's manifest"):
        merge([tmp_path / "exp"], tmp_path / "out")
