"""Sampler names: AUTOMATIC1111's, with kohya's spellings as aliases, and the diffusers scheduler each one is.
Plain data, so that config validation can refuse an unknown name before any model loads
(lorakit.models.samplers builds the schedulers).

    sampler_name("k_dpm_2_a")  # 'DPM2 a'
"""

from __future__ import annotations

import difflib

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
