"""Scoring against Triton: CLIP image embeddings, a user's predicted scores, and generate-and-score.

    with ScoringClient("localhost:8001") as client:
        scored = client.generate_and_score(["a red cat at dusk"], head)   # image, embedding, score
        embeddings = client.embed(images)

A user's preference head (``ppo_client.head.PreferenceHead``) travels with every request:
in full in a request's first row and by content hash in the others, so the server stores nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ppo_client import contract
from ppo_client.contract import ClipTextParameters, ImageEncoderParameters
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import GenerationRequest
from ppo_client.head import PreferenceHead
from ppo_client.triton import ClientBase, served_parameters, txt2img_inputs
from ppo_client.txt2img import AsyncTxt2ImgClient, Txt2ImgClient, _as_request, _check_batch

ENCODER = contract.IMAGE_ENCODER
PREFERENCE = contract.PREFERENCE
TXT2IMG_SCORE = contract.TXT2IMG_SCORE
CLIP_TEXT = contract.CLIP_TEXT


@dataclass(frozen=True)
class EncoderInfo:
    encoder_id: str
    """Names the exact encoder weights: the key of embedding caches."""
    dim: int
    max_tokens: int = 77


@dataclass(frozen=True)
class TextEmbeddings:
    embeddings: np.ndarray
    """[N, D], unit length, in the image encoder's space."""
    tokens: np.ndarray
    """[N] token counts before truncation; compare with ``EncoderInfo.max_tokens``."""


@dataclass(frozen=True)
class ScoredImage:
    request: GenerationRequest
    image: Image.Image
    embedding: np.ndarray
    score: float


def _pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InvalidRequestError("images", f"must be RGB uint8 [H, W, 3], got {array.dtype} {array.shape}")
    return array


def _embed_batches(images: Sequence[Image.Image | np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
    """Row indices and stacked pixels, one entry per same-size chunk the encoder can take."""
    arrays = [_pixels(im) for im in images]
    by_shape: dict[tuple, list[int]] = {}
    for i, array in enumerate(arrays):
        by_shape.setdefault(array.shape, []).append(i)
    batches = []
    for rows in by_shape.values():
        for start in range(0, len(rows), ENCODER.max_batch_size):
            chunk = rows[start : start + ENCODER.max_batch_size]
            batches.append((chunk, np.stack([arrays[i] for i in chunk])))
    return batches


def user_model_rows(head: PreferenceHead, rows: int) -> np.ndarray:
    """The head in full in the first row and by hash in the rest."""
    reference = (contract.USER_MODEL_REF_PREFIX + head.digest).encode()
    return np.array([[head.to_bytes()]] + [[reference]] * (rows - 1), dtype=np.object_)


def _encoder_info(encoder_config: dict, text_config: dict, url: str) -> EncoderInfo:
    """No fallback for a missing parameter: ``encoder_id`` keys the embedding caches, so a guessed one
    would mix embeddings of different encoders."""
    encoder = served_parameters(ImageEncoderParameters.from_parameters, encoder_config, model=ENCODER.name, url=url)
    text = served_parameters(ClipTextParameters.from_parameters, text_config, model=CLIP_TEXT.name, url=url)
    return EncoderInfo(encoder.encoder_id, encoder.embedding_dim, text.max_tokens)


def _scored(rows: Sequence[GenerationRequest], result) -> list[ScoredImage]:
    model = TXT2IMG_SCORE
    images, embeddings, scores = (result.as_numpy(t.name) for t in (model.IMAGE, model.EMBEDDING, model.SCORE))
    return [
        ScoredImage(row, Image.fromarray(images[i]), embeddings[i].copy(), float(scores[i, 0]))
        for i, row in enumerate(rows)
    ]


class _ScoringCalls(ClientBase):
    """Request building shared by the sync and asyncio clients."""

    _encoder: EncoderInfo | None = None

    def _embed_kwargs(self, pixels: np.ndarray) -> dict:
        return self._infer_kwargs(ENCODER, [self._tensor(ENCODER.IMAGE, pixels)])

    def _score_kwargs(self, embeddings: np.ndarray, head: PreferenceHead) -> dict:
        inputs = [
            self._tensor(PREFERENCE.EMBEDDING, embeddings),
            self._tensor(PREFERENCE.USER_MODEL, user_model_rows(head, len(embeddings))),
        ]
        return self._infer_kwargs(PREFERENCE, inputs)

    def _text_kwargs(self, texts: Sequence[str]) -> dict:
        array = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        return self._infer_kwargs(CLIP_TEXT, [self._tensor(CLIP_TEXT.TEXT, array)])

    def _generate_score_kwargs(self, rows: Sequence[GenerationRequest], head: PreferenceHead) -> dict:
        inputs = [*txt2img_inputs(self._module, rows), self._tensor(TXT2IMG_SCORE.USER_MODEL, user_model_rows(head, len(rows)))]
        return self._infer_kwargs(TXT2IMG_SCORE, inputs)


def _text_chunks(texts: Sequence[str]) -> list[list[str]]:
    step = CLIP_TEXT.max_batch_size
    return [list(texts[i : i + step]) for i in range(0, len(texts), step)]


def _text_result(results) -> TextEmbeddings:
    if not results:
        return TextEmbeddings(np.zeros((0, 0), np.float32), np.zeros(0, np.int32))
    return TextEmbeddings(
        np.concatenate([r.as_numpy(CLIP_TEXT.EMBEDDING.name) for r in results]),
        np.concatenate([r.as_numpy(CLIP_TEXT.TOKENS.name)[:, 0] for r in results]),
    )


def _score_chunks(embeddings: np.ndarray) -> list[np.ndarray]:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise InvalidRequestError("embeddings", f"must be a matrix [N, D], got shape {embeddings.shape}")
    return [embeddings[i : i + PREFERENCE.max_batch_size] for i in range(0, len(embeddings), PREFERENCE.max_batch_size)]


class ScoringClient(_ScoringCalls, Txt2ImgClient):
    def encoder_info(self) -> EncoderInfo:
        """The served encoder's id, size and token limit, read once from its model configs."""
        if self._encoder is None:
            self._encoder = _encoder_info(self._model_config(ENCODER.name), self._model_config(CLIP_TEXT.name), str(self.endpoint))
        return self._encoder

    def embed_texts(self, texts: Sequence[str]) -> TextEmbeddings:
        """CLIP text embeddings (same space as ``embed``) and token counts."""
        return _text_result([self._infer(**self._text_kwargs(chunk)) for chunk in _text_chunks(texts)])

    def embed(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """Unit-length embeddings [N, D] of RGB images (any sizes; same sizes share a request)."""
        out: dict[int, np.ndarray] = {}
        for rows, pixels in _embed_batches(images):
            result = self._infer(**self._embed_kwargs(pixels))
            out.update(zip(rows, result.as_numpy(ENCODER.EMBEDDING.name), strict=True))
        return np.stack([out[i] for i in range(len(images))]) if images else np.zeros((0, 0), np.float32)

    def score(self, embeddings: np.ndarray, head: PreferenceHead) -> np.ndarray:
        """The user's predicted scores [N] of embeddings [N, D], computed by the server."""
        scores = []
        for chunk in _score_chunks(embeddings):
            scores.append(self._infer(**self._score_kwargs(chunk, head)).as_numpy(PREFERENCE.SCORE.name)[:, 0])
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)

    def generate_and_score(
        self, requests: Sequence[GenerationRequest | str], head: PreferenceHead, **fields: Any
    ) -> list[ScoredImage]:
        """Images for up to ``MAX_PROMPTS_PER_REQUEST`` prompts with their embeddings and scores, in one request."""
        rows = _check_batch([_as_request(r, fields) for r in requests], self.pipeline())
        return _scored(rows, self._infer(**self._generate_score_kwargs(rows, head)))


class AsyncScoringClient(_ScoringCalls, AsyncTxt2ImgClient):
    async def encoder_info(self) -> EncoderInfo:
        if self._encoder is None:
            self._encoder = _encoder_info(
                await self._model_config(ENCODER.name), await self._model_config(CLIP_TEXT.name), str(self.endpoint)
            )
        return self._encoder

    async def embed_texts(self, texts: Sequence[str]) -> TextEmbeddings:
        results = await asyncio.gather(*(self._infer(**self._text_kwargs(c)) for c in _text_chunks(texts)))
        return _text_result(results)

    async def embed(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        batches = _embed_batches(images)
        results = await asyncio.gather(*(self._infer(**self._embed_kwargs(p)) for _, p in batches))
        out = {
            i: v
            for (rows, _), r in zip(batches, results, strict=True)
            for i, v in zip(rows, r.as_numpy(ENCODER.EMBEDDING.name), strict=True)
        }
        return np.stack([out[i] for i in range(len(images))]) if images else np.zeros((0, 0), np.float32)

    async def score(self, embeddings: np.ndarray, head: PreferenceHead) -> np.ndarray:
        results = await asyncio.gather(*(self._infer(**self._score_kwargs(c, head)) for c in _score_chunks(embeddings)))
        return np.concatenate([r.as_numpy(PREFERENCE.SCORE.name)[:, 0] for r in results]) if results else np.zeros(0, np.float32)

    async def generate_and_score(
        self, requests: Sequence[GenerationRequest | str], head: PreferenceHead, **fields: Any
    ) -> list[ScoredImage]:
        rows = _check_batch([_as_request(r, fields) for r in requests], await self.pipeline())
        return _scored(rows, await self._infer(**self._generate_score_kwargs(rows, head)))
