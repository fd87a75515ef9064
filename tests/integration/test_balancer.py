"""Two Triton replicas behind nginx: clients use one URL, gRPC and HTTP, and both replicas serve.

Skipped where nginx is not installed (Debian or Ubuntu: ``apt-get install nginx``)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from ppo_client import AsyncTxt2ImgClient, GenerationRequest, Txt2ImgClient
from ppo_client.processes import free_port
from ppo_server.balancer.config import BalancerConfig, Replica
from ppo_server.balancer.nginx import NginxBalancer, find_nginx
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.errors import BalancerError
from tests.processes import processes_mentioning
from tests.triton_stats import settled, successes

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = [GenerationRequest("a red cat", seed=seed, steps=2, height=64, width=64) for seed in range(8)]
MAX_PIXEL_DIFFERENCE = 3
"""Out of 255: requests merged into other batches may differ by a rounding step or two."""


def _nginx() -> Path | None:
    try:
        return find_nginx()
    except BalancerError:
        return None


NGINX = _nginx()
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(NGINX is None, reason="needs nginx, which was not found: apt-get install nginx")]


def generate_concurrently(url: str) -> list[np.ndarray]:
    async def run():
        async with AsyncTxt2ImgClient(url) as client:
            return await asyncio.gather(*(client.generate(r) for r in REQUESTS))

    return [np.asarray(image, dtype=np.int16) for image in asyncio.run(run())]


@pytest.fixture(scope="module")
def replicas(triton_server, tiny_repository, tmp_path_factory):
    """The session's server and a second one on the same repository."""
    log = tmp_path_factory.mktemp("logs") / "triton-second.log"
    with EmbeddedTritonServer(ServerConfig(tiny_repository, log_file=log)) as second:
        yield triton_server, second


@pytest.fixture(scope="module")
def balancer(replicas, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("nginx")
    config = BalancerConfig(tuple(Replica(s.grpc_url, s.http_url.removeprefix("http://")) for s in replicas),
                            grpc_port=0, http_port=0)
    with NginxBalancer(config, prefix=prefix, binary=NGINX) as running:
        yield running
    assert processes_mentioning(str(prefix)) == [], "nginx left processes behind"


@pytest.fixture(scope="module")
def direct_images(triton_server) -> list[np.ndarray]:
    with Txt2ImgClient(triton_server.grpc_url) as client:
        return [np.asarray(client.generate(r), dtype=np.int16) for r in REQUESTS]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_requests_through_one_url_are_served_by_both_replicas(balancer, replicas, direct_images, protocol):
    url = balancer.grpc_url if protocol == "grpc" else balancer.http_url
    before = [successes(s) for s in replicas]
    images = generate_concurrently(url)
    served = settled(lambda: [successes(s) for s in replicas], before, len(REQUESTS))
    assert sum(served) == len(REQUESTS)
    assert min(served) > 0, f"both replicas should serve through nginx, served {served}"
    for seed, (through, direct) in enumerate(zip(images, direct_images, strict=True)):
        difference = int(np.abs(through - direct).max())
        assert difference <= MAX_PIXEL_DIFFERENCE, f"seed {seed}: {difference}/255 from the replica's own answer"


def test_the_access_log_names_the_replica_that_served(balancer, replicas):
    with Txt2ImgClient(balancer.grpc_url) as client:
        client.generate(REQUESTS[0])
    last = [line for line in (balancer.prefix / "access.log").read_text().splitlines() if "ModelInfer" in line][-1]
    upstream = next(part for part in last.split() if part.startswith("upstream=")).removeprefix("upstream=")
    assert upstream in {s.grpc_url for s in replicas}


def test_a_replica_that_refuses_connections_is_skipped(triton_server, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    config = BalancerConfig((Replica(dead, dead), Replica(triton_server.grpc_url, triton_server.http_url.removeprefix("http://"))),
                            grpc_port=0, http_port=0)
    with NginxBalancer(config, prefix=tmp_path / "nginx", binary=NGINX) as balancer:
        for url in (balancer.grpc_url, balancer.http_url):
            assert len(generate_concurrently(url)) == len(REQUESTS)


def test_the_command_serves_until_sigterm(replicas, tmp_path):
    command = [sys.executable, "-m", "ppo_server.balancer", "--grpc-port", "0", "--http-port", "0", "--prefix", str(tmp_path),
               "--nginx", str(NGINX)]
    for server in replicas:
        command += ["--replica", server.grpc_url, server.http_url.removeprefix("http://")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        addresses = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(2))
        with Txt2ImgClient(addresses["grpc"]) as client:
            client.generate(REQUESTS[0])
        assert httpx.get(f"{addresses['http']}/v2/health/ready", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert processes_mentioning(str(tmp_path)) == []


def test_the_quick_benchmark_runs(tiny_repository, tmp_path):
    """``benchmarks/balancer.py --quick`` on the tiny repository, a few requests, so the benchmark cannot
    rot (its numbers mean nothing and are not checked)."""
    command = [sys.executable, str(ROOT / "benchmarks" / "balancer.py"), "--quick", "--results", str(tmp_path),
               "--repository", str(tiny_repository)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "balancer.json").read_text())
    assert results["steps"] == 2 and results["two_behind_nginx"]["requests"] == 8
    assert results["two_behind_nginx"]["throughput_per_s"] > 0 and results["one_direct"]["throughput_per_s"] > 0
    assert min(results["two_behind_nginx"]["served_per_replica"]) > 0
    assert "added_latency_ms" in results["latency"]["grpc"]
    assert (tmp_path / "balancer.md").read_text().startswith("#")
