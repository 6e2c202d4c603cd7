"""Merge LoRAs: several into one file at given weights, or into a base checkpoint as a new single file.

    merge_loras([("a.safetensors", 0.7), ("b.safetensors", 0.5)], "ab.safetensors")            # ranks concatenated
    merge_loras([("a.safetensors", 0.7), ("b.safetensors", 0.5)], "ab16.safetensors", rank=16)  # SVD to rank 16
    merge_into_checkpoint([("a.safetensors", 1.0)], "v1-5.safetensors", "v1-5+a.safetensors")  # fp16, new file

Concatenation is exact: up = [w₁s₁·up₁ | w₂s₂·up₂], down = [down₁; down₂], alpha = the summed rank, so readers'
alpha / rank is 1 and ΔW = Σ wᵢ ΔWᵢ. With ``rank`` the sum is cut to its best rank-k approximation per module (as
sd-scripts' svd_merge_lora.py does). Into a checkpoint: W' = W + Σ wᵢ ΔWᵢ on the file's own tensors, everything else
copied, written as a new file in the same original layout (never over an existing one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from lorakit.errors import LoraToolError
from lorakit.files import printable
from lorakit.lora.tools.checkpoint import CheckpointLayout
from lorakit.lora.tools.common import (
    FAMILY_NAMES,
    LoraData,
    ModuleChange,
    ToolReport,
    carried_bundle,
    check_output,
    derived_metadata,
    family_label,
    lora_families,
    lowrank_svd,
    module_tensors,
    read_lora,
    relative_error,
    save_dtype,
    split_factors,
    write_new,
)

CHECKPOINT_PRECISIONS = ("fp16", "bf16", "float", "keep")


def _read_all(loras: Sequence[tuple[str | Path, float]], what: str) -> tuple[list[tuple[LoraData, float]], set[str]]:
    """Every LoRA read and checked: LoRA/LoCon only, one family, equal shapes where modules coincide."""
    if not loras:
        raise LoraToolError(f"{what}: give at least one LoRA file (with its weight, e.g. a.safetensors:0.7).")
    items = [(read_lora(p), float(w)) for p, w in loras]
    for data, _ in items:
        data.only_lora(what)
    fams = lora_families(items[0][0])
    for data, _ in items[1:]:
        other = lora_families(data)
        if not fams & other:
            first = items[0][0]
            raise LoraToolError(f"{first.name} is an {family_label(fams)} LoRA and {data.name} an {family_label(other)} "
                                f"LoRA: {what} takes LoRAs of one model family only.")
        fams &= other
    seen: dict[str, tuple[str, tuple[int, ...]]] = {}
    for data, _ in items:
        for key, m in data.modules.items():
            if key in seen and seen[key][1] != m.weight_shape:
                raise LoraToolError(f"{seen[key][0]} and {data.name} change {key} with other sizes ({seen[key][1]} vs "
                                    f"{m.weight_shape}): they were trained for different base models.")
            seen.setdefault(key, (data.name, m.weight_shape))
    return items, fams


def merge_loras(loras: Sequence[tuple[str | Path, float]], out: str | Path, *, rank: int | None = None,
                conv_rank: int | None = None, precision: str = "fp16") -> ToolReport:
    """Write ``out``: Σ wᵢ ΔWᵢ as one LoRA, ranks concatenated (exact) or, with ``rank``, cut by SVD to that rank."""
    dtype = save_dtype(precision)
    out = check_output(out, *(p for p, _ in loras))
    items, fams = _read_all(loras, "merge")
    conv_rank = conv_rank or rank
    keys = sorted({k for data, _ in items for k in data.modules})
    if rank is not None:
        for r in (rank, conv_rank):
            if r < 1:
                raise LoraToolError(f"rank {r}: give a rank of 1 or more.")
        for key in keys:  # before any SVD: a rank the layer cannot have
            m = next(d.modules[key] for d, _ in items if key in d.modules)
            size = min(m.weight_shape[0], int(torch.Size(m.weight_shape[1:]).numel()))
            target = conv_rank if m.is_conv else rank
            if target > size:
                raise LoraToolError(f"rank {target} is above the size of {key} ({size}, its weight is "
                                    f"{'×'.join(map(str, m.weight_shape))}): give a rank of {size} or less.")
    tensors, dims, alphas = {}, set(), set()
    report = ToolReport(out, what="merge (concatenated ranks)" if rank is None else f"merge (SVD to rank {rank})")
    for key in keys:
        parts = [(d.modules[key], w) for d, w in items if key in d.modules]
        ups, downs = zip(*[(lambda f: (f[0] * w, f[1]))(m.factors()) for m, w in parts], strict=True)
        up, down = torch.cat(ups, 1), torch.cat(downs, 0)
        first = parts[0][0]
        up_tail = tuple(first.tensors["lora_up.weight"].shape[2:])
        down_tail = tuple(first.tensors["lora_down.weight"].shape[1:])
        total = up.shape[1]
        if rank is None:
            k, err = total, 0.0
            new_up, new_down = up.reshape(up.shape[0], total, *up_tail), down.reshape(total, *down_tail)
        else:
            u, s, vh = lowrank_svd(up, down)
            k = min(conv_rank if first.is_conv else rank, int(s.numel()))
            new_up, new_down = split_factors(u, s, vh, k, up_tail, down_tail)
            err = relative_error(s, k)
        tensors |= module_tensors(key, new_up, new_down, float(k), dtype)  # alpha = rank: the scale is in up
        dims.add(k)
        alphas.add(float(k))
        report.modules.append(ModuleChange(key, total, k, err))
    bundle, report.notes = carried_bundle(items)
    tensors |= bundle
    names = " + ".join(f"{d.name} × {w:g}" for d, w in items)
    comment = f"merged by lorakit: {names}" + ("" if rank is None else f", SVD to rank {rank}")
    meta = derived_metadata(items[0][0].metadata, out, comment, dims, alphas)
    meta["ss_network_module"] = "networks.lora"
    meta.pop("ss_network_args", None)
    if len(fams) == 1:
        meta["ss_base_model_version"] = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}[next(iter(fams))]
    meta["lorakit_merged_from"] = json.dumps([[d.name, w] for d, w in items], ensure_ascii=False)
    write_new(out, tensors, meta)
    report.old_bytes = sum(Path(p).stat().st_size for p, _ in loras)
    report.new_bytes = out.stat().st_size
    return report


def merge_into_checkpoint(loras: Sequence[tuple[str | Path, float]], base: str | Path, out: str | Path, *,
                          precision: str = "fp16", config: str | Path | None = None) -> ToolReport:
    """Write ``out``: the single-file checkpoint ``base`` with W + Σ wᵢ ΔWᵢ, in its own (original) layout.

    ``precision``: the floating tensors' type in the new file (fp16 by default; "keep": as in ``base``). ``config``:
    a diffusers folder whose unet/config.json describes a checkpoint of non-standard architecture.
    """
    from safetensors import safe_open

    if precision not in CHECKPOINT_PRECISIONS:
        raise LoraToolError(f"precision {precision!r}: use one of {', '.join(CHECKPOINT_PRECISIONS)}.")
    dtype = None if precision == "keep" else save_dtype(precision)
    out = check_output(out, base, *(p for p, _ in loras))
    layout = CheckpointLayout.of(base, config)
    items, fams = _read_all(loras, "merge")
    for data, _ in items:
        own = lora_families(data)
        if layout.family not in own:
            raise LoraToolError(f"{data.name} is an {family_label(own)} LoRA and {printable(Path(base).name)} an "
                                f"{FAMILY_NAMES.get(layout.family, layout.family)} checkpoint: merge a LoRA into the "
                                "base model family it was trained for.")
        layout.check_lora(data.modules, data.name, family_label(own))
    deltas: dict[str, list[tuple[tuple[int, int] | None, torch.Tensor]]] = {}
    report = ToolReport(out, what="merge into checkpoint")
    for data, w in items:
        for key, m in data.modules.items():
            target = layout.targets[key]
            deltas.setdefault(target.name, []).append((target.rows, m.delta() * w))
            report.modules.append(ModuleChange(key, m.rank, 0, 0.0))
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(base), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        for name in f.keys():  # noqa: SIM118 - a safetensors handle
            t = f.get_tensor(name)
            if name in deltas:
                w = t.float()
                for rows, d in deltas[name]:
                    view = w[rows[0]:rows[1]] if rows else w
                    view += d.reshape(view.shape)
                t = w.to(t.dtype if dtype is None else dtype)
            elif dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            tensors[name] = t.contiguous()
    words = sorted({w for data, _ in items for w in data.bundled_words})
    if words:
        report.notes.append(f"bundled word{'s' if len(words) > 1 else ''} {', '.join(words)} not in the checkpoint (a "
                            "checkpoint holds no embeddings): put output/embeddings/<word>.safetensors in your "
                            "embeddings folder beside it")
    metadata["lorakit_merged_loras"] = json.dumps([[d.name, w] for d, w in items], ensure_ascii=False)
    write_new(out, tensors, metadata)
    report.old_bytes, report.new_bytes = Path(base).stat().st_size, out.stat().st_size
    return report
