"""Resize a LoRA to a lower rank by SVD of each module's ΔW (as sd-scripts' resize_lora.py does).

    report = resize_lora("zkx.safetensors", "zkx-r8.safetensors", rank=8)                  # every module rank 8
    report = resize_lora(src, out, rank=32, method="sv_fro", param=0.9)   # per module: 90 % of ‖ΔW‖_F, at most 32
    print(report.format())                                                 # error per module, sizes before/after

The kept part is the best rank-k approximation of ΔW (Eckart–Young), so the relative error is the spectrum's tail
√(Σ_{i>k} s_i² / Σ s_i²). alpha becomes scale × k, so readers' alpha / rank gives the source's scale back.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.errors import LoraToolError
from lorakit.lora.tools.common import (
    ModuleChange,
    ToolReport,
    carried_bundle,
    check_method,
    check_output,
    choose_rank,
    derived_metadata,
    lowrank_svd,
    module_tensors,
    read_lora,
    relative_error,
    save_dtype,
    split_factors,
    write_new,
)


def resize_lora(src: str | Path, out: str | Path, rank: int, *, method: str = "fixed", param: float | None = None,
                conv_rank: int | None = None, precision: str = "fp16") -> ToolReport:
    """Write ``out``: ``src`` with each module's rank lowered to ``rank`` (3×3 convs: ``conv_rank``), or chosen per
    module by ``method`` (sv_ratio / sv_fro / sv_cumulative with ``param``), ``rank`` then being the most kept."""
    check_method(method, param)
    dtype = save_dtype(precision)
    out = check_output(out, src)
    data = read_lora(src)
    data.only_lora("resize")
    conv_rank = conv_rank or rank
    for r, what in ((rank, "rank"), (conv_rank, "conv rank")):
        if r < 1:
            raise LoraToolError(f"{what} {r}: give a rank of 1 or more.")
    for kind, target in (("linear", rank), ("conv", conv_rank)):
        ranks = [m.rank for m in data.modules.values() if m.is_conv == (kind == "conv")]
        if method == "fixed" and ranks and target > max(ranks):
            raise LoraToolError(f"{data.name} has {kind} modules of rank {max(ranks)} at most: a resize to {target} "
                                f"cannot add anything. Give a rank of {max(ranks)} or less.")
    tensors, report = {}, ToolReport(out, what=f"resize ({method}{'' if param is None else f' {param}'})")
    dims, alphas = set(), set()
    for key, m in sorted(data.modules.items()):
        up, down = m.tensors["lora_up.weight"].float(), m.tensors["lora_down.weight"].float()
        u, s, vh = lowrank_svd(up.flatten(1), down.flatten(1))  # SVD of up @ down: alpha / rank stays outside
        k = choose_rank(s, conv_rank if m.is_conv else rank, method, param)
        new_up, new_down = split_factors(u, s, vh, k, tuple(up.shape[2:]), tuple(down.shape[1:]))
        alpha = m.scale * k
        tensors |= module_tensors(key, new_up, new_down, alpha, dtype)
        dims.add(k)
        alphas.add(alpha)
        report.modules.append(ModuleChange(key, m.rank, k, relative_error(s, k)))
    bundle, report.notes = carried_bundle([(data, 1.0)])
    tensors |= bundle
    comment = f"resized by lorakit from {data.name} ({method}, rank {rank}{'' if param is None else f', {param}'})"
    write_new(out, tensors, derived_metadata(data.metadata, out, comment, dims, alphas))
    report.old_bytes, report.new_bytes = Path(src).stat().st_size, out.stat().st_size
    return report
