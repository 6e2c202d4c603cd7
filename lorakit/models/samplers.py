"""Samplers by their AUTOMATIC1111 names (or kohya's), as diffusers schedulers."""

from __future__ import annotations

import difflib
import inspect
import warnings

from lorakit.errors import GenerateError

SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    # diffusers' documented stand-in for A1111's stochastic sampler (its own SDE scheduler needs torchsde)
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    # diffusers' DDIM clips the predicted x0 to [-1, 1] unless told not to: right for pixels, wrong for latents
    "DDIM": ("DDIMScheduler", {"clip_sample": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    # the rest of sd-scripts' sample_sampler list (each as sd-scripts builds it)
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),  # as SD 1.x ships it; PRK steps break below ~4 steps
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM Solver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}),  # kohya's dpmsolver
    "DPM++ 2S": ("DPMSolverSinglestepScheduler", {}),  # kohya's dpmsingle
}


_SAMPLER_OPTIONS = {k for _, extra in SAMPLERS.values() for k in extra}


SAMPLER_ALIASES = {
    "euler_a": "Euler a", "k_euler_a": "Euler a", "euler": "Euler", "k_euler": "Euler", "ddim": "DDIM",
    "dpm++_2m": "DPM++ 2M", "dpmsolver++": "DPM++ 2M", "dpm++_2m_karras": "DPM++ 2M Karras",
    "dpm++_sde_karras": "DPM++ SDE Karras", "unipc": "UniPC", "heun": "Heun", "k_lms": "LMS", "lms": "LMS",
    "pndm": "PNDM", "dpm_2": "DPM2", "k_dpm_2": "DPM2", "dpm2": "DPM2", "dpm_2_a": "DPM2 a", "k_dpm_2_a": "DPM2 a",
    "dpm2_a": "DPM2 a", "dpmsolver": "DPM Solver", "dpmsingle": "DPM++ 2S", "dpm++_2s": "DPM++ 2S",
}

# sd-scripts' sample_sampler choices (library/train_util.py): every one is a lorakit sampler above
KOHYA_SAMPLERS = ("ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a", "dpmsolver", "dpmsolver++",
                  "dpmsingle", "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a")


def sampler_name(name: str) -> str:
    """Normalise an A1111 or kohya sampler name; an unknown one lists the known ones."""
    if name in SAMPLERS:
        return name
    low = name.strip().lower().replace(" ", "_")
    if low in SAMPLER_ALIASES:
        return SAMPLER_ALIASES[low]
    for known in SAMPLERS:
        if known.lower() == name.strip().lower():
            return known
    names = {k.lower(): k for k in SAMPLERS} | SAMPLER_ALIASES  # A1111 and kohya spellings, lower case
    near = difflib.get_close_matches(low, list(names), n=1, cutoff=0.5)
    hint = f" Did you mean {names[near[0]]!r}?" if near else ""
    raise GenerateError(f"unknown sampler {name!r}.{hint} Known: {', '.join(SAMPLERS)}")


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

