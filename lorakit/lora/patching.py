"""Apply LoRA files that diffusers cannot load exactly (LoHa, LoKr, DoRA) by adding their weight deltas to the base
model's layers, the way AUTOMATIC1111 and ComfyUI apply them.

    patcher = WeightPatcher(base)                        # a lorakit BaseModel
    patcher.apply([(state_dict_a, 0.8), (state_dict_b, 1.0)])   # W = W0 + Σ strength × ΔW
    patcher.apply([])                                    # every patched layer back to W0, bit for bit

The deltas follow the readers' conventions (and the formulas lorakit's writer is tested against): LoRA/LoCon
``up @ down × alpha / rank``; LoHa ``(w1_a @ w1_b) ⊙ (w2_a @ w2_b) × alpha / rank``; LoKr ``w1 ⊗ w2``, scaled by
alpha / rank when a factor is low-rank; DoRA ``dora_scale × (W + ΔW) / ‖W + ΔW‖ − W``, the norm taken along the
axis ``dora_scale`` spans. The original weights of the patched layers are kept to restore them exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from lorakit.errors import PatchError
from lorakit.lora.network import te_key, unet_key
from lorakit.models.loading import BaseModel

# a key with one of these suffixes marks a file that diffusers' LoRA loader would refuse or apply inexactly
PATCH_MARKERS = (".hada_w1_a", ".lokr_w1", ".lokr_w1_a", ".lokr_w2", ".lokr_w2_a", ".dora_scale")




def needs_patching(keys: Iterable[str]) -> bool:
    """True for LoHa, LoKr and DoRA files: those lorakit applies itself instead of through diffusers."""
    return any(k.endswith(PATCH_MARKERS) for k in keys)


def layer_index(base: BaseModel) -> dict[str, nn.Module]:
    """{kohya key: Linear or Conv2d layer} for the UNet and the text encoder(s), looking through peft wrappers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    parts = [("lora_unet", base.unet)] + list(zip(base.family.te_prefixes(), base.text_encoders, strict=True))
    index: dict[str, nn.Module] = {}
    for prefix, model in parts:
        wrapped: list[str] = []
        for name, module in model.named_modules():
            if any(name.startswith(w + ".") for w in wrapped):
                continue  # the adapter's own layers and the wrapped base layer, reached through the wrapper
            if isinstance(module, BaseTunerLayer):
                wrapped.append(name)
                module = module.get_base_layer()
            if isinstance(module, nn.Linear | nn.Conv2d):
                index[unet_key(base, name) if prefix == "lora_unet" else te_key(prefix, name)] = module
    return index


def _groups(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    return sorted({k.split(".", 1)[0] for k in state_dict})


def layer_delta(state_dict: Mapping[str, torch.Tensor], key: str, weight: torch.Tensor) -> torch.Tensor:
    """ΔW of one layer at strength 1, float32, shaped like ``weight``."""
    def get(name: str) -> torch.Tensor | None:
        t = state_dict.get(f"{key}.{name}")
        return None if t is None else t.to(weight.device, torch.float32)

    alpha_t = get("alpha")
    if get("hada_t1") is not None or get("lokr_t2") is not None:
        raise PatchError(f"{key}: Tucker-decomposed conv factors (hada_t1 / lokr_t2) are not supported; "
                         "preview this file in AUTOMATIC1111 or ComfyUI.")
    if get("lora_down.weight") is not None:
        down, up = get("lora_down.weight"), get("lora_up.weight")
        rank = down.shape[0]
        scale = (alpha_t.item() if alpha_t is not None else rank) / rank
        delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape) * scale
        magnitude = get("dora_scale")
        if magnitude is None:
            return delta
        merged = weight.float() + delta
        axes = [d for d in range(merged.dim()) if magnitude.dim() <= d or magnitude.shape[d] == 1]
        norm = torch.linalg.vector_norm(merged, dim=axes, keepdim=True)  # per output row (out, 1, …) or per input column (1, in, …)
        return magnitude.reshape(norm.shape) * merged / norm - weight.float()
    if get("hada_w1_a") is not None:
        w1 = get("hada_w1_a") @ get("hada_w1_b")
        w2 = get("hada_w2_a") @ get("hada_w2_b")
        rank = get("hada_w1_b").shape[0]
        scale = (alpha_t.item() if alpha_t is not None else rank) / rank
        return (w1 * w2).reshape(weight.shape) * scale
    w1, w2, rank = get("lokr_w1"), get("lokr_w2"), None
    if w1 is None and get("lokr_w1_a") is not None:
        w1, rank = get("lokr_w1_a") @ get("lokr_w1_b"), get("lokr_w1_b").shape[0]
    if w2 is None and get("lokr_w2_a") is not None:
        w2, rank = get("lokr_w2_a") @ get("lokr_w2_b"), get("lokr_w2_b").shape[0]
    if w1 is None or w2 is None:
        raise PatchError(f"{key}: no LoRA, LoHa or LoKr tensors under this name.")
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    scale = (alpha_t.item() / rank) if rank and alpha_t is not None else 1.0
    return torch.kron(w1, w2).reshape(weight.shape) * scale


def limit_rank(state_dict: Mapping[str, torch.Tensor], dyn: int) -> dict[str, torch.Tensor]:
    """The file as A1111 applies it with ``dyn``: each LoRA layer's first ``dyn`` ranks, at the scale of the
    whole file (alpha / full rank, so a DyLoRA file's leading ranks keep their trained strength). LoHa and LoKr
    layers, and layers of rank ``dyn`` or less, are kept whole."""
    out = dict(state_dict)
    for key, down in state_dict.items():
        if not key.endswith(".lora_down.weight") or down.shape[0] <= dyn:
            continue
        group = key[: -len(".lora_down.weight")]
        rank = down.shape[0]
        out[key] = down[:dyn]
        out[f"{group}.lora_up.weight"] = state_dict[f"{group}.lora_up.weight"][:, :dyn]
        alpha = state_dict.get(f"{group}.alpha")
        full = alpha.float() if alpha is not None else torch.tensor(float(rank))
        out[f"{group}.alpha"] = full * dyn / rank  # alpha' / dyn == alpha / rank
    return out


class WeightPatcher:
    """Adds the deltas of LoRA files to the base model's layers, and takes them off again."""

    def __init__(self, base: BaseModel) -> None:
        self.base = base
        self.index = layer_index(base)
        self._saved: dict[str, torch.Tensor] = {}

    @property
    def patched(self) -> list[str]:
        return sorted(self._saved)

    def check(self, state_dict: Mapping[str, torch.Tensor], name: str = "this file") -> None:
        """Raise PatchError if some of the file's layers are missing from the base model (cheap: names only;
        a layer whose shape differs is caught by ``apply``)."""
        missing = [g for g in _groups(state_dict) if g not in self.index]
        if missing:
            raise PatchError(f"{name} has {len(missing)} layers this base model does not have (e.g. {missing[0]}): "
                             "it was trained for another model.")

    @torch.no_grad()
    def restore(self) -> None:
        for key, original in self._saved.items():
            self.index[key].weight.copy_(original)
        self._saved.clear()

    @torch.no_grad()
    def apply(self, files: Sequence[tuple[Mapping[str, torch.Tensor], float]
                                    | tuple[Mapping[str, torch.Tensor], float, float]]) -> None:
        """Make the weights W0 + Σ strength × ΔW for exactly these files (none: the base model's own weights).

        Each file comes with one strength, or with the UNet's and the text encoders' (A1111's unet= and te=)."""
        self.restore()
        for state_dict, unet_strength, *te in files:
            te_strength = te[0] if te else unet_strength
            if not unet_strength and not te_strength:
                continue
            for group in _groups(state_dict):
                strength = unet_strength if group.startswith("lora_unet") else te_strength
                if not strength:
                    continue
                layer = self.index[group]
                if group not in self._saved:
                    self._saved[group] = layer.weight.detach().clone()
                try:
                    delta = layer_delta(state_dict, group, self._saved[group])
                except RuntimeError as e:  # a factor whose size does not fit: leave no file half applied
                    self.restore()
                    raise PatchError(f"layer {group} does not fit this base model's {tuple(layer.weight.shape)} "
                                     f"weight ({e}): the file was trained for another model.") from None
                layer.weight.add_((delta * strength).to(layer.weight.dtype))
