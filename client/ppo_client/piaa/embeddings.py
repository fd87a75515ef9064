"""Served embeddings of images (files, or images kept in the user store), cached in the store by
image content hash and encoder."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ppo_client.console import progress
from ppo_client.errors import DataError
from ppo_client.images import decode_rgb, load_rgb
from ppo_client.piaa.evaluation import UserData
from ppo_client.store import UserStore

logger = logging.getLogger(__name__)
CHUNK = 64


def file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"cannot read image {path} ({exc.strerror or exc})") from None


def embed_files(client, store: UserStore, paths: Sequence[Path], hashes: Sequence[str] | None = None) -> np.ndarray:
    """Embeddings [N, D] of image files; only those not cached for this encoder go to the server."""
    hashes = list(hashes) if hashes is not None else [file_hash(p) for p in paths]
    files = dict(zip(hashes, paths, strict=True))
    return _embed(client, store, hashes, lambda h: load_rgb(files[h]))


def embed_stored(client, store: UserStore, hashes: Sequence[str]) -> np.ndarray:
    """Embeddings [N, D] of images kept in the store, by content hash."""

    def load(digest: str) -> np.ndarray:
        stored = store.image(digest)
        if stored is None:
            raise DataError(f"image {digest[:12]}... is not in the store {store.path} (or its bytes are lost: "
                            "`ppo-client store check`)")
        return decode_rgb(stored.data, f"stored image {digest[:12]}")

    return _embed(client, store, list(hashes), load)


def _embed(client, store: UserStore, hashes: list[str], load) -> np.ndarray:
    encoder = client.encoder_info().encoder_id
    cached = store.embeddings(set(hashes), encoder)
    missing = [h for h in dict.fromkeys(hashes) if h not in cached]
    if missing:
        logger.info("embedding %d images with %s (%d cached)", len(missing), encoder, len(cached))
        with progress() as bar:
            task = bar.add_task("embedding images", total=len(missing))
            for start in range(0, len(missing), CHUNK):
                chunk = missing[start : start + CHUNK]
                vectors = client.embed([load(h) for h in chunk])
                fresh = dict(zip(chunk, vectors, strict=True))
                store.put_embeddings(fresh, encoder)
                cached.update(fresh)
                bar.advance(task, len(chunk))
    return np.stack([cached[h] for h in hashes])


def sac_users(sac, images_root: Path, client, store: UserStore):
    """A SAC set's raters as evaluation users, with served embeddings of every rated image."""
    iids = sorted({iid for items in sac.ratings.values() for iid in items})
    paths = []
    for iid in iids:
        if iid not in sac.paths:
            raise DataError(f"{sac.path}: image {iid} is rated but has no row in 'paths'")
        path = Path(images_root) / sac.paths[iid]
        if not path.is_file():
            raise DataError(f"{sac.path}: image {iid} is missing: {path}")
        paths.append(path)
    embeddings = embed_files(client, store, paths)
    row = {iid: i for i, iid in enumerate(iids)}
    users = []
    for sid in sorted(sac.ratings):
        items = sorted(sac.ratings[sid].items())
        truth = sac.true_scores.get(sid)
        users.append(
            UserData(
                uid=sid,
                rows=np.array([row[i] for i, _ in items]),
                ratings=np.array([r for _, r in items], dtype=np.float64),
                truth=np.array([truth[i] for i, _ in items]) if truth else None,
            )
        )
    return users, embeddings
