"""Which stream the commands that need a server write to, against the real Triton server (tiny
models): results on stdout, messages and progress on stderr, ``--json`` as one document on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppo_client import contract
from ppo_client.cli import main
from tests.integration.test_optimize_cli import optimize, store  # noqa: F401  (the user with a trained model)

pytestmark = pytest.mark.integration

OPTIMIZE_KEYS = {
    "run_folder", "report", "user", "prompt", "optimizer", "context", "iterations_done", "init", "max",
    "max_minus_init", "k_star", "best_prompt", "best_image", "true_init", "true_max", "true_max_minus_init",
    "proposers", "pool_shares", "unet_evaluations", "preview_unet", "images", "llm_tokens", "llm_prompts",
    "repaired_prompts", "fallback_prompts",
}


def test_models_prints_its_table_and_the_pipeline_on_stdout(triton_server, capsys):
    assert main(["models", "--url", triton_server.grpc_url]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "model\tstate" and f"{contract.TXT2IMG.name}\tREADY" in lines
    assert any(line.startswith("txt2img: family ") for line in lines) and lines[-1].startswith("schedulers: default ")
    assert captured.err == ""


def test_models_json_is_one_document_with_the_documented_keys(triton_server, capsys):
    assert main(["models", "--json", "--url", triton_server.grpc_url]) == 0
    captured = capsys.readouterr()
    served = json.loads(captured.out)
    assert captured.err == "" and set(served) == {"endpoint", "models", "txt2img"}
    assert {"name": contract.TXT2IMG.name, "state": "READY"} in served["models"]
    assert set(served["txt2img"]) == {"family", "native_side", "min_side", "max_side", "side_multiple",
                                      "default_scheduler", "schedulers"}
    assert served["txt2img"]["min_side"] <= served["txt2img"]["native_side"] <= served["txt2img"]["max_side"]


def test_user_train_prints_the_new_models_id_alone_on_stdout(triton_server, store, capsys):  # noqa: F811
    capsys.readouterr()
    assert main(["user", "train", "ana", "--method", "knn", "--store", store, "--url", triton_server.grpc_url]) == 0
    captured = capsys.readouterr()
    model = int(captured.out)
    assert f"trained knn for 'ana' (model {model}, " in captured.err
    assert main(["user", "show", "ana", "--json", "--store", store]) == 0
    assert model in [m["id"] for m in json.loads(capsys.readouterr().out)["models"]]


def test_optimize_prints_its_summary_and_the_reports_path_on_stdout(triton_server, store, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    args = ["--user", "ana", "--prompt", "a red cat", "--iterations", "1", "--n-prompts", "2", "--seeds", "1",
            "--optimizer", "random", "--run-dir", str(run), "--subject-guard", "0"]
    assert optimize(triton_server, store, *args) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("init ") and " -> max " in lines[0]
    assert any(line.startswith("cost: ") for line in lines) and lines[-1] == str(run / "report.html")
    assert f"run folder: {run}" in captured.err and "init " not in captured.err


def test_optimize_json_is_one_document_with_the_documented_keys(triton_server, store, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    args = ["--user", "ana", "--prompt", "a red cat", "--iterations", "1", "--n-prompts", "2", "--seeds", "1",
            "--optimizer", "random", "--run-dir", str(run), "--subject-guard", "0", "--json"]
    assert optimize(triton_server, store, *args) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert set(summary) == OPTIMIZE_KEYS
    assert summary["run_folder"] == str(run) and summary["report"] == str(run / "report.html")
    assert (summary["user"], summary["prompt"], summary["optimizer"], summary["iterations_done"]) == ("ana", "a red cat", "random", 1)
    assert summary["max"] >= summary["init"] and summary["images"] == 5 and summary["llm_tokens"] == 0
    assert summary["true_max"] is None  # not the demo world: no true taste
    assert summary["best_image"].startswith(str(run)) and Path(summary["best_image"]).is_file()
    saved = json.loads((run / "summary.json").read_text())
    assert (summary["init"], summary["max"], summary["k_star"]) == (saved["init"], saved["max"], saved["k_star"])
    assert f"run folder: {run}" in captured.err
