"""The serving benchmark's quick mode (``benchmarks/serving.py --quick``): the tiny pipeline, 2 steps,
against the peer runtimes in their own virtualenvs, the GEMM peak and the UNet's FLOPs, so that the
benchmark cannot rot. No timing is asserted: the numbers of a quick run mean nothing.

The peers' environments are made from PyPI on first use (minutes, then cached); where they cannot be
made the test is skipped with pip's reason."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]


def load_environments():
    spec = importlib.util.spec_from_file_location("peers_environments", ROOT / "benchmarks" / "peers" / "environments.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def peer_environments():
    pytest.importorskip("torch")
    environments = load_environments()
    for peer in environments.PEERS:
        try:
            environments.ensure(peer)
        except environments.PeerUnavailable as exc:
            pytest.skip(f"the {peer.name} peer's environment could not be made: {exc}")
    return environments


@pytest.fixture(scope="module")
def quick_run(peer_environments, tmp_path_factory):
    out = tmp_path_factory.mktemp("serving_quick")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--quick", "--results", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_every_peer_runs_and_gets_the_served_ratios_in_the_summary(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pipeline"] == "tiny" and summary["steps"] == 2
    for peer in ("onnxruntime", "openvino", "openvino_f32"):
        assert summary[f"{peer}_best_batch_images_per_s"] > 0
        assert summary[f"served_vs_{peer}_best_batch_throughput_ratio"] > 0
        assert summary[f"served_vs_{peer}_batch1_latency_ratio"] > 0
    assert summary["openvino_f32_precision"] == "f32"
    assert summary["best_peer"] in ("onnxruntime", "openvino", "openvino-f32")


def test_fp32_peers_make_the_same_image_as_diffusers(quick_run):
    """Same weights, scheduler, seed and guidance: the peers at fp32 compute the same pipeline."""
    out, _ = quick_run
    peers = json.loads((out / "serving.json").read_text())["peers"]
    assert peers["onnxruntime"]["max_pixel_diff_vs_diffusers"] <= 3
    assert peers["openvino-f32"]["max_pixel_diff_vs_diffusers"] <= 3


def test_the_machine_limit_and_fractions_of_peak_are_reported(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    results = json.loads((out / "serving.json").read_text())
    assert summary["gemm_fp32_gflops"] > 0
    assert summary["unet_gflops_per_row"] > 0
    assert results["machine_limit"]["unet"]["fixed_flops"] == 0
    for key in ("served_unet_fraction_of_fp32_peak", "served_pipeline_unet_fraction_of_fp32_peak",
                "onnxruntime_pipeline_unet_fraction_of_fp32_peak", "openvino_pipeline_unet_fraction_of_fp32_peak"):
        assert 0 < summary[key]


def test_the_table_shows_the_peers_and_quick_runs_leave_out_scale_out(quick_run):
    out, stdout = quick_run
    table = (out / "serving.md").read_text()
    assert "| optimum-onnx (ONNX Runtime) | fp32 |" in table
    assert "| optimum-intel (OpenVINO), f32 | f32 |" in table
    assert "two_servers_vs_one_throughput_ratio" not in json.loads((out / "summary.json").read_text())
    assert "served_vs_best_peer_throughput_ratio" in stdout


def test_quick_mode_refuses_to_write_over_the_committed_results():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "--quick needs --results" in done.stderr


def test_the_latency_in_turns_benchmark_runs_every_peer_between_two_served_measurements(peer_environments, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latency_pairs.py"), "--quick", "--results", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "latency_pairs.json").read_text())
    assert result["steps"] == 2 and len(result["rounds"]) == 1
    assert set(result["rounds"][0]) == {"served_s", "onnxruntime_s", "openvino_s", "served_again_s"}
    assert all(value > 0 for value in result["rounds"][0].values())
    for peer in ("onnxruntime", "openvino"):
        ratio = result["served_vs_peer_batch1_latency"][peer]
        assert ratio["min"] <= ratio["median"] <= ratio["max"] and len(ratio["per_round"]) == 1
    assert "served / onnxruntime: median" in (tmp_path / "latency_pairs.md").read_text() and "Tiny pipeline" in done.stdout
