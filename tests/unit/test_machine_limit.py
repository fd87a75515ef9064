"""The serving benchmark's machine limit (benchmarks/peers/machine.py): FLOPs counted from an ONNX
graph and a GEMM peak that is a plausible positive rate."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def machine():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    spec = importlib.util.spec_from_file_location("peers_machine", ROOT / "benchmarks" / "peers" / "machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_graph(path: Path) -> Path:
    """x [N,3,8,8] -> Conv(4 filters 3x3, pad 1) -> reshape [N, 4*64] -> MatMul [256, 5] -> Gemm [5, 2]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = [
        numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w"),
        numpy_helper.from_array(np.array([-1, 256], np.int64), "flat"),
        numpy_helper.from_array(np.ones((256, 5), np.float32), "m"),
        numpy_helper.from_array(np.ones((5, 2), np.float32), "g"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "flat"], ["r"]),
        helper.make_node("MatMul", ["r", "m"], ["mm"]),
        helper.make_node("Gemm", ["mm", "g"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_onnx_flops_count_two_per_multiply_add_of_every_conv_matmul_and_gemm(machine, tmp_path):
    path = small_graph(tmp_path / "small.onnx")
    counted = machine.onnx_flops(path, {"x": (3, 3, 8, 8)})
    assert counted["by_op"] == {"Conv": 2 * 3 * 4 * 8 * 8 * 3 * 3 * 3, "MatMul": 2 * 3 * 5 * 256, "Gemm": 2 * 3 * 2 * 5}
    assert counted["flops"] == sum(counted["by_op"].values())


def test_flops_per_row_leave_out_nothing_that_grows_with_the_batch(machine, tmp_path):
    path = small_graph(tmp_path / "small.onnx")
    per_row = machine.unet_flops_per_row(path, lambda rows: {"x": (rows, 3, 8, 8)})
    assert per_row["flops_per_row"] == machine.onnx_flops(path, {"x": (1, 3, 8, 8)})["flops"]
    assert per_row["fixed_flops"] == 0


def test_gemm_peak_is_a_positive_rate_per_dtype_and_fractions_divide_by_it(machine):
    pytest.importorskip("torch")
    peak = machine.gemm_peak(seconds=0.05, sizes=(64, 128))
    assert peak["fp32"]["flops_per_s"] > 0 and peak["fp32"]["size"] in (64, 128)
    assert ("bf16" in peak) == bool(peak["bf16_instructions"])
    fractions = machine.fraction_of_peak(peak["fp32"]["flops_per_s"] / 4, peak)
    assert fractions["fp32"] == pytest.approx(0.25)
    assert machine.rows_rate(2.0, steps=20) == 80.0
