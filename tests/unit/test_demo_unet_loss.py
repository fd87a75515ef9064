"""The demo UNet's loss weighting, read as weights on the clean latents' squared error."""

import pytest
import torch

from ppo_demo.training.unet import MIN_SNR_GAMMA, loss_weight, noise_scheduler


def snrs() -> torch.Tensor:
    alphas = noise_scheduler().alphas_cumprod
    return alphas / (1 - alphas)


def test_epsilon_weighting_is_min_snr_on_the_clean_latents():
    # an epsilon error e is a clean-latent error e / sqrt(snr): weight w on e^2 is w * snr on the latents'
    snr = snrs()
    assert torch.allclose(loss_weight(snr, "epsilon") * snr, snr.clamp(max=MIN_SNR_GAMMA))


def test_v_weighting_keeps_the_low_noise_cap_and_weighs_high_noise_near_one():
    # a v error e is a clean-latent error e / sqrt(snr + 1)
    snr = snrs()
    on_latents = loss_weight(snr, "v_prediction") * (snr + 1)
    assert torch.allclose(on_latents, snr.clamp(max=MIN_SNR_GAMMA) + 1)
    assert on_latents[-1] > 1 > (loss_weight(snr, "epsilon") * snr)[-1] * 100  # the noisiest step: ~1 against ~0


def test_an_unknown_prediction_type_is_rejected_by_name():
    with pytest.raises(ValueError, match="sample"):
        loss_weight(torch.ones(3), "sample")
