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
from ppo_server.backends.component import ModelArgs, error_response
from ppo_server.backends.triton_logging import install_triton_log_handler
from ppo_server.backends.user_models import FIELD, HeadCache, cache_bytes, score_rows
from ppo_server.errors import ComponentError

logger = logging.getLogger(__name__)

_GENERATION_INPUTS = [t.name for t in contract.TXT2IMG.inputs]


async def _generate(request) -> np.ndarray:
    inputs = [t for t in (pb_utils.get_input_tensor_by_name(request, n) for n in _GENERATION_INPUTS) if t is not None]
    bls = pb_utils.InferenceRequest(model_name=contract.TXT2IMG.name, inputs=inputs, requested_output_names=["IMAGE"])
    response = await bls.async_exec()
    if response.has_error():
        error = response.error()  # txt2img's own message names the field; its code says whose fault
        if error.code() == pb_utils.TritonError.INVALID_ARG:
            raise InvalidRequestError.from_message(error.message())
        raise ComponentError(error.message())
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
            raise ComponentError(f"image_encoder: {response.error().message()}")
        chunks.append(pb_utils.get_output_tensor_by_name(response, "EMBEDDING").as_numpy())
    return np.concatenate(chunks)


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        self.heads = HeadCache(cache_bytes(ModelArgs.parse(args).params))

    async def execute(self, requests):
        errors: dict[int, Exception] = {}
        heads = {}
        resolved = self.heads.resolve_batch([pb_utils.get_input_tensor_by_name(r, FIELD).as_numpy() for r in requests])
        for i, result in enumerate(resolved):
            if isinstance(result, InvalidRequestError):
                errors[i] = result
            else:
                heads[i] = result
        live = [i for i in range(len(requests)) if i not in errors]
        results = await asyncio.gather(*(_generate(requests[i]) for i in live), return_exceptions=True)
        images = {}
        for i, result in zip(live, results):
            if isinstance(result, Exception):
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
                pb_utils.Tensor("IMAGE", images[i]),
                pb_utils.Tensor("EMBEDDING", np.ascontiguousarray(embeddings[i])),
                pb_utils.Tensor("SCORE", scores[i]),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
