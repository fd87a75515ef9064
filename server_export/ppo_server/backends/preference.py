"""The ``preference`` model: embeddings + users' preference heads in, scores out.

Rows of many users arrive in one batch; rows that share a head are scored in one matrix product.
"""

from __future__ import annotations

import logging

import triton_python_backend_utils as pb_utils

from ppo_client.errors import InvalidRequestError
from ppo_server.backends.triton_logging import install_triton_log_handler
from ppo_server.backends.user_models import FIELD, HeadCache, score_rows

logger = logging.getLogger(__name__)


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        self.heads = HeadCache()

    def execute(self, requests):
        for request in requests:
            self.heads.add_full(pb_utils.get_input_tensor_by_name(request, FIELD).as_numpy())
        responses = []
        for request in requests:
            try:
                embeddings = pb_utils.get_input_tensor_by_name(request, "EMBEDDING").as_numpy()
                heads = self.heads.resolve(pb_utils.get_input_tensor_by_name(request, FIELD).as_numpy())
                scores = score_rows(embeddings, heads).reshape(-1, 1)
            except InvalidRequestError as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("SCORE", scores)]))
        return responses
