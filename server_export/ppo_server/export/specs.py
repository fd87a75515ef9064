"""Declarative export specs: one per pipeline component, all consumed by one ONNX exporter.

A spec names the pipeline attribute it exports, the contract it serves (tensor names come from
there), the dynamic axes, the thin wrapper that gives the module those inputs and outputs, and how
to make sample inputs. Adding a component means adding a spec here, not a code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ppo_client import contract


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

    def with_batch(self, batch: int) -> ExportDims:
        return ExportDims(**{**self.__dict__, "batch": batch})


@dataclass(frozen=True)
class ExportSpec:
    contract: contract.ModelContract
    component: str
    """Attribute of the diffusers pipeline that holds the module."""
    dynamic_axes: Mapping[str, Mapping[int, str]]
    wrap: Callable[[torch.nn.Module], torch.nn.Module]
    sample_inputs: Callable[[ExportDims], tuple[torch.Tensor, ...]]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.contract.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.contract.outputs]


class _TextEncoder(torch.nn.Module):
    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=True).last_hidden_state


class _UNet(torch.nn.Module):
    """Takes one timestep per batch row (shape [B, 1]) so rows of different requests can share a batch."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep.reshape(-1), encoder_hidden_states, return_dict=False)[0]


class _VaeDecoder(torch.nn.Module):
    """Scaled latents in, images in [-1, 1] out: the scaling factor lives in the graph."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent / self.scaling_factor, return_dict=False)[0]


class _ImageEncoder(torch.nn.Module):
    """uint8 RGB [B, H, W, 3] in, unit-length CLIP embeddings out: resizing and CLIP's pixel
    normalisation live in the graph, so clients send plain images."""

    def __init__(self, clip: torch.nn.Module, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.vision_model = clip.vision_model
        self.projection = clip.visual_projection
        self.side = int(clip.config.vision_config.image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pixels = image.permute(0, 3, 1, 2).to(self.mean.dtype) / 255.0  # fp16 under the torch-cuda target
        # a square resize: equal to CLIP's shortest-side resize + centre crop for square images
        pixels = torch.nn.functional.interpolate(pixels, size=(self.side, self.side), mode="bilinear", align_corners=False)
        pixels = (pixels - self.mean) / self.std
        pooled = self.vision_model(pixel_values=pixels, return_dict=True).pooler_output
        return torch.nn.functional.normalize(self.projection(pooled), dim=-1)


class _ClipText(torch.nn.Module):
    """Token ids in, unit-length CLIP text embeddings out (the text tower's pooled output, projected)."""

    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        self.text_model = clip.text_model
        self.projection = clip.text_projection

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids, return_dict=True).pooler_output
        return torch.nn.functional.normalize(self.projection(pooled), dim=-1)


def _text_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, d.vocab_size, (d.batch, d.sequence_length), generator=generator),)


def _unet_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(d.batch, d.latent_channels, d.latent_height, d.latent_width, generator=generator)
    timestep = torch.linspace(1, 999, d.batch).reshape(d.batch, 1)
    hidden = torch.randn(d.batch, d.sequence_length, d.hidden_size, generator=generator)
    return sample, timestep, hidden


def _vae_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(d.batch, d.latent_channels, d.latent_height, d.latent_width, generator=generator),)


def _image_inputs(d: ExportDims) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (d.batch, d.image_side, d.image_side, 3), generator=generator, dtype=torch.uint8),)


_IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}

TEXT_ENCODER = ExportSpec(
    contract=contract.TEXT_ENCODER,
    component="text_encoder",
    dynamic_axes={
        "INPUT_IDS": {0: "batch", 1: "sequence"},
        "LAST_HIDDEN_STATE": {0: "batch", 1: "sequence"},
    },
    wrap=_TextEncoder,
    sample_inputs=_text_inputs,
)

UNET = ExportSpec(
    contract=contract.UNET,
    component="unet",
    dynamic_axes={
        "SAMPLE": _IMAGE_AXES,
        "TIMESTEP": {0: "batch"},
        "ENCODER_HIDDEN_STATES": {0: "batch", 1: "sequence"},
        "NOISE_PRED": _IMAGE_AXES,
    },
    wrap=_UNet,
    sample_inputs=_unet_inputs,
)

VAE_DECODER = ExportSpec(
    contract=contract.VAE_DECODER,
    component="vae",
    dynamic_axes={"LATENT": _IMAGE_AXES, "IMAGE": _IMAGE_AXES},
    wrap=_VaeDecoder,
    sample_inputs=_vae_inputs,
)

SPECS = (TEXT_ENCODER, UNET, VAE_DECODER)
"""The diffusion pipeline's components."""

IMAGE_ENCODER = ExportSpec(
    contract=contract.IMAGE_ENCODER,
    component="clip",
    dynamic_axes={"IMAGE": {0: "batch", 1: "height", 2: "width"}, "EMBEDDING": {0: "batch"}},
    wrap=_ImageEncoder,
    sample_inputs=_image_inputs,
)
"""Exported from a ``CLIPModel`` (not part of a diffusers pipeline); ``wrap`` needs the pixel
statistics of the checkpoint's image processor (see ``export.scoring``)."""

CLIP_TEXT_GRAPH = ExportSpec(
    contract=contract.ModelContract(
        name="clip_text",
        inputs=(contract.TensorSpec("INPUT_IDS", contract.DataType.INT64, (-1,)),),
        outputs=(contract.TensorSpec("EMBEDDING", contract.DataType.FP32, (-1,)),),
        max_batch_size=contract.CLIP_TEXT.max_batch_size,
    ),
    component="clip",
    dynamic_axes={"INPUT_IDS": {0: "batch", 1: "sequence"}, "EMBEDDING": {0: "batch"}},
    wrap=_ClipText,
    sample_inputs=_text_inputs,
)
"""The graph inside the ``clip_text`` model, which tokenizes first (its served inputs are texts)."""
