"""Batch-1 latency of the served pipeline against the in-process peers, taken in turns.

`serving.py` times the served pipeline and each peer once, minutes apart, so the machine's drift
falls on one side only: on one shared 2-core machine the served/ONNX Runtime batch-1 ratio came out
1.02x in one run and 1.40x in the next. Here the served pipeline (one warm server) and each peer
(its own environment, as in `serving.py`) take turns for several rounds, and the ratio is given
round by round with its median and range.

    python benchmarks/latency_pairs.py --rounds 4       # about 6 minutes on 2 CPU cores

Results: benchmarks/results/<device>/latency_pairs.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

import tritonclient.grpc as grpc
from serving import PEER_RUNS, RESULTS, Shapes, _requests, device_name, peer_runs, run_peer, sweep_level

from ppo_client.console import sigterm_as_exit
from ppo_demo.preset import demo_clip_dir, demo_pipeline_dir
from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
from ppo_server.export.builders import build_tiny_clip, build_tiny_pipeline
from ppo_server.export.repository import export_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=8, help="lone requests (images) per side per round; the median counts")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peers", default="onnxruntime,openvino", help=f"any of {', '.join(PEER_RUNS)}")
    parser.add_argument("--quick", action="store_true",
                        help="the tiny pipeline, 2 steps, 1 round of 2 requests, into --results (what the tests run)")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    if args.quick:
        if not args.results:
            raise SystemExit("--quick needs --results DIR (its numbers must not replace the committed ones)")
        args.rounds, args.requests, args.steps = 1, 2, 2
    peers = peer_runs(args.peers)

    work = Path(tempfile.mkdtemp(prefix="ppo-latency-"))
    if args.quick:
        pipeline_dir, clip_dir = build_tiny_pipeline(work / "tiny"), build_tiny_clip(work / "tiny_clip")
    else:
        pipeline_dir, clip_dir = demo_pipeline_dir(), demo_clip_dir()
    shapes = Shapes.of_pipeline(pipeline_dir, clip_dir)
    repository = work / "repo"
    export_pipeline(str(pipeline_dir), repository, clip=str(clip_dir))
    (work / "peers").mkdir()
    rounds: list[dict] = []
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        make = _requests("txt2img", grpc, None, args.steps, shapes)
        asyncio.run(sweep_level([server.grpc_url], "txt2img", make, 1, 2))  # warm-up
        for r in range(args.rounds):
            row = {"served_s": asyncio.run(sweep_level([server.grpc_url], "txt2img", make, 1, args.requests))["p50_ms"] / 1000}
            for run in peers:
                result = run_peer(run, pipeline_dir, work / "peers", args.steps, args.requests, ())
                if "skipped" in result:
                    raise SystemExit(result["skipped"])
                row[f"{run.key}_s"] = result["batch1_latency_s_median"]
            row["served_again_s"] = asyncio.run(sweep_level([server.grpc_url], "txt2img", make, 1, args.requests))["p50_ms"] / 1000
            rounds.append(row)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row.items()), flush=True)

    ratios = {}
    for run in peers:
        # the served side of a round: the mean of its two measurements, before and after the peer's
        per_round = [(row["served_s"] + row["served_again_s"]) / 2 / row[f"{run.key}_s"] for row in rounds]
        ratios[run.key] = {"per_round": per_round, "median": statistics.median(per_round),
                           "min": min(per_round), "max": max(per_round)}
    result = {"steps": args.steps, "requests": args.requests, "rounds": rounds, "served_vs_peer_batch1_latency": ratios}
    out = Path(args.results or RESULTS / device_name())
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency_pairs.json").write_text(json.dumps(result, indent=2) + "\n")
    name = "Tiny" if args.quick else "Demo"
    lines = [f"{name} pipeline, 64x64, {args.steps} steps, guidance 7.5; batch-1 latency (median of {args.requests} lone requests) "
             f"of the served pipeline before and after each peer's, {args.rounds} rounds.", "",
             "| round | served (before / after) | " + " | ".join(f"{r.label}" for r in peers) + " | "
             + " | ".join(f"served / {r.key}" for r in peers) + " |",
             "|---:|---:|" + "---:|" * (2 * len(peers))]
    for i, row in enumerate(rounds):
        lines.append(f"| {i + 1} | {row['served_s'] * 1000:.0f} / {row['served_again_s'] * 1000:.0f} ms | "
                     + " | ".join(f"{row[f'{r.key}_s'] * 1000:.0f} ms" for r in peers) + " | "
                     + " | ".join(f"{ratios[r.key]['per_round'][i]:.2f}x" for r in peers) + " |")
    lines.append("")
    lines += [f"served / {k}: median {v['median']:.2f}x (range {v['min']:.2f}x-{v['max']:.2f}x)" for k, v in ratios.items()]
    (out / "latency_pairs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    with sigterm_as_exit():  # the server it started stops on `kill` too
        main()
