"""Triton ``config.pbtxt`` files generated from the contract through Triton's own protobuf schema."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from ppo_client.contract import ModelContract, TensorSpec


@dataclass(frozen=True)
class ServingOptions:
    """How Triton schedules one model: instances, dynamic batching, backend parameters."""

    instance_count: int = 1
    max_queue_delay_us: int = 2000
    """How long the dynamic batcher may hold a request to merge it with others."""
    parameters: Mapping[str, str] = field(default_factory=dict)


def _tensor(spec: TensorSpec, message):
    message.name = spec.name
    message.data_type = pb.DataType.Value(spec.dtype.config)
    message.dims.extend(spec.dims)
    return message


class Platform(enum.Enum):
    """Triton's own backends, which run a component natively on the GPU instead of in python."""

    ONNXRUNTIME = "onnxruntime_onnx"
    TENSORRT = "tensorrt_plan"


def build_config(
    contract: ModelContract, options: ServingOptions = ServingOptions(), *, platform: Platform | None = None,
    max_batch_size: int | None = None,
) -> pb.ModelConfig:
    """The model's config: a python-backend model on the CPU, or with ``platform`` a GPU model of
    one of Triton's own backends."""
    config = pb.ModelConfig(name=contract.name, max_batch_size=max_batch_size or contract.max_batch_size)
    if platform is None:
        config.backend = "python"
    else:
        config.platform = platform.value
    for spec in contract.inputs:
        _tensor(spec, config.input.add()).optional = spec.optional
    for spec in contract.outputs:
        _tensor(spec, config.output.add())
    config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    kind = pb.ModelInstanceGroup.KIND_CPU if platform is None else pb.ModelInstanceGroup.KIND_GPU
    config.instance_group.add(count=options.instance_count, kind=kind)
    for key, value in sorted(options.parameters.items()):
        config.parameters[key].string_value = str(value)
    return config


def render(config: pb.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse(text: str) -> pb.ModelConfig:
    return text_format.Parse(text, pb.ModelConfig())


def write_config(config: pb.ModelConfig, model_dir: Path) -> Path:
    path = model_dir / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(config))
    return path


def read_config(model_dir: Path) -> pb.ModelConfig:
    return parse((model_dir / "config.pbtxt").read_text())
