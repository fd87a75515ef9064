"""Business-logic scripting: how the pipeline models call other models of the same server.

Two kinds of call, with different error rules:

- ``call``: a component does part of this model's work; its failure is this model's failure
  (``ComponentError`` naming the component).
- ``forward``: a client's request passed on to another model as it came; a refusal there is a
  refusal of the request (``InvalidRequestError``, its message unchanged), anything else a
  ``ComponentError`` with the callee's message.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_client.contract import ModelContract, TensorSpec
from ppo_client.errors import InvalidRequestError
from ppo_server.errors import ComponentError


def _request(model: ModelContract, tensors: Sequence, outputs: Sequence[TensorSpec]):
    return pb_utils.InferenceRequest(
        model_name=model.name, inputs=list(tensors), requested_output_names=[t.name for t in outputs]
    )


def _outputs(response, outputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    return {t.name: pb_utils.get_output_tensor_by_name(response, t.name).as_numpy() for t in outputs}


def call(
    model: ModelContract, inputs: Mapping[str, np.ndarray], outputs: Sequence[TensorSpec] | None = None
) -> dict[str, np.ndarray]:
    """One component call: named inputs in, the requested outputs (all by default) back."""
    outputs = model.outputs if outputs is None else outputs
    tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()]
    response = _request(model, tensors, outputs).exec()
    if response.has_error():
        raise ComponentError(f"{model.name}: {response.error().message()}")
    return _outputs(response, outputs)


async def forward(model: ModelContract, request, outputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Pass a request's tensors that ``model`` takes on to it, unchanged (optional ones it lacks are
    left out), and await the requested outputs."""
    tensors = [t for t in (pb_utils.get_input_tensor_by_name(request, s.name) for s in model.inputs) if t is not None]
    response = await _request(model, tensors, outputs).async_exec()
    if response.has_error():
        error = response.error()  # the callee's message names the field; its code says whose fault
        if error.code() == pb_utils.TritonError.INVALID_ARG:
            raise InvalidRequestError.from_message(error.message())
        raise ComponentError(error.message())
    return _outputs(response, outputs)
