"""Standardising the demo VAE's latent channels changes their coordinates, never the images."""

import torch

from ppo_demo.training.vae import build_vae, with_standard_latents


def test_standard_latents_have_unit_spread_per_channel_and_decode_to_the_same_images():
    torch.manual_seed(0)
    vae = build_vae().eval()
    with torch.no_grad():  # give the channels unequal spreads and offsets, as a trained VAE has
        vae.quant_conv.weight[:8] *= torch.linspace(0.2, 3.0, 8).view(-1, 1, 1, 1)
        vae.quant_conv.bias[:8] += torch.linspace(-1, 1, 8)
    pixels = torch.rand(32, 3, 64, 64) * 2 - 1
    standard = with_standard_latents(vae, pixels)
    with torch.no_grad():
        before = vae.encode(pixels).latent_dist
        after = standard.encode(pixels).latent_dist
        assert torch.allclose(after.mode().mean((0, 2, 3)), torch.zeros(8), atol=1e-4)
        assert torch.allclose(after.mode().std((0, 2, 3)), torch.ones(8), atol=1e-4)
        assert torch.allclose(vae.decode(before.mode()).sample, standard.decode(after.mode()).sample, atol=1e-4)
        # the posterior's spread is rescaled with its mean: a sample maps to a sample
        assert torch.allclose(after.std * before.mode().std((0, 2, 3)).view(1, -1, 1, 1), before.std, rtol=1e-4)
    assert standard.config.scaling_factor == 1.0 and vae.config.scaling_factor != 1.0
