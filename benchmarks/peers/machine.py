"""The machine's own limit: the cores' sustained matrix-multiply throughput, and the UNet's FLOPs.

``gemm_peak`` times square matrix products on every core of this process's CPU set, in fp32
(PyTorch and numpy) and, where the CPU has bf16 instructions (``avx512_bf16`` or ``amx_bf16``), in
bf16 (PyTorch): the best sustained rate over three sizes and the libraries is the peak the UNet is
compared with. ``onnx_flops`` counts the multiply-adds of an ONNX graph's Conv, MatMul and Gemm nodes (2 FLOPs
each) at concrete input shapes; elementwise work, softmax and norms are
left out (a few percent in a UNet), so fractions of peak are slight underestimates.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def gemm_peak(*, seconds: float = 2.0, sizes: tuple[int, ...] = (1024, 2048, 4096)) -> dict:
    """Sustained GEMM FLOP/s per dtype, the best over sizes and libraries: fp32 with PyTorch (MKL)
    and numpy (OpenBLAS), which pick their kernels by CPU differently; bf16 with PyTorch (oneDNN)
    where the CPU has bf16 instructions. ``{"fp32": {...}, "bf16": {...}, "threads": n, ...}``."""
    import torch

    threads = len(os.sched_getaffinity(0))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    bf16 = [f for f in BF16_FLAGS if f in cpu_flags()]
    runs = [("fp32", "torch", lambda a, b: torch.matmul(a, b), lambda n: torch.randn(n, n)),
            ("fp32", "numpy", lambda a, b: a @ b, lambda n: np.random.default_rng(n).standard_normal((n, n), np.float32))]
    if bf16:
        runs.append(("bf16", "torch", lambda a, b: torch.matmul(a, b), lambda n: torch.randn(n, n).to(torch.bfloat16)))
    result: dict = {"threads": threads, "bf16_instructions": bf16, "runs": [],
                    "note": "" if bf16 else "no bf16 instructions on this CPU: bf16 not measured"}
    try:
        for dtype, library, multiply, make in runs:
            for n in sizes:
                a, b = make(n), make(n)
                multiply(a, b)  # warm-up (allocations, kernel selection)
                calls, started = 0, time.perf_counter()
                while True:
                    multiply(a, b)
                    calls += 1
                    elapsed = time.perf_counter() - started
                    if elapsed >= seconds / len(sizes) / 2:
                        break
                rate = 2 * n**3 * calls / elapsed
                result["runs"].append({"dtype": dtype, "library": library, "size": n, "flops_per_s": rate})
                if rate > result.get(dtype, {}).get("flops_per_s", 0):
                    result[dtype] = {"flops_per_s": rate, "size": n, "library": library}
    finally:
        torch.set_num_threads(previous)
    return result


def onnx_flops(model_path: Path, inputs: dict[str, tuple[int, ...]]) -> dict:
    """FLOPs of one call of the graph at ``inputs`` (name -> shape), by op type: Conv, MatMul and Gemm
    nodes. The shapes come from running the graph once in onnxruntime with every operand of those
    nodes exposed as an output (ONNX shape inference alone loses them behind attention's reshapes)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    counted = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*typed.graph.value_info, *typed.graph.input)}
    wanted = sorted({name for n in counted for name in (n.input[0], n.output[0])} - set(weights) - graph_outputs)
    for name in wanted:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {}
    for value in session.get_inputs():
        dtype = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32"}[value.type]
        feed[value.name] = np.ones(inputs[value.name], dtype=dtype)
    names = [o.name for o in session.get_outputs()]
    shapes = {**weights, **{n: a.shape for n, a in zip(names, session.run(names, feed), strict=True)}}

    by_op: dict[str, int] = {}
    for node in counted:
        out = shapes[node.output[0]]
        if node.op_type == "Conv":
            flops = 2 * math.prod(out) * math.prod(shapes[node.input[1]][1:])
        elif node.op_type == "MatMul":
            flops = 2 * math.prod(out) * shapes[node.input[0]][-1]
        else:
            a = shapes[node.input[0]]
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            flops = 2 * math.prod(out) * (a[0] if trans_a else a[1])
        by_op[node.op_type] = by_op.get(node.op_type, 0) + int(flops)
    return {"flops": sum(by_op.values()), "by_op": by_op, "inputs": {k: list(v) for k, v in inputs.items()}}


def unet_flops_per_row(model_path: Path, input_shapes) -> dict:
    """FLOPs of one UNet row (one latent, one timestep): counted at 2 and 4 rows, the difference
    halved, so any work that does not grow with the batch is left out."""
    counts = {rows: onnx_flops(model_path, input_shapes(rows)) for rows in (2, 4)}
    per_row = (counts[4]["flops"] - counts[2]["flops"]) / 2
    return {"flops_per_row": per_row, "by_op_at_2_rows": counts[2]["by_op"],
            "fixed_flops": counts[2]["flops"] - 2 * per_row}


def fraction_of_peak(flops_per_s: float, peak: dict) -> dict:
    """``flops_per_s`` as a fraction of each measured peak (``{"fp32": 0.31, "bf16": 0.12}``)."""
    return {name: flops_per_s / v["flops_per_s"] for name, v in peak.items() if isinstance(v, dict)}


def rows_rate(images_per_s: float, steps: int, guidance: bool = True) -> float:
    """UNet rows per second that ``images_per_s`` implies (two rows a step with guidance)."""
    return images_per_s * steps * (2 if guidance else 1)

