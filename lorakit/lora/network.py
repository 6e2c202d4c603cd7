"""Adapters through peft on the UNet and text encoder(s), and their export in the keys A1111 and ComfyUI read.

    net = Network.attach(base, cfg)          # inject LoRA/LoCon/LoHa/LoKr/DoRA layers (peft), kohya's targets
    params = net.parameters("lora_unet")     # for the optimizer (text encoders: "lora_te", "lora_te1", "lora_te2")
    tensors = net.kohya_state_dict(torch.float16)   # lora_unet_… / lora_te_… keys, real alpha
    net.detach()                             # back to the plain base model (for the next run)

LoRA/LoCon (kohya): ``<prefix>_<module path with _>.lora_down.weight``, ``.lora_up.weight``, ``.alpha``; the
applied delta is ``strength × alpha / rank × up @ down``. DoRA adds ``.dora_scale`` (one magnitude per output
row, shape (out, 1, …): LyCORIS' wd_on_out layout, which ComfyUI reads; diffusers 0.42 drops it for SD
pipelines, and A1111 only knows the input-axis layout). LoHa/LoKr use LyCORIS' ``hada_*`` / ``lokr_*`` keys.
Text-encoder keys use the classic ``text_model_encoder_layers_N_…`` names whatever transformers calls the
modules; SDXL UNet keys use the original-model block names (``input_blocks_4_1_…``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from lorakit.config.schema import TrainConfig
from lorakit.models.loading import BaseModel

ADAPTER = "lorakit"
# which modules get adapters (kohya's targets) is the family's: base.family.unet_target_blocks, ... (models/families)


def _is_1x1(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)


def target_modules(model: nn.Module, blocks: tuple[str, ...], convs: bool) -> list[str]:
    """Names of the Linear (and conv) layers inside modules whose class is in ``blocks``."""
    names: list[str] = []
    for parent_name, parent in model.named_modules():
        if type(parent).__name__ not in blocks:
            continue
        for child_name, child in parent.named_modules():
            if not child_name:
                continue
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, nn.Linear) or _is_1x1(child) or (convs and isinstance(child, nn.Conv2d)):
                names.append(full)
    return sorted(set(names))


# ---- kohya key names -----------------------------------------------------------------------------------
def te_key(prefix: str, module_name: str) -> str:
    """lora_te_text_model_encoder_layers_0_self_attn_q_proj, whatever the installed transformers calls it."""
    if not module_name.startswith("text_model."):
        module_name = "text_model." + module_name
    return f"{prefix}_{module_name.replace('.', '_')}"




def unet_key(base: BaseModel, module_name: str) -> str:
    """lora_unet_… in the family's naming (SD1/SD2: the diffusers path; SDXL: the original block path)."""
    return base.family.unet_key(base.unet, module_name)


# ---- the attached network ------------------------------------------------------------------------------
@dataclass
class Network:
    """The adapter layers injected into a base model for one training run."""

    base: BaseModel
    kind: str
    rank: int
    alpha: float
    conv_rank: int
    conv_alpha: float
    parts: dict[str, nn.Module] = field(default_factory=dict)  # key prefix -> model with adapters

    @classmethod
    def attach(cls, base: BaseModel, cfg: TrainConfig) -> Network:
        """Inject the configured adapter into the UNet and, if it trains, the text encoder(s)."""
        n = cfg.network
        net = cls(base, n.type, n.rank, n.alpha, n.conv_rank or n.rank, n.conv_alpha or n.alpha)
        detach_all(base)
        convs = n.type in ("locon", "loha", "lokr")
        fam = base.family
        if n.train_unet:
            names = target_modules(base.unet, fam.unet_target_blocks + (fam.unet_conv_blocks if convs else ()), convs)
            net._inject(base.unet, names, n.dropout, conv_names={x for x in names if _is_conv(base.unet, x)})
            net.parts["lora_unet"] = base.unet
        if cfg.train_text_encoder:
            for prefix, te in zip(fam.te_prefixes(), base.text_encoders, strict=True):
                net._inject(te, target_modules(te, fam.te_target_blocks, False), n.dropout, conv_names=set())
                net.parts[prefix] = te
        if not net.parts:
            raise ValueError("Nothing to train: enable network.train_unet or set a text_encoder_lr above 0.")
        return net

    def _inject(self, model: nn.Module, names: list[str], dropout: float, conv_names: set[str]) -> None:
        from peft import inject_adapter_in_model

        config = self._peft_config(names, dropout, conv_names)
        inject_adapter_in_model(config, model, adapter_name=ADAPTER)
        for name, p in model.named_parameters():  # peft leaves them trainable; make sure, and keep them fp32
            if f".{ADAPTER}" in name or ADAPTER in name.split("."):
                p.requires_grad_(True)
                p.data = p.data.float()

    def _peft_config(self, names: list[str], dropout: float, conv_names: set[str]):
        rank_pattern = {re.escape(x): self.conv_rank for x in conv_names}
        alpha_pattern = {re.escape(x): self.conv_alpha for x in conv_names}
        common = dict(target_modules=names, rank_pattern=rank_pattern, alpha_pattern=alpha_pattern)
        if self.kind in ("lora", "locon", "dora"):
            from peft import LoraConfig

            return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=dropout, init_lora_weights="gaussian",
                              use_dora=self.kind == "dora", **common)
        if self.kind == "loha":
            from peft import LoHaConfig

            return LoHaConfig(r=self.rank, alpha=self.alpha, module_dropout=dropout, **common)
        from peft import LoKrConfig

        return LoKrConfig(r=self.rank, alpha=self.alpha, module_dropout=dropout, **common)

    @property
    def has_text_encoder(self) -> bool:
        return any(k.startswith("lora_te") for k in self.parts)

    # ---- parameters ----------------------------------------------------------------------------------
    def _adapter_params(self, model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        """The adapter's own trainable tensors (not others trained inside the model, e.g. pivotal tuning's words)."""
        for name, p in model.named_parameters():
            if p.requires_grad and (f".{ADAPTER}" in name or ADAPTER in name.split(".")):
                yield name, p

    def parameters(self, prefix: str) -> list[nn.Parameter]:
        return [p for _, p in self._adapter_params(self.parts[prefix])]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """All adapter tensors by (part, parameter name): for resume, not for sharing."""
        return {f"{prefix}:{name}": p.detach().clone() for prefix, model in self.parts.items()
                for name, p in self._adapter_params(model)}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for prefix, model in self.parts.items():
            params = dict(model.named_parameters())
            for key, value in state.items():
                part, _, name = key.partition(":")
                if part == prefix:
                    params[name].data.copy_(value)

    # ---- kohya / LyCORIS export ----------------------------------------------------------------------
    def kohya_state_dict(self, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """The adapter in the keys A1111/ComfyUI read, in ``dtype`` (alpha always as a float32 scalar).

        LoRA/LoCon/DoRA: ``lora_down``/``lora_up``/``alpha`` (+ ``dora_scale``); LoHa: ``hada_w1_a`` … ``hada_w2_b``;
        LoKr: ``lokr_w1`` (or ``_a``/``_b``), ``lokr_w2`` (or ``_a``/``_b``, ``lokr_t2``). Readers scale by alpha / rank.
        """
        from peft.tuners.tuners_utils import BaseTunerLayer

        out: dict[str, torch.Tensor] = {}
        for prefix, model in self.parts.items():
            for name, module in model.named_modules():
                if not isinstance(module, BaseTunerLayer) or ADAPTER not in getattr(module, "r", {}):
                    continue
                key = unet_key(self.base, name) if prefix == "lora_unet" else te_key(prefix, name)
                tensors, alpha = _export_layer(module)
                out.update({f"{key}.{k}": v.detach().to(dtype).contiguous().cpu() for k, v in tensors.items()})
                out[f"{key}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
        if not out:
            raise ValueError("the network has no adapter layers to export (was it detached?)")
        return out

    # ---- strength ------------------------------------------------------------------------------------
    @contextmanager
    def at_strength(self, strength: float) -> Iterator[None]:
        """Run the model with the adapter at ``strength`` × its trained scale (0 = the adapter off: the base
        model); the exact scale and on/off state of every layer come back afterwards, even after an error."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for model in self.parts.values() for m in model.modules()
                  if isinstance(m, BaseTunerLayer) and ADAPTER in getattr(m, "scaling", {})]
        saved = [(m, m.scaling[ADAPTER], m._disable_adapters) for m in layers]
        try:
            for m, scale, _ in saved:
                if strength == 0:  # off rather than × 0: DoRA's magnitude would still apply at scale 0
                    m._disable_adapters = True
                else:
                    m.scaling[ADAPTER] = scale * strength
            yield
        finally:
            for m, scale, disabled in saved:
                m.scaling[ADAPTER] = scale
                m._disable_adapters = disabled

    def detach(self) -> None:
        detach_all(self.base)
        self.parts.clear()


def _export_layer(module) -> tuple[dict[str, torch.Tensor], float]:
    """One peft layer's tensors under LyCORIS/kohya names, and the alpha that makes readers' alpha/rank right."""
    from peft.tuners.loha import LoHaLayer
    from peft.tuners.lokr import LoKrLayer
    from peft.tuners.lora import LoraLayer

    if isinstance(module, LoraLayer):
        return _lora_tensors(module), module.lora_alpha[ADAPTER]
    if isinstance(module, LoHaLayer):  # delta = (w1_a @ w1_b) * (w2_a @ w2_b) * alpha / r, as in peft
        names = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
        return _adapter_params(module, names), module.alpha[ADAPTER]
    if isinstance(module, LoKrLayer):
        return _lokr_tensors(module)
    raise NotImplementedError(f"no export for adapter layer {type(module).__name__}")


def _adapter_params(module, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {n: getattr(module, n)[ADAPTER] for n in names if ADAPTER in getattr(module, n)}


def _lora_tensors(module) -> dict[str, torch.Tensor]:
    """lora_down/up; DoRA's magnitude as ``dora_scale`` shaped (out, 1, …): LyCORIS' wd_on_out layout."""
    down = module.lora_A[ADAPTER].weight
    tensors = {"lora_down.weight": down, "lora_up.weight": module.lora_B[ADAPTER].weight}
    if ADAPTER in getattr(module, "lora_magnitude_vector", {}):
        mag = module.lora_magnitude_vector[ADAPTER].weight.reshape(-1)  # peft: (out,) linear, (1, out, 1, 1) conv
        tensors["dora_scale"] = mag.reshape(mag.numel(), *([1] * (down.dim() - 1)))
    return tensors


def _lokr_tensors(module) -> tuple[dict[str, torch.Tensor], float]:
    """LoKr factors. Readers apply alpha/rank only when a factor is low-rank (else scale 1, alpha ignored), so
    with two full factors peft's scale alpha/r is folded into ``lokr_w1``."""
    names = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
    tensors = _adapter_params(module, names)
    if "lokr_w1" in tensors and "lokr_w2" in tensors:
        tensors["lokr_w1"] = tensors["lokr_w1"].float() * module.scaling[ADAPTER]
        return tensors, float(module.r[ADAPTER])
    return tensors, module.alpha[ADAPTER]


def _is_conv(model: nn.Module, name: str) -> bool:
    module = model.get_submodule(name)
    return isinstance(module, nn.Conv2d) and not _is_1x1(module)


def detach_all(base: BaseModel) -> None:
    """Remove every injected adapter layer, restoring the base model's own modules (no merging)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    words = base.extra.get("added_words")
    if words is not None:  # new tokens (pivotal tuning, a previewed embedding): the model's own tokenizers back
        words.remove()
    base.extra.get("adapters", {}).clear()  # a Generator reloads its LoRA files after this
    base.extra.get("bundled", {}).clear()
    base.extra.pop("words_key", None)
    base.extra.get("patch_files", {}).clear()
    patcher = base.extra.get("patcher")
    if patcher is not None:  # LoHa/LoKr/DoRA files a Generator added to the weights: take them off
        patcher.restore()

    for model in [base.unet, *base.text_encoders]:
        for name, module in list(model.named_modules()):
            if isinstance(module, BaseTunerLayer) and name:
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                setattr(parent, child, module.get_base_layer())
        model.__dict__.pop("peft_config", None)  # as if no adapter had ever been added
        if hasattr(model, "_hf_peft_config_loaded"):
            model._hf_peft_config_loaded = False
