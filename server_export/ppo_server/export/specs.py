"""Declarative export specs: one per pipeline component, all consumed by one ONNX exporter.

A spec names the pipeline attribute it exports, the contract it serves (tensor names come from
there), the dynamic axes, the thin wrapper that gives the module those inputs and outputs, and how
to make sample inputs. Adding a component means adding a spec here, not a code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
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
    contract: contract.ModelContract
    component: str
    """Attribute of the diffusers pipeline that holds the module."""
    dynamic_axes: Mapping[str, Mapping[int, str]]
    wrap: Callable[[torch.nn.Module], torch.nn.Module]
    """Gives the module the contract's inputs, in order, and returns its outputs (a tuple for several)."""
    sample_inputs: Callable[[ExportDims], tuple[torch.Tensor, ...]]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.contract.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.contract.outputs]


class _TextEncoder(torch.nn.Module):
    """SD 1.x/2.x condition on the last layer's states."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=True).last_hidden_state


class _PenultimateTextEncoder(torch.nn.Module):
    """SDXL conditions on the penultimate layer's states (before the final layer norm)."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, output_hidden_states=True, return_dict=True).hidden_states[-2]


class _ProjectionTextEncoder(torch.nn.Module):
    """SDXL's second encoder: penultimate states and the pooled, projected embedding."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.text_encoder(input_ids, output_hidden_states=True, return_dict=True)
        return out.hidden_states[-2], out.text_embeds


class _UNet(torch.nn.Module):
    """Takes one timestep per batch row (shape [B, 1]) so rows of different requests can share a batch."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep.reshape(-1), encoder_hidden_states, return_dict=False)[0]


class _UNetXL(_UNet):
    """SDXL's UNet: also the pooled text embedding and the size conditioning, one row each."""

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
        added = {"text_embeds": text_embeds, "time_ids": time_ids}
        return self.unet(sample, timestep.reshape(-1), encoder_hidden_states, added_cond_kwargs=added, return_dict=False)[0]


class _VaeDecoder(torch.nn.Module):
    """Scaled latents in, images in [-1, 1] out: the scaling factor (and, where the VAE has them,
    the latents' mean and spread) live in the graph."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        self.normalised = mean is not None and std is not None
        if self.normalised:
            self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if self.normalised:
            latent = latent * self.latents_std / self.scaling_factor + self.latents_mean
        else:
            latent = latent / self.scaling_factor
        return self.vae.decode(latent.to(self.vae.dtype), return_dict=False)[0]


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


_IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}

_TEXT_AXES = {"INPUT_IDS": {0: "batch", 1: "sequence"}, "LAST_HIDDEN_STATE": {0: "batch", 1: "sequence"}}

TEXT_ENCODER = ExportSpec(
    key="text_encoder",
    contract=contract.TEXT_ENCODER,
    component="text_encoder",
    dynamic_axes=_TEXT_AXES,
    wrap=_TextEncoder,
    sample_inputs=_text_inputs,
)

UNET = ExportSpec(
    key="unet",
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
    key="vae_decoder",
    contract=contract.VAE_DECODER,
    component="vae",
    dynamic_axes={"LATENT": _IMAGE_AXES, "IMAGE": _IMAGE_AXES},
    wrap=_VaeDecoder,
    sample_inputs=_vae_inputs,
)

TEXT_ENCODER_XL = ExportSpec(
    key="text_encoder_xl",
    contract=contract.TEXT_ENCODER,
    component="text_encoder",
    dynamic_axes=_TEXT_AXES,
    wrap=_PenultimateTextEncoder,
    sample_inputs=_text_inputs,
)

TEXT_ENCODER_2 = ExportSpec(
    key="text_encoder_2",
    contract=contract.TEXT_ENCODER_2,
    component="text_encoder_2",
    dynamic_axes={**_TEXT_AXES, "TEXT_EMBEDS": {0: "batch"}},
    wrap=_ProjectionTextEncoder,
    sample_inputs=_text_inputs_2,
)

UNET_XL = ExportSpec(
    key="unet_xl",
    contract=contract.UNET_XL,
    component="unet",
    dynamic_axes={**UNET.dynamic_axes, "TEXT_EMBEDS": {0: "batch"}, "TIME_IDS": {0: "batch"}},
    wrap=_UNetXL,
    sample_inputs=_unet_xl_inputs,
)

SPECS = (TEXT_ENCODER, UNET, VAE_DECODER)
"""The components of a Stable Diffusion 1.x/2.x pipeline."""
XL_SPECS = (TEXT_ENCODER_XL, TEXT_ENCODER_2, UNET_XL, VAE_DECODER)
"""The components of an SDXL pipeline."""


def specs_for(family: str) -> tuple[ExportSpec, ...]:
    return XL_SPECS if family == "sdxl" else SPECS


def in_process(pipeline, family: str):
    """A ``diffusion_loop.Call`` that runs the pipeline's own torch modules behind the export
    wrappers: the function every target serves, computed in this process (tests, baselines)."""
    modules = {spec.contract.name: spec.wrap(getattr(pipeline, spec.component)).eval() for spec in specs_for(family)}

    @torch.no_grad()
    def call(model: contract.ModelContract, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = modules[model.name](*(torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in model.inputs))
        out = out if isinstance(out, tuple) else (out,)
        return {t.name: o.float().numpy() for t, o in zip(model.outputs, out)}

    return call

IMAGE_ENCODER = ExportSpec(
    key="image_encoder",
    contract=contract.IMAGE_ENCODER,
    component="clip",
    dynamic_axes={"IMAGE": {0: "batch", 1: "height", 2: "width"}, "EMBEDDING": {0: "batch"}},
    wrap=_ImageEncoder,
    sample_inputs=_image_inputs,
)
"""Exported from a ``CLIPModel`` (not part of a diffusers pipeline); ``wrap`` needs the pixel
statistics of the checkpoint's image processor (see ``export.scoring``)."""

CLIP_TEXT_GRAPH = ExportSpec(
    key="clip_text",
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


BY_KEY = {spec.key: spec for spec in (*SPECS, *XL_SPECS, IMAGE_ENCODER, CLIP_TEXT_GRAPH)}
"""Every spec by its key (the torch-cuda target's manifest names the one it serves)."""
