"""Blind comparison in the demo world: does a virtual user, answering the app's blind pairs with
their own noisy ratings, prefer the optimized prompt's images to their own prompt's?

For each of the first N virtual users of a demo SAC-format set (imported and trained with ``bayes``
as ``make demo`` does) and each prompt, a ``--iterations``-iteration optimization runs through
``ppo-client experiment`` (one resumable folder per run). Then the app's own comparison code
(``ppo_client.app.compare``) renders each run's pairs at fresh seeds, shuffles the sides, and the
persona answers every pair: it rates both images as it rated the set (noise-free taste plus its
rating noise, rounded to 1-10) and picks the higher, or "same" on a tie. Win rates count "same" as
half and come with Wilson 95% intervals over all pairs of an arm.

    make demo                                           # the demo rating set, reused here
    python benchmarks/blind_comparison.py               # llm s+p and random, 8 users x 2 prompts
    python benchmarks/blind_comparison.py --optimizers mix --screen 4 --work build/blind-mix   # another arm

Results: ``benchmarks/results/app/blind_comparison.{json,md}``. Run folders and the store are kept
under ``--work``, so the same command again resumes a stopped benchmark.

``--shard I/N`` runs shard I of N of the experiment's grid and answers the pairs of its runs only,
then stops without writing results; the same command without ``--shard``, on a ``--work`` holding
every shard's run folders, skips what the shards did and writes the results
(docs/optimization.md#grids-across-machines).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import time
from pathlib import Path

import numpy as np

from ppo_client.app import compare
from ppo_client.cli import main as cli
from ppo_client.console import sigterm_as_exit
from ppo_client.errors import InvalidRequestError
from ppo_client.images import decode_rgb
from ppo_client.optimize.shards import Shard, manifest_path
from ppo_client.sac import read_sac
from ppo_client.store import UserStore
from ppo_demo.attributes import measure
from ppo_demo.personas import Persona, rate
from ppo_demo.sac import read_personas
from ppo_demo.truth import link_persona

RESULTS = Path(__file__).parent / "results" / "app"
PROMPTS = ("a red circle on a blue background", "a small yellow star on a striped green background")


def step(*argv: str) -> None:
    code = cli(list(argv))
    if code:
        raise SystemExit(f"`ppo-client {' '.join(argv[:2])}` failed with exit code {code}")


@contextlib.contextmanager
def preparing(work: Path):
    """One process at a time prepares a work folder (exports the models, makes and trains the users),
    so that a benchmark's shards can share one ``--work``; the others wait here."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".prepare.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def triton(args):
    if args.url:
        yield args.url
        return
    from ppo_demo.preset import demo_clip_dir, demo_pipeline_dir
    from ppo_server.embedded.server import EmbeddedTritonServer, ServerConfig
    from ppo_server.export.repository import export_pipeline

    repository = Path(args.work) / "repository"
    with preparing(Path(args.work)):
        if not (repository / "txt2img").exists():
            export_pipeline(str(demo_pipeline_dir()), repository, clip=str(demo_clip_dir()))
    with EmbeddedTritonServer(ServerConfig(repository)) as server:
        yield server.grpc_url


def prepare_users(args, url: str, store: Path) -> list[str]:
    sac = read_sac(Path(args.sac))
    personas = read_personas(Path(args.sac))
    sids = sorted(s for s in sac.ratings if s in personas)[: args.users]
    names = []
    for sid in sids:
        name = f"u{sid}"
        with UserStore(store) as users:
            trained = users.has_user(name) and users.models(name)
            fresh = not users.has_user(name)
        if fresh:
            step("user", "create", name, "--store", str(store))
            step("user", "import", name, "--sac", args.sac, "--sid", str(sid), "--images-root", str(Path(args.sac).parent),
                 "--store", str(store))
            with UserStore(store) as users:
                link_persona(users, name, personas[sid])
        if not trained:
            step("user", "train", name, "--method", "bayes", "--prior-sac", args.sac, "--store", str(store), "--url", url)
        names.append(name)
    return names


def run_personas(stored: dict) -> list[dict]:
    """The virtual users behind a run, from its ``config.json`` (older runs kept them under ``personas``)."""
    truth = stored.get("truth") or {}
    return truth.get("spec", {}).get("personas") or stored.get("personas") or []


def answer_pairs(folder: Path, client, store: Path, rng: np.random.Generator) -> dict:
    """The persona behind the run answers its blind pairs, as a person would in the app."""
    stored = json.loads((folder / "config.json").read_text())
    persona = Persona.from_dict(run_personas(stored)[0])
    user = stored["config"]["user"]
    pairs = compare.prepare(folder, client, store)
    result = compare.win_rate(pairs)
    for pair in pairs:
        if pair["choice"]:
            continue  # answered before a restart
        with UserStore(store, check=False) as users:
            left, right = (rate(persona, measure(np.asarray(decode_rgb(users.image(h).data, h))), rng)
                           for h in (pair["left"], pair["right"]))
        choice = "left" if left > right else "right" if right > left else "same"
        result = compare.answer(folder, pair["k"], choice, store, user)
    return result


def pooled(results: list[dict]) -> dict:
    n = sum(r["answered"] for r in results)
    wins = sum(r["optimized_preferred"] for r in results)
    same = sum(r["same"] for r in results)
    rate_ = (wins + 0.5 * same) / n
    per_run = [r["win_rate"] for r in results]
    return {"runs": len(results), "pairs": n, "optimized_preferred": wins, "same": same,
            "initial_preferred": n - wins - same, "win_rate": rate_, "interval": compare.wilson(rate_, n),
            "per_run_mean": float(np.mean(per_run)), "per_run_sd": float(np.std(per_run)),
            "runs_won": sum(w > 0.5 for w in per_run)}


@contextlib.contextmanager
def world(args):
    """The work folder, its store, the served demo models and the virtual users, trained:
    ``(work, store, url, users)``."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store.sqlite"
    with triton(args) as url:
        with preparing(work):
            users = prepare_users(args, url, store)
        yield work, store, url, users


def shard_flags(args) -> list[str]:
    """``--shard I/N`` for ``ppo-client experiment`` where the benchmark was given one."""
    return ["--shard", args.shard] if args.shard else []


def run_folders(experiment: Path, args) -> list[tuple[int, Path]]:
    """The experiment's run folders in order, each with its position in the whole grid's (what seeds
    the persona's answers to that run, so a shard answers as the unsharded benchmark would); with
    ``--shard``, that shard's runs only (its manifest names them)."""
    if not args.shard:
        return list(enumerate(sorted((experiment / "runs").glob("*/*/*"))))
    manifest = json.loads(manifest_path(experiment, Shard.parse(args.shard)).read_text())
    order = sorted(manifest["grid"]["runs"], key=Path)  # as the unsharded glob sorts the folders
    position = {key: i for i, key in enumerate(order)}
    return [(position[key], experiment / "runs" / key) for key in sorted(manifest["runs"], key=position.get)]


def stop_after_shard(args, what: str) -> bool:
    """With ``--shard``: say what is left to do and return True (the caller writes no results)."""
    if not args.shard:
        return False
    print(f"shard {args.shard} done ({what}); when every shard is, run the same command without --shard on a "
          "--work that holds every shard's run folders: it skips what the shards did and writes the results", flush=True)
    return True


def run(args) -> dict:
    from ppo_client.scoring import ScoringClient

    started = time.perf_counter()
    with world(args) as (work, store, url, users):
        arms = args.optimizers.split(",")
        argv = ["experiment", "--users", ",".join(users), "--optimizers", ",".join(arms), "--contexts", args.context,
                "--iterations", str(args.iterations), "--n-prompts", "4", "--seeds", "2", "--steps", "20",
                "--screens", args.screen, "--explore", str(args.explore), "--preview-steps", str(args.preview_steps),
                "--out", str(work / "experiment"), "--parallel", str(args.parallel), "--store", str(store), "--url", url,
                *shard_flags(args)]
        for prompt in PROMPTS[: args.prompts]:
            argv += ["--prompt", prompt]
        step(*argv)
        rows = []
        with ScoringClient(url) as client:
            for position, folder in run_folders(work / "experiment", args):
                arm = folder.name.rsplit("-r", 1)[0].replace("_", " ")
                summary = json.loads((folder / "summary.json").read_text())
                result = answer_pairs(folder, client, store, np.random.default_rng(position))
                rows.append({"run": str(folder.relative_to(work)), "arm": arm, **result,
                             "true_max_minus_init": summary.get("true_max_minus_init"),
                             "best_rewrite": json.loads((folder / compare.COMPARE).read_text())["best_rewrite"]})
                print(f"{rows[-1]['run']}: win rate {result['win_rate']:.2f} ({result['answered']} pairs)", flush=True)
    if stop_after_shard(args, f"{len(rows)} runs optimized and their pairs answered"):
        return {}
    by_arm = {arm: pooled([r for r in rows if r["arm"] == arm]) for arm in dict.fromkeys(r["arm"] for r in rows)}
    return {"sac": Path(args.sac).name, "users": len(users), "prompts": list(PROMPTS[: args.prompts]), "iterations": args.iterations,
            "pairs_per_run": compare.PAIRS, "by_arm": by_arm, "rows": rows, "seconds": time.perf_counter() - started}


def markdown(result: dict) -> str:
    lines = [f"{result['users']} demo users x {len(result['prompts'])} prompts, {result['iterations']} iterations each; "
             f"{result['pairs_per_run']} blind pairs per run at fresh seeds, answered by the persona's noisy ratings "
             "(a tie is \"same\", counted half).", ""]
    return "\n".join(lines + win_table("arm", result["by_arm"])) + "\n"


def win_table(label: str, groups: dict) -> list[str]:
    """The markdown rows of pooled blind pairs (``pooled``) per arm or group of personas."""
    lines = [f"| {label} | runs | pairs | optimized / same / initial | win rate | 95% interval | per-run mean ± sd | runs won |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in groups.items():
        lo, hi = s["interval"]
        lines.append(f"| {name} | {s['runs']} | {s['pairs']} | {s['optimized_preferred']} / {s['same']} / {s['initial_preferred']} "
                     f"| {s['win_rate']:.1%} | {lo:.1%}-{hi:.1%} | {s['per_run_mean']:.2f} ± {s['per_run_sd']:.2f} "
                     f"| {s['runs_won']}/{s['runs']} |")
    return lines


def screens(text: str, low: int = 0) -> str:
    """``--screen``: one K or several, comma-separated (each one more arm), each ``low`` or more."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K,K,... (whole numbers), got {text!r}") from None
    if any(v < low for v in values):
        raise argparse.ArgumentTypeError(f"every K must be {low} or more, got {text!r}")
    return ",".join(map(str, values))


def world_arguments(parser: argparse.ArgumentParser, *, work: str, out: Path) -> None:
    """The demo-world options a benchmark over virtual users' runs shares with this one."""
    parser.add_argument("--sac", default="build/demo/ratings/sac.sqlite", help="a demo SAC-format set (made by make demo)")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=2, choices=(1, 2))
    parser.add_argument("--parallel", type=int, default=3, help="runs at once")
    parser.add_argument("--url", default=None, help="a Triton server with the demo models (default: start one)")
    parser.add_argument("--work", default=work, help="store, run folders and the exported models (resumable)")
    parser.add_argument("--out", default=str(out))


def shard_argument(parser: argparse.ArgumentParser) -> None:
    """``--shard I/N`` of a benchmark built on ``ppo-client experiment``, checked as the CLI checks it."""
    def shard(text: str) -> str:
        try:
            return str(Shard.parse(text))
        except InvalidRequestError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("--shard: ")) from None

    parser.add_argument("--shard", metavar="I/N", type=shard, default=None,
                        help="run shard I of N (counted from 1) of the experiment grid and stop without results; the same "
                             "command without it, on a --work holding every shard's runs, finishes and reports")


def write_results(out: Path, name: str, result: dict, text: str, **extra: str) -> None:
    """``NAME.json`` and ``NAME.md`` (and ``NAME.<suffix>`` for each extra), then the table on stdout."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    for suffix, content in extra.items():
        (out / f"{name}.{suffix}").write_text(content)
    print(text, end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    world_arguments(parser, work="build/blind", out=RESULTS)
    shard_argument(parser)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--optimizers", default="llm,random")
    parser.add_argument("--context", default="s+p", help="for the llm and mix optimizers")
    parser.add_argument("--screen", type=screens, default="0",
                        help="K of every arm's screen (0: off; mix needs 2 or more); several (4,32): one arm per K")
    parser.add_argument("--explore", type=float, default=1.0, help="the screen's UCB weight (0: greedy)")
    parser.add_argument("--preview-steps", type=int, default=0, help="preview steps (0: off)")
    args = parser.parse_args()
    result = run(args)
    if result:
        write_results(Path(args.out), "blind_comparison", result, markdown(result))


if __name__ == "__main__":
    with sigterm_as_exit():  # the servers it started stop on `kill` too
        main()
