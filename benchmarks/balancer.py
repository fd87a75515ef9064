"""Triton replicas behind nginx: what two replicas behind one URL give, and what the balancer costs.

With the demo models (64x64, 20 steps, guidance 7.5), the same client throughout (the SDK's
``AsyncTxt2ImgClient``, ``--concurrency`` requests in flight):

1. the latency nginx adds: batch-1 ``txt2img``, one request at a time, to one replica directly and
   through nginx, alternating, over gRPC and HTTP (medians, and the median of paired differences);
   and the bare round trip (a readiness call), which is nginx's cost alone;
2. throughput: one replica pinned to one core, the client straight to it; the same replica behind
   nginx; two replicas pinned to one core each behind nginx (``least_conn``), the client on nginx's
   one URL; and, for reference, the same two replicas with the SDK spreading over both URLs itself.
   Both replicas run throughout (the second idles during the one-replica rows) and the rows take
   turns for ``--rounds`` rounds, so drift on the machine touches them alike; each row warms up
   (two requests per worker) before it is timed.

nginx and the client are not pinned: they share the two cores with the replicas, as they would on a
host running both. Run it alone: another busy process on these cores changes the ratio.
Results: ``benchmarks/results/<device>/balancer.{json,md}``.

    python benchmarks/balancer.py
    python benchmarks/balancer.py --quick --results DIR   # tiny pipeline, few requests: checks that it runs
    python benchmarks/balancer.py --repository DIR ...    # an exported repository instead of the demo pipeline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from ppo_client import AsyncTxt2ImgClient, GenerationRequest, Txt2ImgClient
from ppo_client.console import sigterm_as_exit
from ppo_client.triton import Endpoint, protocol_module

RESULTS = Path(__file__).parent / "results"
PROMPT = "a red circle on a blue background"
SIDE = 64


def device_name() -> str:
    return "cpu"


def txt2img_count(http_url: str) -> int:
    stats = httpx.get(f"{http_url}/v2/models/txt2img/stats", timeout=10).json()["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"])


def http_address(server) -> str:
    return server.http_url.removeprefix("http://")


class Requests:
    """Fresh seeds for every request, so no cache or repeat flatters a row."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.seed = 0

    def next(self) -> GenerationRequest:
        self.seed += 1
        return GenerationRequest(PROMPT, seed=self.seed, steps=self.steps, height=SIDE, width=SIDE)


async def _timed_run(url: str | list[str], requests: Requests, concurrency: int, count: int) -> tuple[float, list[float]]:
    """Seconds for ``count`` requests with ``concurrency`` in flight, and each one's latency (s),
    after a warm-up of two requests per worker on the same connection."""
    latencies: list[float] = []
    remaining = list(range(count))
    async with AsyncTxt2ImgClient(url) as client:
        for _ in range(2):
            await asyncio.gather(*(client.generate(requests.next()) for _ in range(concurrency)))

        async def worker():
            while remaining:
                remaining.pop()
                started = time.perf_counter()
                await client.generate(requests.next())
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return seconds, latencies


class Row:
    """One setup's throughput, gathered over rounds."""

    def __init__(self, name: str, url: str | list[str], servers: list) -> None:
        self.name, self.url, self.servers = name, url, servers
        self.seconds: list[float] = []
        self.latencies: list[float] = []
        self.served = [0] * len(servers)
        self.requests = 0

    def run(self, requests: Requests, concurrency: int, count: int) -> None:
        before = [txt2img_count(s.http_url) for s in self.servers]
        seconds, latencies = asyncio.run(_timed_run(self.url, requests, concurrency, count))
        self.served = [total + txt2img_count(s.http_url) - b for total, s, b in zip(self.served, self.servers, before, strict=True)]
        self.seconds.append(seconds)
        self.latencies += latencies
        self.requests += count
        print(f"  {self.name:<28} {count / seconds:6.2f}/s  p50 {np.percentile(latencies, 50) * 1000:7.0f} ms", flush=True)

    def result(self, concurrency: int) -> dict:
        ms = np.array(self.latencies) * 1000
        per_round = self.requests / len(self.seconds)
        return {
            "concurrency": concurrency, "requests": self.requests, "rounds": len(self.seconds),
            "throughput_per_s": self.requests / sum(self.seconds),
            "throughput_per_s_by_round": [per_round / s for s in self.seconds],
            **{f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)},
            "served_per_replica": self.served,
        }


def _paired(samples: list[tuple[float, float]]) -> dict:
    direct = [d for d, _ in samples]
    through = [n for _, n in samples]
    return {
        "samples": len(samples),
        "direct_ms_median": statistics.median(direct),
        "nginx_ms_median": statistics.median(through),
        "added_latency_ms": statistics.median(through) - statistics.median(direct),
        "paired_difference_ms_median": statistics.median(n - d for d, n in samples),
    }


def _alternating(call_direct, call_nginx, repeats: int) -> list[tuple[float, float]]:
    """(direct ms, nginx ms) pairs, the order within each pair swapped every time."""
    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    for call in (call_direct, call_nginx):  # warm connections and caches
        call()
        call()
    samples = []
    for i in range(repeats):
        if i % 2:
            n = timed(call_nginx)
            d = timed(call_direct)
        else:
            d = timed(call_direct)
            n = timed(call_nginx)
        samples.append((d, n))
    return samples


def batch1_latency(direct_url: str, nginx_url: str, requests: Requests, repeats: int) -> dict:
    with Txt2ImgClient(direct_url) as direct, Txt2ImgClient(nginx_url) as through:
        return _paired(_alternating(lambda: direct.generate(requests.next()),
                                    lambda: through.generate(requests.next()), repeats))


def round_trip(direct_url: str, nginx_url: str, repeats: int) -> dict:
    """A readiness call: no inference, so what is measured is the transport and nginx alone."""
    direct_endpoint, nginx_endpoint = Endpoint.parse(direct_url), Endpoint.parse(nginx_url)
    module = protocol_module(direct_endpoint.protocol)
    direct = module.InferenceServerClient(direct_endpoint.address)
    through = module.InferenceServerClient(nginx_endpoint.address)
    try:
        return _paired(_alternating(direct.is_server_ready, through.is_server_ready, repeats))
    finally:
        direct.close()
        through.close()


def nginx_version() -> str:
    from ppo_server.balancer.nginx import find_nginx

    done = subprocess.run([str(find_nginx()), "-v"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def report(results: dict, command: str) -> str:
    rows = [("one replica, direct", "one_direct"), ("one replica behind nginx", "one_behind_nginx"),
            ("two replicas behind nginx", "two_behind_nginx"), ("two replicas, the SDK spreading", "two_client_spread")]
    one = results["one_direct"]["throughput_per_s"]
    models = results["pipeline"].capitalize() + (" models" if results["pipeline"] in ("tiny", "demo") else "")
    lines = [
        "# Triton replicas behind nginx",
        "",
        f"{models}, txt2img {SIDE}x{SIDE}, {results['steps']} steps, guidance 7.5; "
        f"{results['cpu_count']} CPU cores, each replica pinned to one (cores {results['cores']}); nginx {results['nginx']} "
        f"(least_conn, one worker) and the client unpinned. Same client throughout (the SDK's AsyncTxt2ImgClient), "
        f"{results['concurrency']} requests in flight; {results['requests_per_round']} timed requests per row and round, "
        f"{results['rounds']} round(s), the rows taking turns.",
        "",
        "| setup | images/s | by round | vs one replica | p50 ms | p90 ms | served per replica (warm-up included) |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for label, key in rows:
        r = results[key]
        by_round = ", ".join(f"{x:.2f}" for x in r["throughput_per_s_by_round"])
        lines.append(f"| {label} | {r['throughput_per_s']:.2f} | {by_round} | {r['throughput_per_s'] / one:.2f}x | {r['p50_ms']:.0f} | "
                     f"{r['p90_ms']:.0f} | {' / '.join(map(str, r['served_per_replica']))} |")
    lines += [
        "",
        "Latency nginx adds, one request at a time to the one replica, direct and through nginx alternating (ms, medians):",
        "",
        "| call | protocol | samples | direct | through nginx | added | median paired difference |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for call, key in (("txt2img, batch 1", "latency"), ("readiness (no inference)", "round_trip")):
        for protocol, r in results[key].items():
            lines.append(f"| {call} | {protocol} | {r['samples']} | {r['direct_ms_median']:.2f} | {r['nginx_ms_median']:.2f} | "
                         f"{r['added_latency_ms']:+.2f} | {r['paired_difference_ms_median']:+.2f} |")
    lines += ["", f"Two replicas behind nginx vs one replica direct: **{results['two_behind_nginx_vs_one_ratio']:.2f}x**; "
              f"vs one replica behind nginx: {results['two_behind_nginx_vs_one_behind_nginx_ratio']:.2f}x.",
              "", f"Reproduce: `{command}` (alone on the machine)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default %(default)s)")
    parser.add_argument("--requests", type=int, default=64, help="requests per throughput row and round (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the throughput rows, taking turns (default %(default)s)")
    parser.add_argument("--latency-repeats", type=int, default=60, help="batch-1 pairs per protocol (default %(default)s)")
    parser.add_argument("--round-trip-repeats", type=int, default=300, help="readiness-call pairs per protocol (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="the tiny pipeline, 2 steps, few requests: checks that every stage runs (numbers mean nothing); "
                        "needs --results")
    parser.add_argument("--repository", help="serve this exported repository instead of exporting the pipeline")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    if args.quick:
        if not args.results:
            sys.exit("--quick needs --results DIR (its numbers must not replace the committed ones)")
        args.steps, args.concurrency, args.requests, args.rounds, args.latency_repeats, args.round_trip_repeats = 2, 4, 8, 1, 3, 10

    from ppo_demo.preset import demo_clip_dir, demo_pipeline_dir
    from ppo_server.balancer.config import BalancerConfig, Replica
    from ppo_server.balancer.nginx import NginxBalancer
    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
    from ppo_server.export.builders import build_tiny_clip, build_tiny_pipeline
    from ppo_server.export.repository import export_pipeline

    out = Path(args.results or RESULTS / device_name())
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ppo-bench-balancer-"))
    pipeline = "tiny" if args.quick else "demo"
    if args.repository:
        repository, pipeline = Path(args.repository), f"repository {Path(args.repository).name}"
    else:
        if args.quick:
            pipeline_dir, clip_dir = build_tiny_pipeline(work / "tiny"), build_tiny_clip(work / "tiny_clip")
        else:
            pipeline_dir, clip_dir = demo_pipeline_dir(), demo_clip_dir()
        repository = work / "repo"
        print("exporting the pipeline ...", flush=True)
        export_pipeline(str(pipeline_dir), repository, clip=str(clip_dir))

    cores = sorted(os.sched_getaffinity(0))[:2]
    requests = Requests(args.steps)
    results: dict = {
        "pipeline": pipeline, "steps": args.steps, "side": SIDE, "concurrency": args.concurrency,
        "requests_per_round": args.requests, "rounds": args.rounds, "cores": cores, "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "nginx": nginx_version(), "latency": {}, "round_trip": {},
    }

    def balancer(name: str, *servers) -> NginxBalancer:
        replicas = tuple(Replica(s.grpc_url, http_address(s)) for s in servers)
        return NginxBalancer(BalancerConfig(replicas, grpc_port=0, http_port=0, access_log=False), prefix=work / f"nginx-{name}")

    try:
        with EmbeddedTritonServer(ServerConfig(repository, cpus=(cores[0],))) as a, \
                EmbeddedTritonServer(ServerConfig(repository, cpus=(cores[-1],))) as b, \
                balancer("one", a) as nginx_one, balancer("two", a, b) as nginx_two:
            print("latency nginx adds (one request at a time, replica on core "
                  f"{cores[0]}, the other idle) ...", flush=True)
            for protocol, direct_url, nginx_url in (("grpc", a.grpc_url, nginx_one.grpc_url),
                                                    ("http", a.http_url, nginx_one.http_url)):
                r = results["latency"][protocol] = batch1_latency(direct_url, nginx_url, requests, args.latency_repeats)
                t = results["round_trip"][protocol] = round_trip(direct_url, nginx_url, args.round_trip_repeats)
                print(f"  {protocol}: txt2img batch 1 {r['direct_ms_median']:.1f} -> {r['nginx_ms_median']:.1f} ms "
                      f"(paired {r['paired_difference_ms_median']:+.2f} ms); readiness {t['direct_ms_median']:.2f} -> "
                      f"{t['nginx_ms_median']:.2f} ms", flush=True)
            # Both replicas run throughout (one idles while the one-replica rows run); the rows take
            # turns, round after round, so drift on the machine touches them alike.
            rows = {
                "one_direct": Row("one replica, direct", a.grpc_url, [a]),
                "one_behind_nginx": Row("one replica behind nginx", nginx_one.grpc_url, [a]),
                "two_behind_nginx": Row("two replicas behind nginx", nginx_two.grpc_url, [a, b]),
                "two_client_spread": Row("two replicas, the SDK spreading", [a.grpc_url, b.grpc_url], [a, b]),
            }
            for round_ in range(args.rounds):
                print(f"throughput, round {round_ + 1} of {args.rounds} ...", flush=True)
                for row in rows.values():
                    row.run(requests, args.concurrency, args.requests)
            for key, row in rows.items():
                results[key] = row.result(args.concurrency)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results["two_behind_nginx_vs_one_ratio"] = (
        results["two_behind_nginx"]["throughput_per_s"] / results["one_direct"]["throughput_per_s"])
    results["two_behind_nginx_vs_one_behind_nginx_ratio"] = (
        results["two_behind_nginx"]["throughput_per_s"] / results["one_behind_nginx"]["throughput_per_s"])
    results["added_batch1_latency_ms"] = {p: r["added_latency_ms"] for p, r in results["latency"].items()}
    command = "python benchmarks/balancer.py" + (" --quick --results DIR" if args.quick else "")
    (out / "balancer.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results, command)
    (out / "balancer.md").write_text(text)
    print(text)


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
