"""TensorRT engines for the ONNX components, for the NVIDIA Triton container on a GPU host.

Optimisation profiles come from the same specs as the ONNX export (``ExportSpec.shape_ranges``): the
batch range (doubled for the specs whose rows are doubled under guidance) and, by default, *narrow*
spatial ranges (only the model's native size), which is what makes TensorRT fast; ``max_side``
widens them to every size the pipeline serves.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from ppo_server.errors import ExportError

logger = logging.getLogger(__name__)

INSTALL_HINT = "install TensorRT for this CUDA version (pip install tensorrt) on a host with an NVIDIA GPU"

Dims = tuple[int | tuple[int, int, int], ...]
"""Sizes of a tensor's dimensions: an int where fixed, ``(min, opt, max)`` where it varies."""


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def of(cls, dims: Dims) -> ShapeRange:
        return cls(*(tuple(d[level] if isinstance(d, tuple) else d for d in dims) for level in range(3)))


@dataclass(frozen=True)
class ProfileLimits:
    """What the optimisation profiles of one pipeline's engines cover; each export spec turns these
    into its inputs' shape ranges (``ExportSpec.shape_ranges``)."""

    max_images: int
    """Images per execution at most (rows of guided models are twice this)."""
    opt_images: int = 1
    sequence_length: int = 77
    hidden_size: int = 768
    latent_channels: int = 4
    latent_sides: tuple[int, int, int] = (64, 64, 64)
    """min, opt, max latent side; all equal for a narrow profile."""
    image_sides: tuple[int, int, int] = (512, 512, 512)
    """min, opt, max side of images given to the image encoder."""
    text_embeds_dim: int = 1280
    """SDXL: the pooled text embedding's size."""
    time_ids: int = 6

    @classmethod
    def for_pipeline(cls, *, max_images: int, native_side: int, vae_scale_factor: int, size_multiple: int,
                     max_side: int | None, sequence_length: int, hidden_size: int, latent_channels: int,
                     text_embeds_dim: int = 0) -> ProfileLimits:
        """Narrow (native size only) unless ``max_side`` asks for every size up to it."""
        if max_side:
            sides = (size_multiple, native_side, max_side)
        else:
            sides = (native_side, native_side, native_side)
        low, opt, high = (s // vae_scale_factor for s in sides)
        return cls(max_images=max_images, sequence_length=sequence_length, hidden_size=hidden_size,
                   latent_channels=latent_channels, latent_sides=(low, opt, high),
                   image_sides=sides, text_embeds_dim=text_embeds_dim or cls.text_embeds_dim)


def require_tensorrt() -> None:
    """Fail before any work when TensorRT is missing."""
    if importlib.util.find_spec("tensorrt") is None:
        raise ExportError(f"--target tensorrt needs the tensorrt Python package, which is not importable; {INSTALL_HINT}")


def build_engine(onnx_path: Path, plan_path: Path, shapes: dict[str, ShapeRange], *, fp16: bool, workspace_gib: float = 4.0) -> Path:
    require_tensorrt()
    import tensorrt as trt

    log = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(log)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, r in shapes.items():
        profile.set_shape(name, r.min, r.opt, r.max)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path}")
    plan_path.write_bytes(bytes(serialized))
    logger.info("built %s (%s)", plan_path, "fp16" if fp16 else "fp32")
    return plan_path
