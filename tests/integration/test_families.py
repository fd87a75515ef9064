"""The checkpoint families people run, each as a tiny random pipeline shaped like the real one, through
`ppo-export --model`, the embedded server and `ppo-client generate`, against diffusers in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
from PIL import Image

from ppo_client import contract
from ppo_client.cli import main as client_main
from ppo_client.generation import GenerationRequest
from ppo_client.triton import txt2img_inputs
from ppo_server.export.builders import build_tiny_family
from ppo_server.export.cli import main as export_main
from ppo_server.reference import render

pytestmark = [pytest.mark.integration, pytest.mark.isa]


@dataclasses.dataclass(frozen=True)
class Case:
    second: str
    """A named scheduler to compare besides the checkpoint's own."""
    steps: int = 4
    guidance: float = 5.0
    rescale: float = 0.0
    height: int = 64
    width: int = 96


CASES = {
    "sd15-dpm-karras": Case(second="euler_a"),
    "sd15-euler-a": Case(second="dpm_multistep"),
    "sd2-v": Case(second="euler", rescale=0.7, height=96, width=64),
    "sdxl": Case(second="dpm_multistep_karras"),
    "sdxl-turbo": Case(second="lcm", steps=2, guidance=0.0),
}


@pytest.fixture(scope="module", params=list(CASES))
def family(request, tmp_path_factory, tiny_clip_dir):
    """One family's pipeline, exported with `ppo-export --model` and served; shared by its tests."""
    from diffusers import DiffusionPipeline

    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig

    name = request.param
    root = tmp_path_factory.mktemp(name)
    folder = build_tiny_family(root / "pipeline", name)
    repository = root / "repository"
    assert export_main(["--model", str(folder), "--clip", str(tiny_clip_dir), "--out", str(repository)]) == 0
    reference = DiffusionPipeline.from_pretrained(folder)
    reference.set_progress_bar_config(disable=True)
    with EmbeddedTritonServer(ServerConfig(repository, log_file=root / "triton.log")) as server:
        yield name, CASES[name], server, reference, repository


def test_served_images_match_diffusers_in_process_at_two_schedulers(family, tmp_path, capsys):
    name, case, server, reference, repository = family
    report = json.loads((repository / "export_report.json").read_text())
    assert report["family"] == ("sdxl" if name.startswith("sdxl") else "sd")
    for scheduler in ("", case.second):
        request = GenerationRequest(
            "a lighthouse at dusk", seed=7, steps=case.steps, guidance_scale=case.guidance, height=case.height,
            width=case.width, negative_prompt="fog" if case.guidance > 1 else "", scheduler=scheduler,
            guidance_rescale=case.rescale,
        )
        out = tmp_path / f"{scheduler or 'own'}.png"
        args = ["generate", "--prompt", request.prompt, "--negative-prompt", request.negative_prompt, "--seed", "7",
                "--steps", str(case.steps), "--guidance", str(case.guidance), "--height", str(case.height),
                "--width", str(case.width), "--scheduler", scheduler, "--guidance-rescale", str(case.rescale),
                "--out", str(out), "--url", server.grpc_url]
        assert client_main(args) == 0, capsys.readouterr().err
        served = np.asarray(Image.open(out))
        expected = render(reference, request)
        diff = int(np.abs(served.astype(int) - expected.astype(int)).max())
        print(f"parity {name} {scheduler or 'own'}: {diff}/255")
        assert served.shape == (case.height, case.width, 3) and served.std() > 1.0
        assert diff <= 3, f"{name} {scheduler or 'own'}: {diff}/255"


def test_every_offered_scheduler_renders_or_refuses_each_step_count_and_serving_goes_on(family, capsys):
    name, case, server, _, _ = family
    assert client_main(["models", "--url", server.grpc_url]) == 0
    listing = capsys.readouterr().out
    assert f"family {'sdxl' if name.startswith('sdxl') else 'sd'}" in listing and "schedulers: default" in listing
    rows = [GenerationRequest("a red cat", seed=s, steps=s, guidance_scale=case.guidance, height=64, width=64, scheduler=n)
            for n in ("", *contract.SCHEDULERS) for s in (1, 2, 4, 20)]

    async def run():
        client = grpcaio.InferenceServerClient(server.grpc_url)
        results = await asyncio.gather(*(client.infer("txt2img", txt2img_inputs(grpcaio, [r])) for r in rows),
                                       return_exceptions=True)
        await client.close()
        return results

    results = asyncio.run(run())
    refused = []
    for row, result in zip(rows, results, strict=True):
        if isinstance(result, Exception):
            assert result.status() == "StatusCode.INVALID_ARGUMENT", f"{row.scheduler} x {row.steps}: {result}"
            assert "STEPS: scheduler" in result.message() and f"cannot run {row.steps} steps" in result.message()
            refused.append((row.scheduler, row.steps))
        else:
            assert result.as_numpy("IMAGE").shape == (1, 64, 64, 3)
    print(f"{name}: {len(rows) - len(refused)} of {len(rows)} scheduler x steps rendered; refused {refused}")
    assert set(refused) <= {("pndm", 1), ("pndm", 2)}, refused
    assert httpx.get(f"{server.http_url}/v2/health/ready").status_code == 200


@pytest.mark.parametrize("family", ["sdxl"], indirect=True)
def test_an_sdxl_repository_scores_and_optimizes_unchanged(family, tmp_path):
    _, _, server, _, _ = family
    store = str(tmp_path / "store.sqlite")
    lines = ["image,rating"]
    for i in range(10):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png,{1 + i}")
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    assert client_main(["user", "create", "ana", "--store", store]) == 0
    assert client_main(["user", "import", "ana", "--csv", str(tmp_path / "r.csv"), "--store", store]) == 0
    assert client_main(["user", "train", "ana", "--method", "knn", "--store", store, "--url", server.grpc_url]) == 0
    run = tmp_path / "run"
    assert client_main(["optimize", "--user", "ana", "--prompt", "a red cat", "--optimizer", "random", "--iterations", "1",
                        "--n-prompts", "2", "--seeds", "1", "--steps", "2", "--guidance", "3", "--subject-guard", "0",
                        "--run-dir", str(run), "--store", store, "--url", server.grpc_url]) == 0
    records = [json.loads(line) for line in (run / "iterations.jsonl").read_text().splitlines()]
    assert [len(r["prompts"]) for r in records] == [3, 2]
    assert all(np.isfinite(p["score"]) for r in records for p in r["prompts"])
