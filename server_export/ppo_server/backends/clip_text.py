"""The ``clip_text`` model: texts in, unit-length CLIP text embeddings and token counts out.

Tokenizing in the server keeps the client free of tokenizer libraries and guarantees the exact
tokenizer the text tower was trained with.
"""

from __future__ import annotations

import logging

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_client import contract
from ppo_client.contract import ClipTextParameters, ComponentParameters
from ppo_client.errors import InvalidRequestError
from ppo_client.generation import check_text
from ppo_server.backends.component import ModelArgs, error_response
from ppo_server.backends.onnx_model import onnx_session
from ppo_server.backends.triton_logging import install_triton_log_handler

logger = logging.getLogger(__name__)
MODEL = contract.CLIP_TEXT
GRAPH = contract.CLIP_TEXT_GRAPH
FIELD = MODEL.TEXT.name


class TritonPythonModel:
    def initialize(self, args):
        install_triton_log_handler()
        from transformers import AutoTokenizer

        model = ModelArgs.parse(args)
        self.tokenizer = AutoTokenizer.from_pretrained(model.folder / "tokenizer")
        self.max_tokens = ClipTextParameters.from_parameters(model.params).max_tokens
        self.session = onnx_session(model.folder / "model.onnx", ComponentParameters.from_parameters(model.params))

    def execute(self, requests):
        texts, counts, refused = [], {}, {}
        for i, request in enumerate(requests):
            values = pb_utils.get_input_tensor_by_name(request, FIELD).as_numpy().reshape(-1)
            try:  # bounded before tokenizing: a huge text would hold up every request of the batch
                decoded = [check_text(v if isinstance(v, bytes) else str(v), FIELD) for v in values]
            except InvalidRequestError as exc:
                refused[i] = exc
                continue
            texts.extend(decoded)
            counts[i] = len(decoded)
        if texts:
            full = self.tokenizer(texts, truncation=False)["input_ids"]
            ids = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="np")
            (embeddings,) = self.session.run([GRAPH.EMBEDDING.name], {GRAPH.INPUT_IDS.name: ids["input_ids"].astype(np.int64)})
            tokens = np.array([[len(t)] for t in full], dtype=np.int32)
        responses, offset = [], 0
        for i in range(len(requests)):
            if i in refused:
                responses.append(error_response(refused[i]))
                continue
            rows = slice(offset, offset + counts[i])
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(MODEL.EMBEDDING.name, np.ascontiguousarray(embeddings[rows])),
                pb_utils.Tensor(MODEL.TOKENS.name, tokens[rows]),
            ]))
            offset += counts[i]
        return responses
