"""The torch modules every target serves: thin wrappers that give each pipeline component the
contract's inputs, in order, and return its outputs (a tuple for several).

The ONNX export traces them (``export.specs``), the ``torch-cuda`` target's models run them
(``backends.torch_model``), and tests call them in-process, so every target computes one function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the classes these wrap; imported for annotations only
    from diffusers.models import AutoencoderKL
    from transformers import CLIPModel


class TextEncoder(torch.nn.Module):
    """SD 1.x/2.x condition on the last layer's states."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, return_dict=True).last_hidden_state


class PenultimateTextEncoder(torch.nn.Module):
    """SDXL conditions on the penultimate layer's states (before the final layer norm)."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids, output_hidden_states=True, return_dict=True).hidden_states[-2]


class ProjectionTextEncoder(torch.nn.Module):
    """SDXL's second encoder: penultimate states and the pooled, projected embedding."""

    def __init__(self, text_encoder: torch.nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.text_encoder(input_ids, output_hidden_states=True, return_dict=True)
        return out.hidden_states[-2], out.text_embeds


class UNet(torch.nn.Module):
    """Takes one timestep per batch row (shape [B, 1]) so rows of different requests can share a batch."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep.reshape(-1), encoder_hidden_states, return_dict=False)[0]


class UNetXL(UNet):
    """SDXL's UNet: also the pooled text embedding and the size conditioning, one row each."""

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
        added = {"text_embeds": text_embeds, "time_ids": time_ids}
        return self.unet(sample, timestep.reshape(-1), encoder_hidden_states, added_cond_kwargs=added, return_dict=False)[0]


class VaeDecoder(torch.nn.Module):
    """Scaled latents in, images in [-1, 1] out: the scaling factor (and, where the VAE has them,
    the latents' mean and spread) live in the graph."""

    latents_mean: torch.Tensor
    latents_std: torch.Tensor

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config["scaling_factor"])  # diffusers' config: a FrozenDict
        mean, std = vae.config.get("latents_mean"), vae.config.get("latents_std")
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


class ImageEncoder(torch.nn.Module):
    """uint8 RGB [B, H, W, 3] in, unit-length CLIP embeddings out: resizing and CLIP's pixel
    normalisation live in the graph, so clients send plain images."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, clip: CLIPModel, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.vision_model = clip.vision_model
        self.projection = clip.visual_projection
        self.side = int(clip.config.vision_config.image_size)  # type: ignore[union-attr, arg-type]  # transformers' loose config types
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pixels = image.permute(0, 3, 1, 2).to(self.mean.dtype) / 255.0  # fp16 under the torch-cuda target
        # a square resize: equal to CLIP's shortest-side resize + centre crop for square images
        pixels = torch.nn.functional.interpolate(pixels, size=(self.side, self.side), mode="bilinear", align_corners=False)
        pixels = (pixels - self.mean) / self.std
        pooled = self.vision_model(pixel_values=pixels, return_dict=True).pooler_output
        return torch.nn.functional.normalize(self.projection(pooled), dim=-1)


class ClipText(torch.nn.Module):
    """Token ids in, unit-length CLIP text embeddings out (the text tower's pooled output, projected)."""

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.text_model = clip.text_model
        self.projection = clip.text_projection

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids, return_dict=True).pooler_output
        return torch.nn.functional.normalize(self.projection(pooled), dim=-1)
