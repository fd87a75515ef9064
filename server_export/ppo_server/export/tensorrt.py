"""TensorRT engines for the ONNX components, for the NVIDIA Triton container on a GPU host.

Optimisation profiles are derived from the same specs as the ONNX export: the batch range (doubled
for the text encoder and UNet, which see conditional and unconditional rows together) and, by
default, *narrow* spatial ranges (only the model's native size), which is what makes TensorRT fast;
``max_side`` widens them to every size the pipeline serves.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from ppo_client import contract
from ppo_server.errors import ExportError

logger = logging.getLogger(__name__)

INSTALL_HINT = "install TensorRT for this CUDA version (pip install tensorrt) on a host with an NVIDIA GPU"
GUIDED = {contract.TEXT_ENCODER.name, contract.TEXT_ENCODER_2.name, contract.UNET.name}
"""Models whose rows are doubled under classifier-free guidance."""


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class ProfileLimits:
    max_images: int = 8
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
    def for_pipeline(cls, *, native_side: int, vae_scale_factor: int, size_multiple: int, max_side: int | None,
                     sequence_length: int, hidden_size: int, latent_channels: int, max_images: int = 8,
                     text_embeds_dim: int = 0) -> ProfileLimits:
        """Narrow (native size only) unless ``max_side`` asks for every size up to it."""
        if max_side:
            sides = (size_multiple, native_side, max_side)
        else:
            sides = (native_side, native_side, native_side)
        return cls(max_images=max_images, sequence_length=sequence_length, hidden_size=hidden_size,
                   latent_channels=latent_channels, latent_sides=tuple(s // vae_scale_factor for s in sides),
                   image_sides=sides, text_embeds_dim=text_embeds_dim or cls.text_embeds_dim)


def batch_range(model: str, limits: ProfileLimits) -> tuple[int, int, int]:
    factor = 2 if model in GUIDED else 1
    maximum = factor * limits.max_images
    model_contract = next(m for m in contract.ALL_MODELS if m.name == model)
    if maximum > model_contract.max_batch_size:
        raise ExportError(f"{model}: {maximum} rows per execution exceed its contract's {model_contract.max_batch_size}")
    return 1, factor * limits.opt_images, maximum


def profiles(spec_key: str, limits: ProfileLimits) -> dict[str, ShapeRange]:
    """Input name -> shape range (batch included) for one component (an ``export.specs`` key)."""
    model = {"text_encoder_xl": contract.TEXT_ENCODER.name, "unet_xl": contract.UNET.name}.get(spec_key, spec_key)
    b = batch_range(model, limits)
    L, H, C = limits.sequence_length, limits.hidden_size, limits.latent_channels
    lat, img = limits.latent_sides, limits.image_sides

    def rng(*dims_by_level):
        return ShapeRange(*(tuple(d[i] if isinstance(d, tuple) else d for d in dims_by_level) for i in range(3)))

    if model in (contract.TEXT_ENCODER.name, contract.TEXT_ENCODER_2.name):
        return {"INPUT_IDS": rng(b, L)}
    if model == contract.UNET.name:
        unet = {"SAMPLE": rng(b, C, lat, lat), "TIMESTEP": rng(b, 1), "ENCODER_HIDDEN_STATES": rng(b, L, H)}
        if spec_key == "unet_xl":
            unet.update(TEXT_EMBEDS=rng(b, limits.text_embeds_dim), TIME_IDS=rng(b, limits.time_ids))
        return unet
    if model == contract.VAE_DECODER.name:
        return {"LATENT": rng(b, C, lat, lat)}
    if model == contract.IMAGE_ENCODER.name:
        return {"IMAGE": rng(b, img, img, 3)}
    raise ExportError(f"no TensorRT profile for model {model!r}")


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
