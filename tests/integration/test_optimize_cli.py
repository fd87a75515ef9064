"""`ppo-client optimize` against the real Triton server (tiny models) and the real local LLM."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from ppo_client.app.runs import RunManager
from ppo_client.cli import main
from ppo_client.llm.chat import ChatConfig
from ppo_client.optimize.config import RunConfig
from tests.processes import processes_mentioning

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(triton_server, tmp_path_factory):
    """A store with one user who has a knn model on the tiny encoder, and one with no model."""
    root = tmp_path_factory.mktemp("optimize")
    rng = np.random.default_rng(0)
    lines = ["image,rating"]
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
        lines.append(f"{i}.png,{1 + i % 10}")
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    path = str(root / "store.sqlite")
    assert main(["user", "create", "ana", "--store", path]) == 0
    assert main(["user", "import", "ana", "--csv", str(root / "ratings.csv"), "--store", path]) == 0
    assert main(["user", "train", "ana", "--method", "knn", "--store", path, "--url", triton_server.grpc_url]) == 0
    assert main(["user", "create", "bob", "--store", path]) == 0
    return path


def optimize(triton_server, store, *args):
    return main(["optimize", "--store", store, "--url", triton_server.grpc_url, "--steps", "2", *args])


@pytest.mark.parametrize("optimizer", ["random", "ga"])
def test_a_baseline_run_leaves_a_complete_folder(triton_server, store, tmp_path, optimizer, capsys):
    run = tmp_path / "run"
    args = ["--user", "ana", "--prompt", "a red cat", "--iterations", "2", "--n-prompts", "3", "--seeds", "2",
            "--optimizer", optimizer, "--run-dir", str(run), "--subject-guard", "0", "--guidance", "3"]
    assert optimize(triton_server, store, *args) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    assert [len(r["prompts"]) for r in records] == [4, 3, 3]
    assert records[0]["prompts"][0]["prompt"] == "a red cat" and records[0]["prompts"][0]["initial"]
    assert all(r["seeds"] == [0, 1] for r in records)
    summary = json.loads((run / "summary.json").read_text())
    assert {"max", "init", "max_minus_init", "k_star", "max_sim", "score_of_most_sim"} <= set(summary)
    assert summary["images"] == 20 and len(list((run / "images").rglob("*.png"))) == 20
    assert "<svg" in (run / "report.html").read_text()
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["optimizer"] == optimizer and config["scorer"].startswith("user:ana")
    assert config["config"]["guidance_scale"] == 3.0
    # resuming a finished run does nothing but rewrite the report
    assert optimize(triton_server, store, "--resume", str(run)) == 0
    assert len((run / "iterations.jsonl").read_text().splitlines()) == 3


def test_bad_requests_get_clear_errors(triton_server, store, tmp_path, capsys):
    base = ["--prompt", "a red cat", "--optimizer", "random", "--run-dir", str(tmp_path / "r")]
    assert optimize(triton_server, store, "--user", "nobody", *base) == 2
    assert optimize(triton_server, store, "--user", "bob", *base) == 2
    assert optimize(triton_server, store, "--user", "ana", "--prompt", " ", "--optimizer", "random") == 2
    assert optimize(triton_server, store, "--user", "ana", *base, "--seeds", "20") == 2
    assert optimize(triton_server, store, "--user", "ana", *base, "--guidance", "-1") == 2
    assert optimize(triton_server, store, "--user", "ana", *base, "--context", "s+p+f+I", "--optimizer", "llm") == 2
    err = capsys.readouterr().err
    assert "unknown user 'nobody'" in err and "'bob' has no trained model" in err and "prompt: is empty" in err
    assert "seeds: must be an integer from 1 to 8" in err and "text-only" in err and "guidance_scale: must be a number from 0" in err
    assert main(["optimize", "--user", "ana", "--prompt", "a cat", "--optimizer", "random", "--store", store,
                 "--url", "127.0.0.1:9", "--run-dir", str(tmp_path / "x")]) == 1
    assert "cannot reach the Triton server" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_the_llm_optimizer_with_feedback_runs_on_the_local_llm(triton_server, store, tmp_path):
    llm_servers_before = set(processes_mentioning("llama_cpp.server"))
    run = tmp_path / "llm"
    args = ["--user", "ana", "--prompt", "a red cat on a blue sofa", "--iterations", "1", "--n-prompts", "2",
            "--seeds", "1", "--optimizer", "llm", "--context", "s+p+f", "--run-dir", str(run), "--subject-guard", "0"]
    assert optimize(triton_server, store, *args) == 0
    records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    assert [c["purpose"] for c in records[0]["llm_calls"]][0] == "diversify"
    assert [c["purpose"] for c in records[1]["llm_calls"]][:2] == ["feedback", "propose"]
    assert records[1]["feedback"] and len(records[1]["prompts"]) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["timings"]["llm_s"] > 0 and summary["iterations_done"] == 1
    # the local LLM it started (on its own port) was stopped; other jobs' LLM servers may come and go
    assert set(processes_mentioning("llama_cpp.server")) <= llm_servers_before


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_the_mix_optimizer_runs_on_the_local_llm_and_names_every_prompts_proposer(triton_server, store, tmp_path, capsys):
    run = tmp_path / "mix"
    args = ["--user", "ana", "--prompt", "a red cat on a blue sofa", "--iterations", "1", "--n-prompts", "2",
            "--seeds", "1", "--optimizer", "mix", "--context", "s+p", "--screen", "4", "--run-dir", str(run),
            "--subject-guard", "0"]
    assert optimize(triton_server, store, *args) == 0
    records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    for record in records:
        assert set(record["pool"]) == {"llm", "evo", "ga", "random"}
        assert sum(v["candidates"] for v in record["pool"].values()) == 8  # K x N, whatever the LLM gave
        assert all(p["proposer"] in record["pool"] for p in record["prompts"] if not p.get("initial"))
    assert {c["purpose"] for c in records[1]["llm_calls"]} <= {"propose", "evolve"}
    assert any(c["purpose"] == "evolve" for r in records for c in r["llm_calls"])
    assert "rendered prompts by proposer" in capsys.readouterr().out


def test_a_server_that_goes_away_mid_run_loses_no_finished_iteration(triton_server, tiny_repository, store, tmp_path):
    import subprocess
    import sys
    import time

    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig

    run = tmp_path / "run"
    with EmbeddedTritonServer(ServerConfig(tiny_repository)) as doomed:
        command = [sys.executable, "-m", "ppo_client.cli", "optimize", "--user", "ana", "--prompt", "a red cat",
                   "--optimizer", "random", "--iterations", "40", "--n-prompts", "2", "--seeds", "1", "--steps", "2",
                   "--run-dir", str(run), "--store", store, "--url", doomed.grpc_url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            path = run / "iterations.jsonl"
            if path.exists() and len(path.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        doomed.stop()
        _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "finished iterations are saved" in err and f"--resume {run}" in err
    done = len((run / "iterations.jsonl").read_text().splitlines())
    assert 2 <= done < 41
    assert main(["optimize", "--resume", str(run), "--store", store, "--url", triton_server.grpc_url]) == 0
    records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(41))


def test_an_unreachable_llm_endpoint_is_reported(triton_server, store, tmp_path, capsys):
    args = ["--user", "ana", "--prompt", "a red cat", "--optimizer", "llm", "--context", "s+p", "--iterations", "1",
            "--run-dir", str(tmp_path / "r"), "--llm-url", "http://127.0.0.1:9/v1"]
    assert optimize(triton_server, store, *args) == 1
    assert "the chat endpoint http://127.0.0.1:9/v1 failed 4 times" in capsys.readouterr().err


def test_the_default_arm_needs_no_llm_and_says_when_a_given_endpoint_goes_unused(triton_server, store, tmp_path, capsys):
    run = tmp_path / "r"
    args = ["--user", "ana", "--prompt", "a red cat", "--iterations", "1", "--n-prompts", "2", "--seeds", "1",
            "--run-dir", str(run), "--subject-guard", "0", "--llm-url", "http://127.0.0.1:9/v1"]  # nothing listens there
    assert optimize(triton_server, store, *args) == 0
    assert "does not use the LLM endpoint http://127.0.0.1:9/v1" in capsys.readouterr().err
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["optimizer"], config["screen"], config["exploration"]) == ("ga", 32, 0.0)
    records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    assert records[1]["screen"]["candidates"] == 64 and not any(r["llm_calls"] for r in records)


def test_a_user_linked_to_a_virtual_user_gets_the_true_taste_of_every_image(triton_server, store, tmp_path):
    from ppo_client.store import UserStore
    from ppo_demo.personas import make_persona, score_image
    from ppo_demo.truth import link_persona

    spec = make_persona("warm-minimalist", 3).to_dict()
    with UserStore(store) as users:
        link_persona(users, "ana", spec)
    try:
        run = tmp_path / "run"
        args = ["--user", "ana", "--prompt", "a red cat", "--iterations", "1", "--n-prompts", "2", "--seeds", "1",
                "--optimizer", "random", "--run-dir", str(run), "--subject-guard", "0"]
        assert optimize(triton_server, store, *args) == 0
        config = json.loads((run / "config.json").read_text())
        assert config["truth"] == {"provider": "personas", "spec": {"personas": [spec]}}
        records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
        first = records[0]["prompts"][0]
        persona = make_persona("warm-minimalist", 3)
        expected = score_image(persona, np.asarray(Image.open(run / first["images"][0]).convert("RGB")))
        assert first["true_scores"][0] == pytest.approx(expected, abs=1e-6)
        assert "true_max_minus_init" in json.loads((run / "summary.json").read_text())
    finally:
        with UserStore(store) as users:
            with users.transaction() as db:
                db.exec_driver_sql("DELETE FROM demo_personas")


def test_previews_cost_fewer_unet_evaluations_and_a_chosen_prompt_renders_as_it_would_alone(triton_server, store, tmp_path):
    """The recorded cost is what the served UNet did (its statistics), a preview costs fewer UNet
    evaluations than a full render, and the full render of a previewed candidate is the image that
    prompt gives at that seed when generated on its own."""
    import httpx

    from ppo_client.generation import GenerationRequest
    from ppo_client.txt2img import Txt2ImgClient

    def unet_rows():
        stats = httpx.get(f"{triton_server.http_url}/v2/models/unet/stats", timeout=10).json()["model_stats"][0]
        return stats["inference_count"]

    run = tmp_path / "run"
    before = unet_rows()
    assert optimize(triton_server, store, "--user", "ana", "--prompt", "a red cat", "--iterations", "1", "--n-prompts", "2",
                    "--seeds", "2", "--optimizer", "ga", "--screen", "3", "--preview-steps", "1", "--steps", "3",
                    "--guidance", "3", "--run-dir", str(run), "--subject-guard", "0") == 0
    served = unet_rows() - before
    records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    assert served == sum(r["cost"]["total_unet"] for r in records)
    for r in records:
        cost = r["cost"]
        assert len(r["preview"]["prompts"]) == 4 and cost["preview_images"] == 8  # preview x N, 2 seeds each
        assert cost["preview_unet"] == 1 * 8 * 2 and cost["scheduler"] in ("pndm", "PNDMScheduler")
        assert cost["preview_unet"] / cost["preview_images"] < cost["unet"] / cost["images"]
    chosen = records[1]["prompts"][0]
    assert chosen["prompt"] in records[1]["preview"]["prompts"] and chosen["preview_score"] is not None
    with Txt2ImgClient(triton_server.grpc_url) as client:
        for j, seed in enumerate(records[1]["seeds"]):
            alone = np.asarray(client.generate(GenerationRequest(chosen["prompt"], seed=seed, steps=3, guidance_scale=3)), np.int16)
            saved = np.asarray(Image.open(run / chosen["images"][j]).convert("RGB"), np.int16)
            assert np.abs(alone - saved).max() <= 1  # batch shapes may move a value by 1/255 on a CPU


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_sigterm_stops_an_experiment_after_its_iterations_in_flight_and_stops_the_local_llm(triton_server, store, tmp_path):
    """`kill`, `timeout` or a service manager ends a command with SIGTERM: runs not started never start,
    running ones stop after the iteration they are in, and the local LLM the command started goes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    llm_servers_before = set(processes_mentioning("llama_cpp.server"))
    out = tmp_path / "exp"
    command = [sys.executable, "-m", "ppo_client.cli", "experiment", "--users", "ana", "--prompt", "a red cat", "--optimizers", "llm",
               "--contexts", "s+p", "--repeats", "4", "--iterations", "40", "--n-prompts", "2", "--seeds", "1", "--steps", "2",
               "--subject-guard", "0", "--parallel", "2", "--store", store, "--url", triton_server.grpc_url, "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "PPO_LLM_MODEL")}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and process.poll() is None:
                if any(len(p.read_text().splitlines()) >= 2 for p in out.glob("runs/*/*/*/iterations.jsonl")):
                    break
                time.sleep(0.2)
            started = set(processes_mentioning("llama_cpp.server")) - llm_servers_before
            assert started, "the experiment started no local LLM"
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 143, err
    assert "terminated" in err
    runs = list(out.glob("runs/*/*/*/iterations.jsonl"))
    assert 1 <= len(runs) <= 2, "runs not started when it was stopped must not start"
    assert all(len(p.read_text().splitlines()) < 41 for p in runs)
    assert not started & set(processes_mentioning("llama_cpp.server"))


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_stopping_the_app_stops_its_runs_after_their_iteration_and_the_local_llm_they_started(triton_server, store, tmp_path,
                                                                                              monkeypatch):
    """The app's runs work in threads that die with the process; stopping the app first stops them at
    an iteration's end, so a run's local LLM server is stopped, not orphaned, and the run resumes."""
    import time
    llm_servers_before = set(processes_mentioning("llama_cpp.server"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    runs = RunManager(store, triton_server.grpc_url, tmp_path / "runs", ChatConfig.from_env())
    run_id = runs.start(RunConfig(user="ana", prompt="a red cat", iterations=40, n_prompts=2, seeds=1, steps=2, subject_guard=0,
                                  optimizer="mix", exploration=1.0))
    records = tmp_path / "runs" / run_id / "iterations.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and runs.running(run_id):
        if records.exists() and len(records.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    started = set(processes_mentioning("llama_cpp.server")) - llm_servers_before
    assert started, "the mix started no local LLM"
    assert runs.active() == [run_id]
    assert runs.stop(timeout_s=120) == []
    assert runs.active() == [] and runs.status(run_id)["status"] == "stopped"
    assert 2 <= len(records.read_text().splitlines()) < 41
    assert not started & set(processes_mentioning("llama_cpp.server"))
