"""Kohya-format LoRA files written by hand, as other trainers (kohya sd-scripts, OneTrainer, ...) make them."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from lorakit.models.loading import BaseModel

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TE_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")


def _linears(model: torch.nn.Module, suffixes: tuple[str, ...]) -> dict[str, torch.nn.Linear]:
    """Linear layers whose names end in one of ``suffixes`` (the base layer when an adapter wraps one)."""
    out = {}
    for n, m in model.named_modules():
        layer = m.get_base_layer() if hasattr(m, "get_base_layer") else m
        if isinstance(layer, torch.nn.Linear) and n.endswith(suffixes) and "lora_" not in n and "base_layer" not in n:
            out[n] = layer
    return out


def unet_modules(base: BaseModel) -> dict[str, torch.nn.Linear]:
    """The UNet's attention projections by module name (SD1: kohya uses the diffusers layout)."""
    return {n: m for n, m in _linears(base.unet, UNET_TARGETS).items() if "attn" in n}


def te_modules(base: BaseModel) -> dict[str, torch.nn.Linear]:
    """Text-encoder projections keyed by their transformers-4 name (text_model.encoder.layers.N...)."""
    return {(n if n.startswith("text_model.") else "text_model." + n): m
            for n, m in _linears(base.text_encoders[0], TE_TARGETS).items()}


def write_kohya_lora(path: Path, base: BaseModel, *, rank: int = 2, alpha: float = 1.0, scale: float = 0.3,
                     text_encoder: bool = True, seed: int = 0, dtype: torch.dtype = torch.float16) -> Path:
    """A random kohya file: lora_unet_* keys (and lora_te_* keys in transformers-4 naming), real alpha."""
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    groups = [("lora_unet", unet_modules(base))] + ([("lora_te", te_modules(base))] if text_encoder else [])
    for prefix, modules in groups:
        for name, mod in modules.items():
            key = f"{prefix}_{name.replace('.', '_')}"
            tensors[f"{key}.lora_down.weight"] = (torch.randn(rank, mod.in_features, generator=gen) * scale).to(dtype)
            tensors[f"{key}.lora_up.weight"] = (torch.randn(mod.out_features, rank, generator=gen) * scale).to(dtype)
            tensors[f"{key}.alpha"] = torch.tensor(alpha, dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                                            "ss_network_alpha": str(alpha)})
    return path


def expected_delta(path: Path, key: str) -> torch.Tensor:
    """alpha / rank × up @ down of one key group of a file, in fp32."""
    from safetensors.torch import load_file

    sd = load_file(str(path))
    up, down = sd[f"{key}.lora_up.weight"].float(), sd[f"{key}.lora_down.weight"].float()
    return sd[f"{key}.alpha"].float().item() / down.shape[0] * up @ down
