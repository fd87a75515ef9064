"""What the python-backend models share: their configuration as Triton hands it over, error
responses, and running the requests the dynamic batcher merged as few batches as their shapes allow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from ppo_client.errors import InvalidRequestError


@dataclass(frozen=True)
class ModelArgs:
    name: str
    folder: Path
    """The model version's folder (``REPO/<model>/1``)."""
    params: dict[str, str]
    input_names: list[str]
    output_names: list[str]
    device_id: str

    @classmethod
    def parse(cls, args: dict) -> ModelArgs:
        config = json.loads(args["model_config"])
        return cls(
            name=config["name"],
            folder=Path(args["model_repository"]) / args["model_version"],
            params={k: v["string_value"] for k, v in config.get("parameters", {}).items()},
            input_names=[t["name"] for t in config["input"]],
            output_names=[t["name"] for t in config["output"]],
            device_id=str(args.get("model_instance_device_id", "0")),
        )


def error_response(error: BaseException | str, *, invalid: bool | None = None):
    """A failed response: ``INVALID_ARG`` for a refused request (an ``InvalidRequestError``, or
    ``invalid=True``), ``INTERNAL`` otherwise; clients see the message unchanged."""
    if invalid is None:
        invalid = isinstance(error, InvalidRequestError)
    code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error), code))


def run_grouped(
    requests, model: ModelArgs, run: Callable[[list[np.ndarray]], Sequence[np.ndarray]]
) -> list:
    """Requests whose inputs agree in shape (beyond the batch dimension) are concatenated and passed
    to ``run`` together; its outputs are split back per request. A failing group fails only its own
    requests, with the error's text."""
    arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in model.input_names] for r in requests]
    responses = [None] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for i, inputs in enumerate(arrays):
        groups.setdefault(tuple(a.shape[1:] for a in inputs), []).append(i)
    for members in groups.values():
        try:
            outputs = run([np.concatenate([arrays[i][k] for i in members]) for k in range(len(model.input_names))])
        except Exception as exc:  # errors of the runtime become per-request errors, not a crash
            for i in members:
                responses[i] = error_response(f"{model.name}: {exc}")
            continue
        offset = 0
        for i in members:
            rows = arrays[i][0].shape[0]
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[offset : offset + rows]))
                for name, out in zip(model.output_names, outputs, strict=True)
            ]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            offset += rows
    return responses
