"""Noise and loss options of kohya's trainer: noise offset, multires (pyramid) noise, timestep range,
input perturbation, min-SNR and debiased-estimation weighting."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_noise(latents: torch.Tensor, generator: torch.Generator, offset: float = 0.0,
                 multires_iterations: int = 0, multires_discount: float = 0.3) -> torch.Tensor:
    """Gaussian noise like ``latents``, plus an optional per-channel offset and coarser pyramid levels."""
    b, c, h, w = latents.shape
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device)
    if offset:
        # a constant shift per image and channel lets the model learn overall brightness (very dark/bright images)
        noise = noise + offset * torch.randn((b, c, 1, 1), generator=generator).to(latents.device)
    for i in range(1, multires_iterations + 1):
        size = (max(1, h // 2**i), max(1, w // 2**i))
        low = torch.randn((b, c, *size), generator=generator).to(latents.device)
        noise = noise + F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False) * multires_discount**i
        if size == (1, 1):
            break
    if multires_iterations:
        noise = noise / noise.std(dim=(1, 2, 3), keepdim=True)  # back to unit variance
    return noise.to(latents.dtype)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights min(SNR, γ)/SNR (ε) or min(SNR, γ)/(SNR+1) (v): Hang et al. 2023."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps).float()
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr.clamp(min=1e-8)


def debiased_weights(scheduler, timesteps: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights 1/sqrt(SNR) (ε) or 1/(SNR+1) (v), as kohya's debiased estimation.

    They grow with the noise level, so the noisiest timesteps, where the shape and composition of the image are
    decided, count most. SNR is held in [1e-3, 1000]: infinite at t=0, and 0 at the last step of a zero-terminal-SNR
    schedule, where 1/sqrt would be infinite too.
    """
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps).float().clamp(1e-3, 1000.0)
    if prediction_type == "v_prediction":
        return 1 / (snr + 1)
    return 1 / snr.sqrt()


def sample_timesteps(n: int, generator: torch.Generator, num_train_timesteps: int, min_timestep: int = 0,
                     max_timestep: int = 1000) -> torch.Tensor:
    """A uniform random timestep per image, in [min_timestep, max_timestep) cut to the scheduler's range."""
    high = min(max_timestep, num_train_timesteps)
    low = min(min_timestep, high - 1)
    return torch.randint(low, high, (n,), generator=generator)


def training_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                    prediction_type: str) -> torch.Tensor:
    """What the UNet should output: the noise (ε) or the velocity (v)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unknown prediction type {prediction_type!r}: expected epsilon or v_prediction")
