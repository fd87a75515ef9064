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
from ppo_client.errors import InvalidRequestError
from ppo_server.backends.triton_logging import install_triton_log_handler
from ppo_server.backends.user_models import FIELD, HeadCache, score_rows

logger = logging.getLogger(__name__)

_GENERATION_INPUTS = [t.name for t in contract.TXT2IMG.inputs]


def _error(message: str):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


async def _generate(request) -> np.ndarray:
    inputs = [t for t in (pb_utils.get_input_tensor_by_name(request, n) for n in _GENERATION_INPUTS) if t is not None]
    bls = pb_utils.InferenceRequest(model_name=contract.TXT2IMG.name, inputs=inputs, requested_output_names=["IMAGE"])
    response = await bls.async_exec()
    if response.has_error():
        raise RuntimeError(response.error().message())  # txt2img's own message names the field
    return pb_utils.get_output_tensor_by_name(response, "IMAGE").as_numpy()


def _embed(images: np.ndarray) -> np.ndarray:
    chunks = []
    for start in range(0, len(images), contract.IMAGE_ENCODER.max_batch_size):
        bls = pb_utils.InferenceRequest(
            model_name=contract.IMAGE_ENCODER.name,
            inputs=[pb_utils.Tensor("IMAGE", np.ascontiguousarray(images[start : start + contract.IMAGE_ENCODER.max_batch_size]))],
            requested_output_names=["EMBEDDING"],
        )
        response = bls.exec()
        if response.has_error():
            raise RuntimeError(f"image_encoder: {response.error().message()}")
        chunks.append(pb_utils.get_output_tensor_by_name(response, "EMBEDDING").as_numpy())
    return np.concatenate(chunks)


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        self.heads = HeadCache()

    async def execute(self, requests):
        errors: dict[int, str] = {}
        heads = {}
        for request in requests:
            self.heads.add_full(pb_utils.get_input_tensor_by_name(request, FIELD).as_numpy())
        for i, request in enumerate(requests):
            try:
                heads[i] = self.heads.resolve(pb_utils.get_input_tensor_by_name(request, FIELD).as_numpy())
            except InvalidRequestError as exc:
                errors[i] = str(exc)
        live = [i for i in range(len(requests)) if i not in errors]
        results = await asyncio.gather(*(_generate(requests[i]) for i in live), return_exceptions=True)
        images = {}
        for i, result in zip(live, results):
            if isinstance(result, Exception):
                errors[i] = str(result)
            else:
                images[i] = result

        embeddings, scores = {}, {}
        by_shape: dict[tuple, list[int]] = {}
        for i, array in images.items():
            by_shape.setdefault(array.shape[1:], []).append(i)
        for members in by_shape.values():
            try:
                vectors = _embed(np.concatenate([images[i] for i in members]))
            except Exception as exc:
                for i in members:
                    errors[i] = str(exc)
                continue
            offset = 0
            for i in members:
                rows = len(images[i])
                embeddings[i] = vectors[offset : offset + rows]
                offset += rows
                try:
                    scores[i] = score_rows(embeddings[i], heads[i]).reshape(-1, 1)
                except InvalidRequestError as exc:
                    errors[i] = str(exc)

        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(_error(errors[i]))
                continue
            tensors = [
                pb_utils.Tensor("IMAGE", images[i]),
                pb_utils.Tensor("EMBEDDING", np.ascontiguousarray(embeddings[i])),
                pb_utils.Tensor("SCORE", scores[i]),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
