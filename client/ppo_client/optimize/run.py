"""One optimization run: a folder that always holds everything finished so far.

    RUN/config.json        written before iteration 0 (the head used is in RUN/head.bin)
    RUN/reference.npz      the user's rated images' embeddings and ratings (for max sim)
    RUN/iterations.jsonl   one line per finished iteration, flushed and synced before the next
    RUN/images/itNN/       every generated image
    RUN/summary.json, RUN/report.html   rewritten after each iteration and at the end

Iteration 0 renders the user's prompt and N diverse rewrites of it; every later iteration renders N
new prompts. Each prompt is rendered with the same M seeds for the whole run (common random
numbers), so scores compare prompts, not noise. A resumed run reads the folder and goes on.
One process at a time works in a run folder (``RUN/.lock``); a second is refused with the PID.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ppo_client import contract
from ppo_client.errors import InvalidRequestError, OptimizationError
from ppo_client.generation import GenerationRequest, check_guidance, check_steps
from ppo_client.locking import FolderLock
from ppo_client.optimize.parsing import normalise
from ppo_client.optimize.proposers import CONTEXTS, OPTIMIZERS, ScoredPrompt
from ppo_client.optimize.screen import calibration
from ppo_client.optimize.vocabulary import DESCRIPTORS
from ppo_client.piaa.head import PreferenceHead

logger = logging.getLogger(__name__)

MAX_ITERATIONS = 100
MAX_PROMPTS = 16
MAX_PROMPT_CHARS = 1000
MAX_SCREEN = 8
SUBJECT_ANCHORS = ("auto", "on", "off")
CONFIG, ITERATIONS, SUMMARY, HEAD, REFERENCE = "config.json", "iterations.jsonl", "summary.json", "head.bin", "reference.npz"


@dataclass(frozen=True)
class RunConfig:
    user: str = ""
    prompt: str = ""
    iterations: int = 10
    n_prompts: int = 4
    seeds: int = 2
    context: str = "s+p+f"
    optimizer: str = "llm"
    steps: int = 20
    guidance_scale: float = 7.5
    seed: int = 0
    top_k: int = 20
    subject_guard: float = 0.5
    """Reject rewrites whose CLIP text similarity to the user's prompt is below this (0: off)."""
    high_rating_quantile: float = 0.75
    """The user's 'high-rated' images (for max sim) are those rated at or above this quantile."""
    structured_output: bool = True
    """Ask the LLM for replies constrained to a JSON schema, in the dialect its endpoint honours."""
    screen: int = 0
    """K: after iteration 0, ask for K x N candidates and render the N whose calibrated text-embedding
    prediction is best (``screen.py``); 0 renders what is proposed, as the paper does."""
    subject_anchor: str = "auto"
    """``on``: the schema makes each LLM prompt start with the user's subject (the text before its
    first comma) followed by comma-separated phrases; ``off``: free rewrites; ``auto``: on for the
    embedded 135M model, whose free rewrites mostly stray from the subject, off for other endpoints."""

    def checked(self) -> RunConfig:
        if not self.prompt.strip():
            raise InvalidRequestError("prompt", "is empty")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequestError("prompt", f"has {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        for name, value, low, high in (
            ("iterations", self.iterations, 1, MAX_ITERATIONS),
            ("n_prompts", self.n_prompts, 1, MAX_PROMPTS),
            ("seeds", self.seeds, 1, contract.MAX_PROMPTS_PER_REQUEST),
            ("screen", self.screen, 0, MAX_SCREEN),
        ):
            if not low <= value <= high:
                raise InvalidRequestError(name, f"must be between {low} and {high}, got {value}")
        if self.context not in CONTEXTS:
            raise InvalidRequestError("context", f"must be one of {', '.join(CONTEXTS)}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidRequestError("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        if self.subject_anchor not in SUBJECT_ANCHORS:
            raise InvalidRequestError("subject_anchor", f"must be one of {', '.join(SUBJECT_ANCHORS)}")
        if not 0 <= self.subject_guard < 1:
            raise InvalidRequestError("subject_guard", "must be in [0, 1)")
        check_steps(self.steps, "steps")
        check_guidance(self.guidance_scale, "guidance_scale")
        return self

    @property
    def seed_values(self) -> list[int]:
        return [self.seed * 1000 + j for j in range(self.seeds)]


@dataclass
class RunState:
    folder: Path
    config: RunConfig
    head: PreferenceHead
    records: list[dict]
    """Finished iterations, as written to iterations.jsonl."""
    lock: FolderLock | None = None
    """Held from creating or loading the run until ``close``."""

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def history(self) -> list[list[ScoredPrompt]]:
        return [[ScoredPrompt(p["prompt"], p["score"], p.get("description", "")) for p in r["prompts"]] for r in self.records]

    def seen(self) -> set[str]:
        return {normalise(p["prompt"]) for r in self.records for p in r["prompts"]}


def _write_json(path: Path, value) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def _lock(folder: Path) -> FolderLock:
    return FolderLock(folder, error=OptimizationError, what="optimization run").acquire()


def create_run(folder: Path, config: RunConfig, head: PreferenceHead, extra: dict, reference: tuple[np.ndarray, np.ndarray]) -> RunState:
    folder = Path(folder)
    lock = _lock(folder)
    try:
        if (folder / CONFIG).exists():
            raise OptimizationError(f"{folder} already holds a run; continue it with --resume {folder} or choose another --run-dir")
        (folder / HEAD).write_bytes(head.to_bytes())
        np.savez(folder / REFERENCE, embeddings=reference[0], ratings=reference[1])
        _write_json(folder / CONFIG, {"config": dataclasses.asdict(config), "head_digest": head.digest, **extra})
    except BaseException:
        lock.release()
        raise
    return RunState(folder, config, head, [], lock)


def load_run(folder: Path) -> tuple[RunState, dict]:
    folder = Path(folder)
    if not (folder / CONFIG).exists():
        raise OptimizationError(f"{folder} holds no run to resume (no {CONFIG})")
    lock = _lock(folder)
    try:
        try:
            stored = json.loads((folder / CONFIG).read_text())
            config = RunConfig(**stored["config"])
            head = PreferenceHead.from_bytes((folder / HEAD).read_bytes())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OptimizationError(f"{folder} is not a run folder this version can resume ({exc})") from exc
        records = _read_iterations(folder / ITERATIONS)
    except BaseException:
        lock.release()
        raise
    return RunState(folder, config, head, records, lock), stored


def _read_iterations(path: Path) -> list[dict]:
    """The complete iterations in order, up to the first damaged or out-of-order line. What follows
    it is redone; the file as it was is kept beside it, so nothing read here is lost."""
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        record = _parse_record(line)
        if record is None or record.get("iteration") != len(records):
            later = sum(_parse_record(rest) is not None for rest in lines[number:])
            backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
            shutil.copyfile(path, backup)
            logger.warning(
                "%s line %d is damaged or out of order; iteration %d%s will be redone (the file as it was is kept as %s)",
                path, number, len(records), f" and the {later} complete iteration(s) after it" if later else "", backup.name,
            )
            break
        records.append(record)
    if len(records) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(tmp, path)
    return records


def _parse_record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("prompts"), list) else None


def append_record(state: RunState, record: dict) -> None:
    with open(state.folder / ITERATIONS, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    state.records.append(record)


class Renderer:
    """Renders and scores one iteration's prompts through the served generate-and-score model, all
    prompts' requests in flight at once; also describes images with zero-shot CLIP tags."""

    def __init__(self, client, config: RunConfig, head: PreferenceHead, true_score: Callable | None, workers: int = 16) -> None:
        self.client, self.config, self.head, self.true_score = client, config, head, true_score
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self._descriptors: np.ndarray | None = None
        self.server_seconds = 0.0
        """Wall time of the last ``render``'s generate-and-score calls (all in flight together)."""

    def describe(self, embedding: np.ndarray, count: int = 3) -> str:
        if self._descriptors is None:
            self._descriptors = self.client.embed_texts(list(DESCRIPTORS)).embeddings
        order = np.argsort(-(self._descriptors @ embedding))[:count]
        return ", ".join(DESCRIPTORS[i] for i in order)

    def render(self, prompts: list[str], folder: Path, iteration: int) -> list[dict]:
        c = self.config

        def one(prompt: str):
            rows = [GenerationRequest(prompt, seed=s, steps=c.steps, guidance_scale=c.guidance_scale) for s in c.seed_values]
            return self.client.generate_and_score(rows, self.head)

        started = time.perf_counter()
        results = list(self.pool.map(one, prompts))
        self.server_seconds = time.perf_counter() - started
        images_dir = folder / "images" / f"it{iteration:02d}"
        images_dir.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, (prompt, scored) in enumerate(zip(prompts, results)):
            names = []
            for j, item in enumerate(scored):
                name = f"images/it{iteration:02d}/p{i:02d}_s{j}.png"
                item.image.save(folder / name)
                names.append(name)
            scores = [s.score for s in scored]
            best = int(np.argmax(scores))
            entry = {
                "prompt": prompt,
                "scores": scores,
                "score": float(np.mean(scores)),
                "images": names,
                "best": best,
                "embeddings": [np.round(s.embedding, 5).tolist() for s in scored],
                "description": self.describe(scored[best].embedding),
            }
            if self.true_score is not None:
                truth = [float(self.true_score(s.image)) for s in scored]
                entry["true_scores"], entry["true_score"] = truth, float(np.mean(truth))
            entries.append(entry)
        return entries

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def prompt_filter(client, initial: str, max_tokens: int, guard: float) -> Callable[[list[str]], list[str]]:
    """Keeps prompts within the tokenizer limit and (with ``guard`` > 0) close enough to the subject."""
    reference = client.embed_texts([initial]).embeddings[0]

    def keep(prompts: list[str]) -> list[str]:
        if not prompts:
            return []
        texts = client.embed_texts(prompts)
        kept = []
        for prompt, embedding, tokens in zip(prompts, texts.embeddings, texts.tokens):
            if tokens > max_tokens:
                logger.info("dropped a prompt of %d tokens (limit %d): %s", tokens, max_tokens, prompt[:80])
            elif guard and float(embedding @ reference) < guard:
                logger.info("dropped a prompt that strays from the subject (similarity %.2f): %s", float(embedding @ reference), prompt[:80])
            else:
                kept.append(prompt)
        return kept

    return keep


def run_iterations(
    state: RunState, proposer, renderer: Renderer, keep, *, on_iteration: Callable[[dict], None] = lambda r: None, screener=None,
) -> None:
    """Run the iterations the folder still lacks; each finished one is on disk before the next starts.
    With a ``screen.Screener`` every iteration proposes K x N prompts and renders N; in the first,
    before anything is rendered, the user's head alone ranks the candidates' texts."""
    c = state.config
    while len(state.records) <= c.iterations:
        k = len(state.records)
        rng = np.random.default_rng([c.seed, k])
        started = time.perf_counter()
        seen = state.seen()
        screening: dict = {}
        wanted = c.n_prompts * (screener.factor if screener else 1)
        if k == 0:
            seen.add(c.prompt.lower())
            proposal = proposer.initial(c.prompt, wanted, rng, seen, keep)
        else:
            history = state.history
            if proposer.name == "llm" and proposer.context == "s+p+f+I":
                history = _with_best_images(state, history)
            proposal = proposer.propose(c.prompt, history, wanted, rng, seen, keep)
        if screener and len(proposal.prompts) > c.n_prompts:
            chosen, screening = screener.choose(state.records, proposal.prompts, c.n_prompts)
            proposal.keep_only(chosen)
        prompts = [c.prompt, *proposal.prompts] if k == 0 else proposal.prompts
        if not prompts:
            raise OptimizationError(f"iteration {k}: no usable prompt was proposed (all were seen, too long or off-subject)")
        proposed = time.perf_counter()
        entries = renderer.render(prompts, state.folder, k)
        rendered = time.perf_counter()
        if k == 0:
            entries[0]["initial"] = True
        if screening:
            screened = entries[1:] if k == 0 else entries  # the user's own prompt is not screened
            for entry, predicted in zip(screened, screening["predicted"]):
                entry["predicted"] = predicted
            screening["calibration"] = calibration(screening["predicted"], [e["score"] for e in screened])
        llm_seconds = sum(call["seconds"] for call in proposal.llm_calls)
        record = {
            "iteration": k,
            "seeds": c.seed_values,
            "prompts": entries,
            "feedback": proposal.feedback,
            "llm_calls": proposal.llm_calls,
            "llm_prompts": proposal.from_llm,
            "repaired_prompts": proposal.repaired,
            "fallback_prompts": proposal.fallback,
            "structured": proposal.structured,
            "screen": screening,
            "timings": {
                "propose_s": proposed - started,
                "llm_s": llm_seconds,
                "render_s": rendered - proposed,
                "server_s": renderer.server_seconds,
                "total_s": rendered - started,
            },
        }
        append_record(state, record)
        on_iteration(record)


def _with_best_images(state: RunState, history: list[list[ScoredPrompt]]) -> list[list[ScoredPrompt]]:
    from PIL import Image

    latest = state.records[-1]["prompts"]
    images = [Image.open(state.folder / p["images"][p["best"]]).convert("RGB") for p in latest]
    return [*history[:-1], [dataclasses.replace(sp, best_image=im) for sp, im in zip(history[-1], images)]]
