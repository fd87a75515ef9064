"""Optimization run folders under a second process and after damage: one worker at a time, and a
damaged line costs exactly the iterations from it on, with the file kept as it was."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ppo_client.cli import main
from ppo_client.errors import OptimizationError
from ppo_client.head import PreferenceHead
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.folder import ITERATIONS, RunInfo, create_run, load_run
from ppo_client.optimize.records import IterationRecord, RenderedPrompt

pytestmark = pytest.mark.faults


def a_run(folder, iterations=6):
    config = RunConfig("u", "a red cat", iterations=iterations, n_prompts=2, seeds=1, optimizer="random")
    state = create_run(folder, config, PreferenceHead.linear(np.ones(2), 0.0), RunInfo(), (np.zeros((0, 2)), np.zeros(0)))
    state.close()
    return folder


def record(k):
    prompt = RenderedPrompt(f"prompt {k}", [float(k)], float(k), [f"images/it{k:02d}/p00_s0.png"], 0, [[1.0, 0.0]])
    return IterationRecord(k, [0], [prompt]).to_dict()


@pytest.fixture()
def holder(tmp_path):
    """Another process working in the run folder (it holds the lock until told to stop)."""
    folder = a_run(tmp_path / "run")
    code = textwrap.dedent(f"""
        import sys
        from ppo_client.optimize.folder import load_run
        state = load_run({str(folder)!r})
        print("holding", flush=True)
        sys.stdin.readline()
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    yield folder, process.pid
    process.communicate("\n", timeout=30)


def test_a_second_process_is_refused_with_the_holders_pid(holder):
    folder, pid = holder
    with pytest.raises(OptimizationError, match=f"in use: the optimization run is being worked on by process {pid}"):
        load_run(folder)


def test_a_second_resume_from_the_cli_exits_with_the_holders_pid(holder, capsys):
    folder, pid = holder
    assert main(["optimize", "--resume", str(folder), "--url", "127.0.0.1:9"]) == 1
    assert f"process {pid}" in capsys.readouterr().err
    assert not (folder / ITERATIONS).exists() or (folder / ITERATIONS).read_text() == ""


def test_the_lock_goes_with_a_killed_process(tmp_path):
    folder = a_run(tmp_path / "run")
    code = (f"from ppo_client.optimize.folder import load_run; import os, signal; load_run({str(folder)!r}); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    state = load_run(folder)
    state.close()


def test_a_damaged_line_in_the_middle_says_how_many_complete_iterations_follow_and_keeps_the_file(tmp_path, caplog):
    folder = a_run(tmp_path / "run")
    lines = [json.dumps(record(k)) for k in range(7)]
    lines[3] = lines[3][:20] + "\x00garbage"
    original = "\n".join(lines) + "\n"
    (folder / ITERATIONS).write_text(original)
    with caplog.at_level(logging.WARNING):
        state = load_run(folder)
    state.close()
    assert [r.iteration for r in state.records] == [0, 1, 2]
    assert "line 4 is damaged or out of order; iteration 3 and the 3 complete iteration(s) after it will be redone" in caplog.text
    backups = list(folder.glob(f"{ITERATIONS}.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == original
    assert [json.loads(line)["iteration"] for line in (folder / ITERATIONS).read_text().splitlines()] == [0, 1, 2]


def test_iterations_out_of_order_are_cut_where_the_order_breaks(tmp_path, caplog):
    folder = a_run(tmp_path / "run")
    (folder / ITERATIONS).write_text("".join(json.dumps(record(k)) + "\n" for k in (0, 1, 2, 2, 3)))
    with caplog.at_level(logging.WARNING):
        state = load_run(folder)
    state.close()
    assert [r.iteration for r in state.records] == [0, 1, 2]
    assert "line 4" in caplog.text


def test_an_intact_file_is_left_as_it_is(tmp_path):
    folder = a_run(tmp_path / "run")
    text = "".join(json.dumps(record(k)) + "\n" for k in range(3))
    (folder / ITERATIONS).write_text(text)
    state = load_run(folder)
    state.close()
    assert (folder / ITERATIONS).read_text() == text and not list(folder.glob("*.bak"))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("iterations", -5, "iterations: must be"),
    ("seed", -1, "seed: must be"),
    ("steps", 0, "steps: must be"),
    ("optimizer", "annealing", "optimizer: must be one of llm, random, ga"),
    ("surprise", 1, "unexpected keyword argument 'surprise'"),
])
def test_resuming_a_run_whose_config_was_edited_out_of_range_is_one_line_and_changes_nothing(
        tmp_path, capsys, field, value, message):
    folder = a_run(tmp_path / "run")
    stored = json.loads((folder / "config.json").read_text())
    stored["config"][field] = value
    (folder / "config.json").write_text(json.dumps(stored))
    before = sorted(p.name for p in folder.iterdir())
    assert main(["optimize", "--resume", str(folder), "--url", "127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder} is not a run folder this version can resume (") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == before
