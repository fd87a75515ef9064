"""Declarative export specs: one per pipeline component, all consumed by one ONNX exporter and one
writer per target (``export.targets``).

A spec names the pipeline attribute it exports, the contract it serves (tensor names come from
there), the dynamic axes, the thin wrapper that gives the module those inputs and outputs
(``ppo_server.wrappers``), how to make sample inputs, its TensorRT profile, and the python-backend
module that serves it. Adding a component means adding a spec here, not a code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from ppo_client import contract
from ppo_client.contract import Family, ModelContract, TensorSpec
from ppo_server import wrappers
from ppo_server.errors import ExportError
from ppo_server.export.tensorrt import Dims, ProfileLimits, ShapeRange

ONNX_BACKEND = "ppo_server.backends.onnx_model"
"""Serves any component's ONNX graph with onnxruntime (the ``python`` target)."""


@dataclass(frozen=True)
class ExportDims:
    """Sizes the sample inputs need, read from the pipeline's own configs."""

    batch: int
    sequence_length: int
    hidden_size: int
    vocab_size: int
    latent_channels: int
    latent_height: int
    latent_width: int
    image_side: int = 0
    """Side of the image encoder's square input (CLIP's ``image_size``)."""
    vocab_size_2: int = 0
    """SDXL: the second text encoder's vocabulary."""
    text_embeds_dim: int = 0
    """SDXL: the pooled text embedding's size (the second encoder's projection)."""
    time_ids: int = 6
    """SDXL: size and crop conditioning values per row."""

    def with_batch(self, batch: int) -> ExportDims:
        return ExportDims(**{**self.__dict__, "batch": batch})


@dataclass(frozen=True)
class ExportSpec:
    key: str
    """Unique name of the spec (``unet`` and ``unet_xl`` serve the same model name)."""
    contract: ModelContract
    component: str
    """Attribute of the diffusers pipeline that holds the module."""
    dynamic_axes: Mapping[TensorSpec, Mapping[int, str]]
    wrap: type[torch.nn.Module]
    """A ``ppo_server.wrappers`` class: gives the module the contract's inputs and returns its outputs."""
    sample_inputs: Callable[[ExportDims], tuple[torch.Tensor, ...]]
    profile: Callable[[ProfileLimits], Mapping[TensorSpec, Dims]] | None = None
    """TensorRT: each input's sizes after the batch dimension (None: never built as an engine)."""
    backend: str = ONNX_BACKEND
    """The python-backend module that serves the component in the ``python`` target."""
    guided: bool = False
    """Its rows are doubled under classifier-free guidance (conditional and unconditional together)."""
    graphed: bool = False
    """Called once per denoising step: the ``torch-cuda`` target replays it as CUDA graphs."""
    upcast: bool = False
    """Its fp16 activations can overflow (a VAE decoder): ``torch-cuda`` keeps it in fp32, TensorRT
    does where the checkpoint asks (``force_upcast``)."""

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.contract.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.contract.outputs]

    def batch_range(self, limits: ProfileLimits) -> tuple[int, int, int]:
        """Rows per execution (min, opt, max), refused beyond the contract's batch size."""
        factor = 2 if self.guided else 1
        maximum = factor * limits.max_images
        if maximum > self.contract.max_batch_size:
            model = self.contract
            raise ExportError(f"{model.name}: {maximum} rows per execution exceed its contract's {model.max_batch_size}")
        return 1, factor * limits.opt_images, maximum

    def shape_ranges(self, limits: ProfileLimits) -> dict[str, ShapeRange]:
        """Input name -> shape range, batch included: the TensorRT optimisation profile."""
        if self.profile is None:
            raise ExportError(f"no TensorRT profile for {self.key!r}")
        batch = self.batch_range(limits)
        return {tensor.name: ShapeRange.of((batch, *dims)) for tensor, dims in self.profile(limits).items()}


@dataclass(frozen=True)
class PythonModelSpec:
    """A model that is a python-backend model in every target, written from its contract alone."""

    contract: ModelContract
    backend: str


# --- sample inputs ---


def _text_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, d.vocab_size, (d.batch, d.sequence_length), generator=generator),)


def _text_inputs_2(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, d.vocab_size_2, (d.batch, d.sequence_length), generator=generator),)


def _unet_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(d.batch, d.latent_channels, d.latent_height, d.latent_width, generator=generator)
    timestep = torch.linspace(1, 999, d.batch).reshape(d.batch, 1)
    hidden = torch.randn(d.batch, d.sequence_length, d.hidden_size, generator=generator)
    return sample, timestep, hidden


def _unet_xl_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    text_embeds = torch.randn(d.batch, d.text_embeds_dim, generator=generator)
    side = 8 * d.latent_height
    time_ids = torch.tensor([[side, side, 0, 0, side, side]] * d.batch, dtype=torch.float32)
    return (*_unet_inputs(d), text_embeds, time_ids)


def _vae_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(d.batch, d.latent_channels, d.latent_height, d.latent_width, generator=generator),)


def _image_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (d.batch, d.image_side, d.image_side, 3), generator=generator, dtype=torch.uint8),)


# --- TensorRT profiles (sizes after the batch dimension) ---


def _text_profile(limits: ProfileLimits) -> dict[TensorSpec, Dims]:
    return {contract.TEXT_ENCODER.INPUT_IDS: (limits.sequence_length,)}


def _unet_profile(limits: ProfileLimits) -> dict[TensorSpec, Dims]:
    unet, lat = contract.UNET, limits.latent_sides
    return {
        unet.SAMPLE: (limits.latent_channels, lat, lat),
        unet.TIMESTEP: (1,),
        unet.ENCODER_HIDDEN_STATES: (limits.sequence_length, limits.hidden_size),
    }


def _unet_xl_profile(limits: ProfileLimits) -> dict[TensorSpec, Dims]:
    unet = contract.UNET_XL
    return {**_unet_profile(limits), unet.TEXT_EMBEDS: (limits.text_embeds_dim,), unet.TIME_IDS: (limits.time_ids,)}


def _vae_profile(limits: ProfileLimits) -> dict[TensorSpec, Dims]:
    lat = limits.latent_sides
    return {contract.VAE_DECODER.LATENT: (limits.latent_channels, lat, lat)}


def _image_profile(limits: ProfileLimits) -> dict[TensorSpec, Dims]:
    side = limits.image_sides
    return {contract.IMAGE_ENCODER.IMAGE: (side, side, 3)}


# --- the specs ---

_IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}
_SEQUENCE_AXES = {0: "batch", 1: "sequence"}
_TEXT_AXES = {contract.TEXT_ENCODER.INPUT_IDS: _SEQUENCE_AXES, contract.TEXT_ENCODER.LAST_HIDDEN_STATE: _SEQUENCE_AXES}
_UNET_AXES = {
    contract.UNET.SAMPLE: _IMAGE_AXES,
    contract.UNET.TIMESTEP: {0: "batch"},
    contract.UNET.ENCODER_HIDDEN_STATES: _SEQUENCE_AXES,
    contract.UNET.NOISE_PRED: _IMAGE_AXES,
}

TEXT_ENCODER = ExportSpec(
    key="text_encoder",
    contract=contract.TEXT_ENCODER,
    component="text_encoder",
    dynamic_axes=_TEXT_AXES,
    wrap=wrappers.TextEncoder,
    sample_inputs=_text_inputs,
    profile=_text_profile,
    guided=True,
)

UNET = ExportSpec(
    key="unet",
    contract=contract.UNET,
    component="unet",
    dynamic_axes=_UNET_AXES,
    wrap=wrappers.UNet,
    sample_inputs=_unet_inputs,
    profile=_unet_profile,
    guided=True,
    graphed=True,
)

VAE_DECODER = ExportSpec(
    key="vae_decoder",
    contract=contract.VAE_DECODER,
    component="vae",
    dynamic_axes={contract.VAE_DECODER.LATENT: _IMAGE_AXES, contract.VAE_DECODER.IMAGE: _IMAGE_AXES},
    wrap=wrappers.VaeDecoder,
    sample_inputs=_vae_inputs,
    profile=_vae_profile,
    upcast=True,
)

TEXT_ENCODER_XL = ExportSpec(
    key="text_encoder_xl",
    contract=contract.TEXT_ENCODER,
    component="text_encoder",
    dynamic_axes=_TEXT_AXES,
    wrap=wrappers.PenultimateTextEncoder,
    sample_inputs=_text_inputs,
    profile=_text_profile,
    guided=True,
)

TEXT_ENCODER_2 = ExportSpec(
    key="text_encoder_2",
    contract=contract.TEXT_ENCODER_2,
    component="text_encoder_2",
    dynamic_axes={**_TEXT_AXES, contract.TEXT_ENCODER_2.TEXT_EMBEDS: {0: "batch"}},
    wrap=wrappers.ProjectionTextEncoder,
    sample_inputs=_text_inputs_2,
    profile=_text_profile,
    guided=True,
)

UNET_XL = ExportSpec(
    key="unet_xl",
    contract=contract.UNET_XL,
    component="unet",
    dynamic_axes={**_UNET_AXES, contract.UNET_XL.TEXT_EMBEDS: {0: "batch"}, contract.UNET_XL.TIME_IDS: {0: "batch"}},
    wrap=wrappers.UNetXL,
    sample_inputs=_unet_xl_inputs,
    profile=_unet_xl_profile,
    guided=True,
    graphed=True,
)

SPECS = (TEXT_ENCODER, UNET, VAE_DECODER)
"""The components of a Stable Diffusion 1.x/2.x pipeline."""
XL_SPECS = (TEXT_ENCODER_XL, TEXT_ENCODER_2, UNET_XL, VAE_DECODER)
"""The components of an SDXL pipeline."""

IMAGE_ENCODER = ExportSpec(
    key="image_encoder",
    contract=contract.IMAGE_ENCODER,
    component="clip",
    dynamic_axes={
        contract.IMAGE_ENCODER.IMAGE: {0: "batch", 1: "height", 2: "width"},
        contract.IMAGE_ENCODER.EMBEDDING: {0: "batch"},
    },
    wrap=wrappers.ImageEncoder,
    sample_inputs=_image_inputs,
    profile=_image_profile,
)
"""Exported from a ``CLIPModel`` (not part of a diffusers pipeline); its wrapper needs the pixel
statistics of the checkpoint's image processor (see ``export.scoring``)."""

# --- models written from their contracts: python-backend models in every target ---

TXT2IMG = PythonModelSpec(contract.TXT2IMG, "ppo_server.backends.txt2img")
PREFERENCE = PythonModelSpec(contract.PREFERENCE, "ppo_server.backends.preference")
TXT2IMG_SCORE = PythonModelSpec(contract.TXT2IMG_SCORE, "ppo_server.backends.txt2img_score")
CLIP_TEXT = PythonModelSpec(contract.CLIP_TEXT, "ppo_server.backends.clip_text")

CLIP_TEXT_GRAPH = ExportSpec(
    key="clip_text",
    contract=contract.CLIP_TEXT_GRAPH,
    component="clip",
    dynamic_axes={contract.CLIP_TEXT_GRAPH.INPUT_IDS: _SEQUENCE_AXES, contract.CLIP_TEXT_GRAPH.EMBEDDING: {0: "batch"}},
    wrap=wrappers.ClipText,
    sample_inputs=_text_inputs,
    backend=CLIP_TEXT.backend,
)
"""The graph inside the ``clip_text`` model, which tokenizes first (its served inputs are texts)."""

EXPORT_SPECS = (*SPECS, *XL_SPECS, IMAGE_ENCODER, CLIP_TEXT_GRAPH)
"""Every export spec (``unet`` and ``unet_xl`` serve one model name, as do both text encoder specs)."""
BACKEND_MODULES = {
    spec.contract.name: spec.backend for spec in (*EXPORT_SPECS, TXT2IMG, PREFERENCE, TXT2IMG_SCORE, CLIP_TEXT)
}
"""Model name -> the python-backend module its versioned ``model.py`` imports."""


def specs_for(family: Family) -> tuple[ExportSpec, ...]:
    return XL_SPECS if family == Family.SDXL else SPECS


def in_process(pipeline, family: Family):
    """A ``diffusion_loop.Call`` that runs the pipeline's own torch modules behind the export
    wrappers: the function every target serves, computed in this process (tests, baselines)."""
    modules = {spec.contract.name: spec.wrap(getattr(pipeline, spec.component)).eval() for spec in specs_for(family)}

    @torch.no_grad()
    def call(model: ModelContract, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = modules[model.name](*(torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in model.inputs))
        out = out if isinstance(out, tuple) else (out,)
        return {t.name: o.float().numpy() for t, o in zip(model.outputs, out, strict=True)}

    return call
