"""Extract a LoRA from a fine-tuned checkpoint: the best rank-k approximation of W_tuned − W_base per layer (as
sd-scripts' extract_lora_from_models.py does).

    report = extract_lora("tuned.safetensors", "v1-5.safetensors", "tuned-r32.safetensors", rank=32)
    report = extract_lora(tuned, base, out, rank=32, conv_rank=8)      # a LoCon: the ResNet convs too

Both are single-file checkpoints of one family. The layers are those lorakit's own LoRA trains (attention and
projections of the UNet, the text encoder's attention and MLP; with ``conv_rank`` the UNet's convs); layers that
did not change are left out. alpha = rank, so the file's ΔW is exactly up @ down.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lorakit.errors import LoraToolError
from lorakit.files import printable
from lorakit.lora.tools.checkpoint import CheckpointLayout
from lorakit.lora.tools.common import (
    ModuleChange,
    ToolReport,
    check_output,
    full_svd,
    module_tensors,
    relative_error,
    save_dtype,
    split_factors,
    write_new,
)

_VERSIONS = {"sd1": ("sd_v1", "False", "stable-diffusion-v1/lora"), "sd2": ("sd_v2", "True", "stable-diffusion-v2-512/lora"),
             "sdxl": ("sdxl_base_v1-0", "False", "stable-diffusion-xl-v1-base/lora")}


def extract_lora(tuned: str | Path, base: str | Path, out: str | Path, rank: int, *, conv_rank: int | None = None,
                 text_encoder: bool = True, precision: str = "fp16", config: str | Path | None = None,
                 min_diff: float = 1e-6) -> ToolReport:
    """Write ``out``: a LoRA of ``rank`` (3×3 convs: ``conv_rank``, none without it) with ΔW ≈ tuned − base."""
    from safetensors import safe_open

    dtype = save_dtype(precision)
    out = check_output(out, tuned, base)
    if rank < 1 or (conv_rank is not None and conv_rank < 1):
        raise LoraToolError(f"rank {rank if rank < 1 else conv_rank}: give a rank of 1 or more.")
    a, b = CheckpointLayout.of(tuned, config), CheckpointLayout.of(base, config)
    if a.family != b.family:
        raise LoraToolError(f"{printable(a.path.name)} is an {a.family_label} checkpoint and {printable(b.path.name)} "
                            f"an {b.family_label} one: extract from a fine-tune and the base model it was tuned from.")
    keys = sorted(a.trained | (a.conv_trained if conv_rank else set()))
    if not text_encoder:
        keys = [k for k in keys if k.startswith("lora_unet_")]
    for key in keys:  # every refusal before the first SVD
        t = a.targets[key]
        if a.shapes.get(t.name) != b.shapes.get(t.name):
            raise LoraToolError(f"{printable(a.path.name)} and {printable(b.path.name)} differ in the shape of {t.name} "
                                f"({a.shapes.get(t.name)} vs {b.shapes.get(t.name)}): they are not the same architecture.")
        size = min(t.shape[0], int(torch.Size(t.shape[1:]).numel()))
        k = conv_rank if len(t.shape) == 4 and t.shape[2:] != (1, 1) else rank
        if k > size:
            raise LoraToolError(f"rank {k} is above the size of {key} ({size}, its weight is "
                                f"{'×'.join(map(str, t.shape))}): give a rank of {size} or less.")
    tensors: dict[str, torch.Tensor] = {}
    report = ToolReport(out, what=f"extract (rank {rank}{'' if conv_rank is None else f', conv {conv_rank}'})")
    with safe_open(str(tuned), framework="pt") as ft, safe_open(str(base), framework="pt") as fb:
        for key in keys:
            t = a.targets[key]
            diff = (t.read(ft.get_tensor(t.name)).float() - t.read(fb.get_tensor(t.name)).float()).reshape(t.shape)
            if diff.abs().max() <= min_diff:
                continue  # this layer was not tuned
            conv = diff.dim() == 4 and diff.shape[2:] != (1, 1)
            u, s, vh = full_svd(diff.flatten(1))
            k = min(conv_rank if conv else rank, int(s.numel()))
            up_tail = (1, 1) if diff.dim() == 4 else ()  # conv: up (out, k, 1, 1), down (k, in, kh, kw)
            up, down = split_factors(u, s, vh, k, up_tail, tuple(diff.shape[1:]))
            tensors |= module_tensors(key, up, down, float(k), dtype)
            report.modules.append(ModuleChange(key, min(diff.shape[0], diff[0].numel()), k, relative_error(s, k)))
    if not tensors:
        raise LoraToolError(f"{printable(a.path.name)} and {printable(b.path.name)} have the same weights in every "
                            f"layer a LoRA adapts (differences ≤ {min_diff}): nothing to extract.")
    version, v2, arch = _VERSIONS[a.family]
    comment = f"extracted by lorakit from {printable(a.path.name)} − {printable(b.path.name)} at rank {rank}"
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(float(rank)),
            "ss_base_model_version": version, "ss_v2": v2, "ss_sd_model_name": b.path.name,
            "ss_output_name": out.stem, "ss_training_comment": comment, "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": arch, "modelspec.title": out.stem}
    if conv_rank:
        meta["ss_network_args"] = json.dumps({"conv_dim": str(conv_rank), "conv_alpha": str(float(conv_rank))})
    write_new(out, tensors, meta)
    report.old_bytes, report.new_bytes = Path(tuned).stat().st_size, out.stat().st_size
    return report
