"""The one ONNX exporter: turns any ``ExportSpec`` into a checked ``.onnx`` file."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ppo_server.errors import ExportError
from ppo_server.export.specs import ExportDims, ExportSpec

logger = logging.getLogger(__name__)

OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    model: str
    path: str
    seconds: float
    max_abs_diff: float | None = None
    """Largest difference between onnxruntime and torch on a batch size not used for tracing (None:
    no ONNX file, as in the torch-cuda target)."""


def export_onnx(
    spec: ExportSpec, module: torch.nn.Module, dims: ExportDims, path: Path,
    *, wrapper_kwargs: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Trace ``module`` through the spec's wrapper, write ``path``, and check it in onnxruntime."""
    wrapper = spec.wrap(module, **(wrapper_kwargs or {})).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # tracing warns about every Python branch on shapes; the sizes they depend on are
            # constrained by the serving config (see ExportResult.size_multiple)
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                spec.sample_inputs(dims),
                str(path),
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_axes={tensor.name: dict(axes) for tensor, axes in spec.dynamic_axes.items()},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # torch raises many unrelated types here; keep the cause attached
        raise ExportError(f"ONNX export of {spec.component!r} failed: {exc}") from exc
    seconds = time.perf_counter() - started
    diff = _check_against_torch(spec, wrapper, dims.with_batch(dims.batch + 1), path)
    logger.info("exported %s in %.1f s (max |onnx - torch| = %.2e)", spec.contract.name, seconds, diff)
    return ExportReport(spec.contract.name, str(path), seconds, diff)


def _check_against_torch(spec: ExportSpec, wrapper: torch.nn.Module, dims: ExportDims, path: Path) -> float:
    import onnxruntime as ort

    inputs = spec.sample_inputs(dims)
    with torch.no_grad():
        expected = wrapper(*inputs)
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in zip(spec.input_names, inputs, strict=True)}
    actual = session.run(spec.output_names, feed)
    worst = 0.0
    for name, a, e in zip(spec.output_names, actual, expected, strict=True):
        if a.shape != e.shape:
            raise ExportError(
                f"{spec.contract.name}: onnxruntime gave {name} shape {a.shape}, torch {e.shape}; "
                "a dynamic axis is probably missing from the spec"
            )
        worst = max(worst, float(np.max(np.abs(a - e))))
    return worst
