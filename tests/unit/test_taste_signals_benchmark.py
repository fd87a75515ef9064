"""The taste-signals benchmark (benchmarks/taste_signals.py) on a tiny world: every arm runs for
both persona groups and the results, the rows and the plot are written."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def benchmark():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from ppo_demo import models_dir

    if not (models_dir() / "clip" / "config.json").exists():
        pytest.skip("the demo CLIP is not built")
    spec = importlib.util.spec_from_file_location("taste_signals", ROOT / "benchmarks" / "taste_signals.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_arm_runs_for_both_groups_writes_its_files_and_its_rows_summarise_again(benchmark, tmp_path, capsys):
    out, plot = tmp_path / "taste", tmp_path / "taste_signals.png"
    common = ["--personas", "1", "--train-users", "6", "--train-images", "24", "--test-images", "20",
              "--pool", "12", "--held-out", "8", "--budgets", "0,2", "--repeats", "1", "--out", str(out)]
    result = benchmark.main(common + ["--plot", str(plot)])
    assert set(result["summary"]) == {"archetype", "off-archetype"}
    for group in result["summary"].values():
        assert set(group) == set(benchmark.ARMS)
        assert all(set(cells) == {"0", "2"} for cells in group.values())
    assert len(result["targets"]) == 4
    written = json.loads((out / "taste_signals.json").read_text())
    assert written["config"]["budgets"] == [0, 2]
    assert "| description |" in (out / "taste_signals.md").read_text()
    assert len((out / "taste_signals.both.rows.jsonl").read_text().splitlines()) == 2
    assert plot.stat().st_size > 0
    assert "| arm \\ actions |" in capsys.readouterr().out
    again = benchmark.main(common + ["--plot", "", "--rows-from", str(out / "taste_signals.both.rows.jsonl")])
    assert again["summary"] == result["summary"]
    # 6 described training users: the description is read as learnt from them
    priors = json.loads((out / "taste_signals.both.priors.json").read_text())
    assert all(p["description_map"]["users"] == 6 for p in priors.values())
    # the description arms alone, their other arms taken from the full run: the same summary
    apart = tmp_path / "apart"
    benchmark.main(common + ["--plot", "", "--out", str(apart), "--arms", "description,description+picks-4"])
    merged = benchmark.main(common + ["--plot", "", "--out", str(apart), "--rows-from", str(apart / "taste_signals.both.rows.jsonl"),
                                      "--arms-from", str(out / "taste_signals.both.rows.jsonl")])
    assert merged["summary"] == result["summary"]
