"""Single-file checkpoints (.safetensors from an A1111/ComfyUI models folder), loaded offline."""

from __future__ import annotations

from pathlib import Path


def load_single_file(path: Path, family: str = "auto", dtype=None):
    """Load a single-file checkpoint offline (not yet supported: see the error)."""
    from lorakit.models import ModelError

    raise ModelError(
        f"{path.name}: single-file checkpoints are not supported yet. Convert it to a diffusers folder "
        "(diffusers' scripts/convert_original_stable_diffusion_to_diffusers.py) and give that folder."
    )
