"""What a LoRA file holds: network type, rank / alpha per module, the ``ss_*`` training recipe, and how much each
UNet block and text-encoder layer learned (‖ΔW‖_F at strength 1), for lorakit's and other trainers' files.

    report = inspect_lora("zkx.safetensors")
    print(report.format())                     # summary, recipe, ‖ΔW‖ per block as bars
    report.heatmap("zkx-blocks.png")           # blocks × (self-attn, cross-attn, ff, proj, conv) as a picture

Blocks are named as the LoRA Block Weight extension and ComfyUI name them: IN00–IN11, MID, OUT00–OUT11 (original
UNet layout), TE00… for the text encoder's layers (TE1-/TE2- for SDXL's two).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lorakit.files import printable
from lorakit.lora.tools.common import family_label, kind_name, lora_families, read_lora

PARTS = ("self-attn", "cross-attn", "ff", "proj", "conv", "other")
RECIPE_KEYS = ("ss_output_name", "ss_sd_model_name", "ss_base_model_version", "ss_v2", "ss_v_parameterization",
               "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_resolution",
               "ss_num_train_images", "ss_num_reg_images", "ss_num_epochs", "ss_epoch", "ss_steps",
               "ss_max_train_steps", "ss_batch_size_per_device", "ss_learning_rate", "ss_unet_lr",
               "ss_text_encoder_lr", "ss_optimizer", "ss_lr_scheduler", "ss_lr_warmup_steps", "ss_mixed_precision",
               "ss_clip_skip", "ss_noise_offset", "ss_min_snr_gamma", "ss_seed", "ss_training_comment",
               "ss_training_started_at", "ss_training_finished_at")


@dataclass
class ModuleInfo:
    key: str
    kind: str
    shape: tuple[int, ...]
    rank: int
    alpha: float
    norm: float  # ‖ΔW‖_F at strength 1 (nan where it cannot be formed)
    block: str
    part: str


@dataclass
class LoraReport:
    """One LoRA file described; ``format()`` for text, ``heatmap()`` for the per-block picture."""

    path: Path
    network: str
    family: str
    modules: list[ModuleInfo]
    recipe: dict[str, str] = field(default_factory=dict)
    top_tags: list[tuple[str, int]] = field(default_factory=list)
    size_bytes: int = 0
    bundled_words: list[str] = field(default_factory=list)  # pivotal tuning: kohya's bundle_emb.<word>.*

    @property
    def ranks(self) -> dict[int, int]:
        return _count(m.rank for m in self.modules)

    @property
    def alphas(self) -> dict[float, int]:
        return _count(m.alpha for m in self.modules)

    def block_norms(self) -> tuple[list[str], dict[str, dict[str, float]]]:
        """(blocks in model order, {block: {part: √Σ‖ΔW‖²}}): the energy each block's modules carry."""
        sums: dict[str, dict[str, float]] = {}
        for m in self.modules:
            if math.isfinite(m.norm):
                row = sums.setdefault(m.block, {})
                row[m.part] = row.get(m.part, 0.0) + m.norm**2
        table = {b: {p: math.sqrt(v) for p, v in row.items()} for b, row in sums.items()}
        return sorted(table, key=_block_order), table

    def block_totals(self) -> list[tuple[str, float]]:
        blocks, table = self.block_norms()
        return [(b, math.sqrt(sum(v**2 for v in table[b].values()))) for b in blocks]

    def format(self, width: int = 40) -> str:
        ranks = ", ".join(f"{r} ×{n}" for r, n in sorted(self.ranks.items()))
        alphas = ", ".join(f"{a:g} ×{n}" for a, n in sorted(self.alphas.items()))
        lines = [f"{printable(self.path.name)}: {self.network} for {self.family}, {len(self.modules)} modules, "
                 f"{self.size_bytes / 1e6:.1f} MB",
                 f"  rank: {ranks}", f"  alpha: {alphas}"]
        if self.bundled_words:
            lines.append("  bundled words (textual inversion): " + ", ".join(self.bundled_words))
        if self.recipe:
            lines.append("recipe:")
            lines += [f"  {k.removeprefix('ss_')}: {v}" for k, v in self.recipe.items()]
        if self.top_tags:
            lines.append("  top tags: " + ", ".join(f"{t} ({n})" for t, n in self.top_tags))
        totals = self.block_totals()
        top = max((v for _, v in totals), default=0.0) or 1.0
        lines.append("‖ΔW‖ per block (strength 1):")
        lines += [f"  {b:<8} {'█' * max(1, round(width * v / top)) if v else '':<{width}} {v:.4g}" for b, v in totals]
        return "\n".join(lines)

    def to_json(self) -> str:
        blocks, table = self.block_norms()
        d = {"file": str(self.path), "network": self.network, "family": self.family, "size_bytes": self.size_bytes,
             "ranks": self.ranks, "alphas": self.alphas, "recipe": self.recipe, "top_tags": self.top_tags,
             "bundled_words": self.bundled_words, "blocks": {b: table[b] for b in blocks}, "modules": [asdict(m) for m in self.modules]}
        return json.dumps(d, indent=2, default=str, allow_nan=True)

    def heatmap(self, path: str | Path | None = None):
        """A matplotlib figure: blocks (rows) × parts (columns), colour = ‖ΔW‖_F; written to ``path`` if given."""
        import numpy as np
        from matplotlib.figure import Figure  # no pyplot: leaves the notebook's backend alone

        blocks, table = self.block_norms()
        parts = [p for p in PARTS if any(p in row for row in table.values())]
        grid = np.array([[table[b].get(p, np.nan) for p in parts] for b in blocks]) if blocks else np.zeros((0, 0))
        fig = Figure(figsize=(1.4 + 1.1 * max(1, len(parts)), 0.8 + 0.26 * max(1, len(blocks))))
        ax = fig.subplots()
        im = ax.imshow(grid, aspect="auto", cmap="magma")
        ax.set_xticks(range(len(parts)), parts)
        ax.set_yticks(range(len(blocks)), blocks)
        ax.set_title(f"‖ΔW‖ per block: {self.path.stem}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _block_order(block: str) -> tuple[int, int, str]:
    head = re.match(r"(TE\d-|TE|IN|OUT|MID|BASE)(\d*)", block)
    prefix, num = (head[1], head[2]) if head else (block, "")
    rank = {"IN": 2, "MID": 3, "OUT": 4, "BASE": 5}.get(prefix, 0 if prefix.startswith("TE") else 6)
    return rank, int(num) if num else 0, prefix


def block_of(key: str, layers_per_block: int = 2) -> str:
    """IN04, MID, OUT07, TE05 (SDXL: TE1-05, TE2-05) for a kohya key, in either UNet naming."""
    if m := re.match(r"lora_te(\d?)_text_model_encoder_layers_(\d+)_", key):
        return f"TE{m[1] + '-' if m[1] else ''}{int(m[2]):02d}"
    if key.startswith("lora_te"):
        return "TE"
    n = layers_per_block + 1
    rules = [(r"lora_unet_input_blocks_(\d+)_", lambda m: f"IN{int(m[1]):02d}"),
             (r"lora_unet_middle_block_", lambda m: "MID"),
             (r"lora_unet_output_blocks_(\d+)_", lambda m: f"OUT{int(m[1]):02d}"),
             (r"lora_unet_down_blocks_(\d+)_(?:attentions|resnets)_(\d+)_", lambda m: f"IN{int(m[1]) * n + int(m[2]) + 1:02d}"),
             (r"lora_unet_down_blocks_(\d+)_downsamplers_", lambda m: f"IN{(int(m[1]) + 1) * n:02d}"),
             (r"lora_unet_mid_block_", lambda m: "MID"),
             (r"lora_unet_up_blocks_(\d+)_(?:attentions|resnets)_(\d+)_", lambda m: f"OUT{int(m[1]) * n + int(m[2]):02d}"),
             (r"lora_unet_up_blocks_(\d+)_upsamplers_", lambda m: f"OUT{int(m[1]) * n + n - 1:02d}"),
             (r"lora_unet_(?:conv_in|input_blocks_0_0)", lambda m: "IN00")]
    for pattern, name in rules:
        if m := re.match(pattern, key):
            return name(m)
    return "BASE"  # time embedding, conv_out, …


def part_of(key: str) -> str:
    if "attn1" in key or "self_attn" in key:
        return "self-attn"
    if "attn2" in key:
        return "cross-attn"
    if "_ff_" in key or "_mlp_" in key:
        return "ff"
    if key.endswith(("proj_in", "proj_out")):
        return "proj"
    if re.search(r"conv|resnets|downsamplers|upsamplers|_layers_|skip_connection|_op$|time_emb_proj", key):
        return "conv"
    return "other"


def _layers_per_block(keys) -> int:
    """From diffusers-layout keys: 1 + the highest resnet/attention index in a down block (SD1/SD2: 2)."""
    found = [int(m[1]) for k in keys if (m := re.match(r"lora_unet_down_blocks_\d+_(?:attentions|resnets)_(\d+)_", k))]
    return max(found) + 1 if found else 2


def _network(data) -> str:
    kinds = data.kinds
    names = []
    for kind in ("lora", "dora", "loha", "lokr"):
        if kind in kinds:
            name = kind_name(kind)
            if kind == "lora" and any(m.is_conv for m in data.modules.values()):
                name = "LoCon"
            names.append(name)
    module = data.metadata.get("ss_network_module", "")
    return " + ".join(names) + (f" ({module})" if module else "")


def _top_tags(raw: str, n: int = 12) -> list[tuple[str, int]]:
    try:
        freq = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return []
    counts: dict[str, int] = {}
    for tags in (freq.values() if isinstance(freq, dict) else []):
        for tag, c in (tags.items() if isinstance(tags, dict) else []):
            counts[tag] = counts.get(tag, 0) + int(c)
    return sorted(counts.items(), key=lambda t: -t[1])[:n]


def _norm(m) -> float:
    """‖ΔW‖_F; for LoRA from the factors alone: ‖up·down‖² = Σ (upᵀup) ⊙ (down·downᵀ)."""
    if m.kind in ("lora", "dora"):
        up, down = (t.double() for t in m.factors())
        return math.sqrt(max(0.0, float(((up.T @ up) * (down @ down.T)).sum())))
    delta = m.delta()
    return float(delta.norm()) if delta is not None else math.nan


def inspect_lora(path: str | Path) -> LoraReport:
    """Read a kohya / LyCORIS LoRA file and describe it (see the module docstring)."""
    data = read_lora(path)
    lpb = _layers_per_block(data.modules)
    modules = []
    for key, m in sorted(data.modules.items()):
        norm = _norm(m)
        modules.append(ModuleInfo(key, m.kind, tuple(m.weight_shape), m.rank, m.alpha, norm, block_of(key, lpb),
                                  part_of(key)))
    recipe = {k: data.metadata[k] for k in RECIPE_KEYS if data.metadata.get(k) not in (None, "", "None")}
    return LoraReport(Path(path), _network(data), family_label(lora_families(data)), modules, recipe,
                      _top_tags(data.metadata.get("ss_tag_frequency", "")), Path(path).stat().st_size,
                      data.bundled_words)
