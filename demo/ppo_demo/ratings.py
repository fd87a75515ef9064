"""The demo rating set: images the served demo pipeline draws from random scene captions, rated by a
population of virtual users, written in the SAC schema (``sac.py``). Deterministic for a seed and a
served model.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ppo_client.console import console
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest
from ppo_client.txt2img import AsyncTxt2ImgClient
from ppo_demo.attributes import measure_many
from ppo_demo.personas import population, rate_many, true_scores
from ppo_demo.sac import SURVEY_QUESTIONS, RatedImage, UserRatings, write_sac
from ppo_demo.scenes import caption, sample_scene

logger = logging.getLogger(__name__)

PROMPT_SEED_BASE = 2_000_000
"""Scene seeds of rating prompts; far from those the demo models were trained on."""
MIN_RATINGS_PER_USER = 100
SAC_FILE = "sac.sqlite"


@dataclass(frozen=True)
class RatingSetConfig:
    users: int = 60
    images: int = 600
    seed: int = 0
    steps: int = 20
    guidance_scale: float = 7.5
    concurrency: int = 32

    def checked(self) -> RatingSetConfig:
        if self.users < 1:
            raise InvalidRequestError("users", f"must be at least 1, got {self.users}")
        if self.images < max(MIN_RATINGS_PER_USER, SURVEY_QUESTIONS):
            raise InvalidRequestError("images", f"must be at least {MIN_RATINGS_PER_USER}, got {self.images}")
        return self


def prompts(config: RatingSetConfig) -> list[str]:
    result = []
    for i in range(config.images):
        rng = np.random.default_rng([PROMPT_SEED_BASE + config.seed, i])
        result.append(caption(sample_scene(rng), rng))
    return result


async def _generate(url: str | None, requests: list[GenerationRequest], concurrency: int, progress) -> list:
    limit = asyncio.Semaphore(concurrency)
    async with AsyncTxt2ImgClient(url) as client:

        async def one(request: GenerationRequest):
            async with limit:
                image = await client.generate(request)
                progress()
                return image

        return await asyncio.gather(*(one(r) for r in requests))


def participation(config: RatingSetConfig, rng: np.random.Generator) -> list[int]:
    """How many images each user rates: at least 100, with a long tail (SAC's raters are power-law)."""
    extra = rng.pareto(1.5, config.users) * 40
    return [int(min(config.images, MIN_RATINGS_PER_USER + e)) for e in extra]


def build_rating_set(out: Path, config: RatingSetConfig, *, url: str | None = None, progress=lambda: None) -> Path:
    config = config.checked()
    out = Path(out)
    texts = prompts(config)
    requests = [
        GenerationRequest(text, seed=config.seed * 1_000_003 + i, steps=config.steps,
                          guidance_scale=config.guidance_scale)
        for i, text in enumerate(texts)
    ]
    images = asyncio.run(_generate(url, requests, config.concurrency, progress))
    (out / "images").mkdir(parents=True, exist_ok=True)
    rated = []
    for i, (text, image) in enumerate(zip(texts, images, strict=True)):
        relative = f"images/{i:06d}.png"
        image.save(out / relative)
        rated.append(RatedImage(iid=i + 1, gid=i + 1, prompt=text, path=relative))
    attributes = measure_many(np.asarray(image) for image in images)

    rng = np.random.default_rng([config.seed, 7])
    users = []
    for sid, (persona, count) in enumerate(zip(population(config.users, config.seed), participation(config, rng), strict=True), 1):
        chosen = np.sort(rng.choice(config.images, size=count, replace=False))
        noisy = rate_many(persona, attributes[chosen], rng)
        truth = true_scores(persona, attributes[chosen])
        survey = rate_many(persona, attributes[:SURVEY_QUESTIONS], rng)
        users.append(
            UserRatings(
                sid=sid,
                persona_spec=persona.to_dict(),
                survey=[int(r) for r in survey],
                ratings=[(int(i) + 1, int(r)) for i, r in zip(chosen, noisy, strict=True)],
                true_scores=[(int(i) + 1, float(s)) for i, s in zip(chosen, truth, strict=True)],
            )
        )
    path = write_sac(out / SAC_FILE, rated, users, method="ppo-demo")
    logger.info("wrote %d images rated by %d users to %s", len(rated), len(users), path)
    return path


def build_with_progress(out: Path, config: RatingSetConfig, *, url: str | None = None) -> Path:
    """``build_rating_set`` with a progress bar on the console (the rendering takes minutes)."""
    from rich.progress import Progress

    with Progress(console=console) as bar:
        task = bar.add_task("generating images", total=config.checked().images)
        path = build_rating_set(Path(out), config, url=url, progress=lambda: bar.advance(task))
    console.print(f"wrote {path} ({config.users} users, {config.images} images)")
    return path
