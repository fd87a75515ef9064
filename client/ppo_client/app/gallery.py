"""The starter gallery: a fixed, documented prompt set spanning subjects and styles, rendered once by
the served pipeline and kept in the user store, so a person has something to rate on a first visit
and a second visit costs nothing."""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass

from ppo_client.generation import GenerationRequest
from ppo_client.store import PoolEntry, UserStore

logger = logging.getLogger(__name__)

SUBJECTS = (
    "a lighthouse on a cliff", "a cat asleep on a windowsill", "a mountain lake at dawn", "a city street at night",
    "a bowl of fruit on a table", "a portrait of an old fisherman", "a red circle on a blue background",
    "a forest path in autumn",
)
STYLES = ("photograph", "watercolor", "oil painting", "pencil sketch", "3d render", "minimalist vector art")
PROMPTS = tuple(f"{subject}, {style}" for subject in SUBJECTS for style in STYLES)
"""48 prompts: every subject in every style (``SUBJECTS`` x ``STYLES``)."""
ORIGIN = "gallery"


@dataclass
class GalleryProgress:
    done: int = 0
    total: int = len(PROMPTS)
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.done >= self.total or bool(self.error)


def missing_prompts(store: UserStore) -> list[str]:
    have = {image.label for image in store.pool(ORIGIN)}
    return [p for p in PROMPTS if p not in have]


def render(store_path, client, progress: GalleryProgress, *, steps: int = 20, guidance: float = 7.5, batch: int = 4) -> None:
    """Render the prompts the store lacks, ``batch`` at a time, adding each batch to the pool as it
    comes, so the rating page can start before the gallery is complete."""
    with UserStore(store_path) as store:
        todo = missing_prompts(store)
    progress.done = progress.total - len(todo)
    try:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            requests = [GenerationRequest(p, seed=PROMPTS.index(p), steps=steps, guidance_scale=guidance) for p in chunk]
            images = client.generate_batch(requests)
            entries = []
            for prompt, image in zip(chunk, images, strict=True):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                entries.append(PoolEntry(buffer.getvalue(), ORIGIN, prompt))
            with UserStore(store_path) as store:
                store.add_to_pool(entries)
            progress.done += len(chunk)
    except Exception as exc:  # shown on the rating page; the app keeps running without a gallery
        progress.error = f"{type(exc).__name__}: {exc}"
        logger.error("the starter gallery could not be rendered: %s", progress.error)


def start(store_path, client, **kwargs) -> GalleryProgress:
    progress = GalleryProgress()
    threading.Thread(target=render, args=(store_path, client, progress), kwargs=kwargs, daemon=True, name="gallery").start()
    return progress
