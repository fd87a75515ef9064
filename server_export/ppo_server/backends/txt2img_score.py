"""The ``txt2img_score`` model: one request = prompts + seeds + a user's head -> images, embeddings, scores.

Each incoming request goes on to ``txt2img`` unchanged (all of a batch's requests in flight at once,
so ``txt2img``'s own batcher merges them); the images of every request, whatever its user, are then
embedded together by ``image_encoder``, and each row is scored in this process with its user's head.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_client import contract
from ppo_client.contract import HeadCacheParameters
from ppo_client.errors import InvalidRequestError
from ppo_server.backends import bls
from ppo_server.backends.component import ModelArgs, error_response
from ppo_server.backends.triton_logging import install_triton_log_handler
from ppo_server.backends.user_models import HeadCache, score_rows
from ppo_server.errors import ComponentError

logger = logging.getLogger(__name__)
MODEL = contract.TXT2IMG_SCORE
ENCODER = contract.IMAGE_ENCODER


async def _generate(request) -> np.ndarray:
    """The request's generation inputs on to ``txt2img``, as they came."""
    image = contract.TXT2IMG.IMAGE
    return (await bls.forward(contract.TXT2IMG, request, [image]))[image.name]


def _embed(images: np.ndarray) -> np.ndarray:
    chunks = []
    for start in range(0, len(images), ENCODER.max_batch_size):
        chunk = images[start : start + ENCODER.max_batch_size]
        chunks.append(bls.call(ENCODER, {ENCODER.IMAGE.name: chunk}, [ENCODER.EMBEDDING])[ENCODER.EMBEDDING.name])
    return np.concatenate(chunks)


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        self.heads = HeadCache(HeadCacheParameters.from_parameters(ModelArgs.parse(args).params).head_cache_bytes)

    async def execute(self, requests: list) -> list:
        errors: dict[int, BaseException] = {}
        heads = {}
        resolved = self.heads.resolve_batch([pb_utils.get_input_tensor_by_name(r, MODEL.USER_MODEL.name).as_numpy() for r in requests])
        for i, result in enumerate(resolved):
            if isinstance(result, InvalidRequestError):
                errors[i] = result
            else:
                heads[i] = result
        live = [i for i in range(len(requests)) if i not in errors]
        results = await asyncio.gather(*(_generate(requests[i]) for i in live), return_exceptions=True)
        images = {}
        for i, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):  # a cancelled forward (CancelledError) fails its request too
                errors[i] = result
            else:
                images[i] = result

        embeddings, scores = {}, {}
        by_shape: dict[tuple, list[int]] = {}
        for i, array in images.items():
            by_shape.setdefault(array.shape[1:], []).append(i)
        for members in by_shape.values():
            try:
                vectors = _embed(np.concatenate([images[i] for i in members]))
            except ComponentError as exc:
                for i in members:
                    errors[i] = exc
                continue
            offset = 0
            for i in members:
                rows = len(images[i])
                embeddings[i] = vectors[offset : offset + rows]
                offset += rows
                try:
                    scores[i] = score_rows(embeddings[i], heads[i]).reshape(-1, 1)
                except Exception as exc:  # this request's head failed (a refusal, or numpy): only it fails
                    errors[i] = exc

        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(error_response(errors[i]))
                continue
            tensors = [
                pb_utils.Tensor(MODEL.IMAGE.name, images[i]),
                pb_utils.Tensor(MODEL.EMBEDDING.name, np.ascontiguousarray(embeddings[i])),
                pb_utils.Tensor(MODEL.SCORE.name, scores[i]),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
