"""Noise and loss options: noise offset, multires noise, timestep range, min-SNR and debiased weights, ε / v targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from lorakit.train.noise import (
    debiased_weights,
    min_snr_weights,
    sample_noise,
    sample_timesteps,
    training_target,
)

SCHED = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def _latents(b: int = 64, size: int = 32) -> torch.Tensor:
    return torch.zeros(b, 4, size, size)


def _noise(seed: int = 0, **kw) -> torch.Tensor:
    return sample_noise(_latents(), torch.Generator().manual_seed(seed), **kw)


def test_noise_is_seeded_and_shaped_like_the_latents():
    a, b = _noise(0), _noise(0)
    assert torch.equal(a, b) and a.shape == _latents().shape and a.dtype == torch.float32
    assert not torch.equal(a, _noise(1))
    half = sample_noise(_latents().half(), torch.Generator().manual_seed(0))
    assert half.dtype == torch.float16


def test_noise_offset_shifts_each_channel():
    plain = _noise(0).mean(dim=(2, 3)).std().item()
    offset = _noise(0, offset=0.5).mean(dim=(2, 3)).std().item()
    assert plain < 0.1, "plain noise: channel means near 0 (1/32 spread)"
    assert 0.4 < offset < 0.6, "offset 0.5: each image/channel gets a shift with std 0.5"


def test_multires_noise_has_unit_variance_and_more_low_frequencies():
    plain, pyramid = _noise(0), _noise(0, multires_iterations=6, multires_discount=0.3)
    assert torch.allclose(pyramid.std(dim=(1, 2, 3)), torch.ones(64), atol=1e-5)
    low = lambda x: F.avg_pool2d(x, 8).std().item()  # noqa: E731
    assert low(pyramid) > 1.1 * low(plain), "kohya's 6 / 0.3: a little more coarse structure"
    strong = _noise(0, multires_iterations=6, multires_discount=0.8)
    assert low(strong) > 3 * low(plain)


def test_min_snr_weights_follow_the_paper():
    t = torch.tensor([1, 100, 500, 999])
    snr = SCHED.alphas_cumprod[t] / (1 - SCHED.alphas_cumprod[t])
    eps = min_snr_weights(SCHED, t, 5.0, "epsilon")
    v = min_snr_weights(SCHED, t, 5.0, "v_prediction")
    torch.testing.assert_close(eps, torch.minimum(snr, torch.tensor(5.0)) / snr)
    torch.testing.assert_close(v, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    assert eps[0] < 0.01 and eps[-1] == 1.0, "low-noise steps are damped, noisy steps keep weight 1"


ZERO_SNR = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         rescale_betas_zero_snr=True, prediction_type="v_prediction")


def test_debiased_weights_grow_with_the_noise_and_stay_finite():
    t = torch.tensor([0, 1, 100, 500, 900, 999])
    snr = SCHED.alphas_cumprod[t] / (1 - SCHED.alphas_cumprod[t])
    eps = debiased_weights(SCHED, t, "epsilon")
    torch.testing.assert_close(eps[1:], 1 / snr[1:].clamp(max=1000).sqrt())
    v = debiased_weights(SCHED, t, "v_prediction")
    torch.testing.assert_close(v[1:], 1 / (snr[1:] + 1))
    assert (eps.diff() > 0).all() and (v.diff() > 0).all(), "the noisier the step, the more it weighs"
    # zero terminal SNR: the last step has SNR 0, where 1/sqrt(SNR) would be infinite
    last = torch.tensor([999])
    assert ZERO_SNR.alphas_cumprod[999] < 1e-6
    assert debiased_weights(ZERO_SNR, last, "v_prediction").item() == pytest.approx(1.0, abs=1e-2)
    assert torch.isfinite(debiased_weights(ZERO_SNR, last, "epsilon")).all()


def test_timesteps_stay_in_the_asked_range():
    gen = torch.Generator().manual_seed(0)
    full = sample_timesteps(4000, gen, 1000)
    assert full.min() == 0 and full.max() == 999, "by default every timestep can be drawn"
    part = sample_timesteps(4000, gen, 1000, min_timestep=200, max_timestep=700)
    assert part.min() == 200 and part.max() == 699
    short = sample_timesteps(100, gen, 500, min_timestep=0, max_timestep=1000)
    assert short.max() < 500, "cut to the scheduler's own number of timesteps"
    a = sample_timesteps(8, torch.Generator().manual_seed(3), 1000)
    assert torch.equal(a, sample_timesteps(8, torch.Generator().manual_seed(3), 1000))


def test_targets():
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([10, 900])
    assert torch.equal(training_target(SCHED, x0, noise, t, "epsilon"), noise)
    a = SCHED.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
    s = (1 - SCHED.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(training_target(SCHED, x0, noise, t, "v_prediction"), a * noise - s * x0)
    with pytest.raises(ValueError, match="v_prediction"):
        training_target(SCHED, x0, noise, t, "sample")
