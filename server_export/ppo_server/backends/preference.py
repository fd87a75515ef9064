"""The ``preference`` model: embeddings + users' preference heads in, scores out.

Rows of many users arrive in one batch; rows that share a head are scored in one matrix product.
A request's bad head, or any failure scoring it, fails that request only.
"""

from __future__ import annotations

import logging

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_client import contract
from ppo_client.contract import HeadCacheParameters
from ppo_client.errors import InvalidRequestError
from ppo_server.backends.component import ModelArgs, error_response
from ppo_server.backends.triton_logging import install_triton_log_handler
from ppo_server.backends.user_models import HeadCache, score_rows

logger = logging.getLogger(__name__)
MODEL = contract.PREFERENCE


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        self.heads = HeadCache(HeadCacheParameters.from_parameters(ModelArgs.parse(args).params).head_cache_bytes)

    def execute(self, requests):
        values = [pb_utils.get_input_tensor_by_name(r, MODEL.USER_MODEL.name).as_numpy() for r in requests]
        resolved = self.heads.resolve_batch(values)
        del values
        responses = []
        for request, heads in zip(requests, resolved, strict=True):
            if isinstance(heads, InvalidRequestError):
                responses.append(error_response(heads))
                continue
            try:
                embeddings = pb_utils.get_input_tensor_by_name(request, MODEL.EMBEDDING.name).as_numpy()
                scores = score_rows(embeddings, heads).reshape(-1, 1)
            except InvalidRequestError as exc:
                responses.append(error_response(exc))
                continue
            except Exception as exc:  # this request's head failed in numpy (memory ...): only it fails
                logger.error("scoring failed: %s", exc)
                responses.append(error_response(f"scoring failed: {type(exc).__name__}: {exc}"))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(MODEL.SCORE.name, scores.astype(np.float32))]))
        return responses
