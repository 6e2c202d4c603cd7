"""Samplers by their AUTOMATIC1111 names (or kohya's), as diffusers schedulers."""

from __future__ import annotations

import inspect
import warnings

from lorakit.config.sampler_names import KOHYA_SAMPLERS, SAMPLER_ALIASES, SAMPLERS, sampler_name

__all__ = ["KOHYA_SAMPLERS", "SAMPLERS", "SAMPLER_ALIASES", "make_scheduler", "sampler_name"]

_SAMPLER_OPTIONS = {k for _, extra in SAMPLERS.values() for k in extra}


def make_scheduler(pipe_scheduler_config, name: str):
    """A diffusers scheduler for an A1111 sampler name, keeping the model's prediction type and betas."""
    import diffusers

    cls_name, extra = SAMPLERS[sampler_name(name)]
    cls = getattr(diffusers, cls_name)
    if pipe_scheduler_config.get("rescale_betas_zero_snr"):
        if not _accepts(cls, "rescale_betas_zero_snr"):
            warnings.warn(f"{name}: {cls_name} ignores the model's zero-terminal-SNR schedule; backgrounds may come "
                          "out wrong. Prefer Euler a, Euler, DPM++ 2M, DDIM or UniPC with this model.", stacklevel=2)
        elif extra.get("use_karras_sigmas"):
            # Karras spacing from sigma_max = 4096 puts most steps at t = 999 (and diffusers' index runs past
            # its end at 25+ steps): sample on the model's own spacing instead
            warnings.warn(f"{name}: Karras sigmas do not suit a zero-terminal-SNR model; using the model's own "
                          "timestep spacing.", stacklevel=2)
            extra = {k: v for k, v in extra.items() if k != "use_karras_sigmas"}
    # drop what an earlier sampler set (Karras sigmas), so that "Euler" after "DPM++ 2M Karras" is plain Euler
    base_config = {k: v for k, v in dict(pipe_scheduler_config).items() if k not in _SAMPLER_OPTIONS}
    return cls.from_config(base_config, **extra)


def _accepts(cls, option: str) -> bool:
    return option in inspect.signature(cls.__init__).parameters

