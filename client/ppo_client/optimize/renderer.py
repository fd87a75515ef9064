"""Rendering one iteration's prompts: every prompt with the run's fixed seeds through the served
generate-and-score model (all prompts' requests in flight at once), the images saved in the run
folder, the best of each described with zero-shot CLIP tags, and judged by a known true taste where
the run has one.

Each prompt is rendered with the same M seeds for the whole run (common random numbers), so scores
compare prompts, not noise. A preview is the same request at fewer denoising steps (same pipeline,
same scheduler, same seeds), scored by the same head; its images are not kept.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ppo_client.generation import GenerationRequest
from ppo_client.head import PreferenceHead
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.records import RenderedPrompt
from ppo_client.optimize.truth import Judge
from ppo_client.optimize.vocabulary import DESCRIPTORS


class Renderer:
    def __init__(self, client, config: RunConfig, head: PreferenceHead, judge: Judge | None = None, workers: int = 16) -> None:
        self.client, self.config, self.head, self.judge = client, config, head, judge
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self._descriptors: np.ndarray | None = None
        self.server_seconds = 0.0
        """Wall time of the last ``render``'s generate-and-score calls (all in flight together)."""

    @property
    def scheduler(self) -> str:
        """The scheduler the served pipeline denoises with (its own: runs leave it unset)."""
        return self.client.pipeline().default_scheduler

    def describe(self, embedding: np.ndarray, count: int = 3) -> str:
        if self._descriptors is None:
            self._descriptors = self.client.embed_texts(list(DESCRIPTORS)).embeddings
        order = np.argsort(-(self._descriptors @ embedding))[:count]
        return ", ".join(DESCRIPTORS[i] for i in order)

    def preview(self, prompts: list[str], steps: int) -> list[list[float]]:
        """Each prompt's learned scores, one per seed, at ``steps`` denoising steps (with the run's
        ``preview_scheduler``, or the pipeline's own)."""
        c = self.config

        def one(prompt: str):
            rows = [GenerationRequest(prompt, seed=s, steps=steps, guidance_scale=c.guidance_scale, scheduler=c.preview_scheduler)
                    for s in c.seed_values]
            return [float(item.score) for item in self.client.generate_and_score(rows, self.head)]

        return list(self.pool.map(one, prompts))

    def render(self, prompts: list[str], folder: Path, iteration: int) -> list[RenderedPrompt]:
        c = self.config

        def one(prompt: str):
            rows = [GenerationRequest(prompt, seed=s, steps=c.steps, guidance_scale=c.guidance_scale) for s in c.seed_values]
            return self.client.generate_and_score(rows, self.head)

        started = time.perf_counter()
        results = list(self.pool.map(one, prompts))
        self.server_seconds = time.perf_counter() - started
        images_dir = folder / "images" / f"it{iteration:02d}"
        images_dir.mkdir(parents=True, exist_ok=True)
        rendered = []
        for i, (prompt, scored) in enumerate(zip(prompts, results, strict=True)):
            names = []
            for j, item in enumerate(scored):
                name = f"images/it{iteration:02d}/p{i:02d}_s{j}.png"
                item.image.save(folder / name)
                names.append(name)
            scores = [s.score for s in scored]
            best = int(np.argmax(scores))
            entry = RenderedPrompt(
                prompt=prompt, scores=scores, score=float(np.mean(scores)), images=names, best=best,
                embeddings=[np.round(s.embedding, 5).tolist() for s in scored],
                description=self.describe(scored[best].embedding),
            )
            if self.judge is not None:
                entry.true_scores = [float(self.judge(s.image)) for s in scored]
                entry.true_score = float(np.mean(entry.true_scores))
            rendered.append(entry)
        return rendered

    def close(self) -> None:
        self.pool.shutdown(wait=True)
