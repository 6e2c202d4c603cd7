"""Every network kind is written in the keys A1111/ComfyUI read, and the applied delta equals the trained one.

LoRA and LoCon files are loaded back with diffusers (``load_lora_weights``). DoRA (whose ``dora_scale`` diffusers
0.42 drops for SD pipelines), LoHa and LoKr are rebuilt with the formulas LyCORIS and the A1111/ComfyUI loaders use,
written here from their conventions: scale = alpha / rank of the low-rank factor (LoKr with two full factors:
scale 1); DoRA with wd_on_out: W' = dora_scale · (W + ΔW) / ‖W + ΔW‖ per output row.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorakit.config.schema import TrainConfig
from lorakit.lora.network import ADAPTER, Network, detach_all, te_key, unet_key
from lorakit.models.loading import load_base

KINDS = ("lora", "locon", "dora", "loha", "lokr")


def _config(kind: str, train_te: bool = True) -> TrainConfig:
    cfg = TrainConfig()
    cfg.network.type, cfg.network.rank, cfg.network.alpha = kind, 4, 2.0  # alpha != rank: scale 0.5
    if kind != "dora":
        cfg.network.conv_rank, cfg.network.conv_alpha = 2, 3.0
    cfg.optimizer.text_encoder_lr = 1e-4 if train_te else 0.0
    return cfg


def _perturb(net: Network, seed: int = 0) -> None:
    """Stand in for training: every adapter tensor moves away from its (partly zero) initialisation."""
    gen = torch.Generator().manual_seed(seed)
    for model in net.parts.values():
        for p in model.parameters():
            if p.requires_grad:
                p.data += 0.2 * torch.randn(p.shape, generator=gen)


def applied_delta(module, adapter: str) -> torch.Tensor:
    """W_applied - W of one adapted layer, measured through its forward pass (so DoRA's rescaling counts)."""
    base = module.get_base_layer()
    module.set_adapter(adapter)
    module.eval()
    with torch.no_grad():
        if isinstance(base, torch.nn.Linear):
            x = torch.eye(base.in_features)
            return (module(x) - base(x)).T
        if base.kernel_size == (1, 1):
            x = torch.eye(base.in_channels)[:, :, None, None]
            return (module(x) - base(x)).permute(1, 0, 2, 3)
        return module.get_delta_weight(adapter)


def adapted_layers(base, adapter: str) -> dict[str, object]:
    """{file key: peft layer} for every layer that carries ``adapter``."""
    parts = [("lora_unet", base.unet)] + list(zip(base.family.te_prefixes(), base.text_encoders, strict=True))
    out = {}
    for prefix, model in parts:
        for name, module in model.named_modules():
            if adapter in getattr(module, "r", {}) and hasattr(module, "get_base_layer"):
                out[unet_key(base, name) if prefix == "lora_unet" else te_key(prefix, name)] = module
    return out


def lycoris_delta(sd: dict[str, torch.Tensor], key: str, shape: torch.Size) -> torch.Tensor:
    """The weight delta A1111/ComfyUI build from a LoHa or LoKr entry at strength 1."""
    get = lambda name: sd.get(f"{key}.{name}")  # noqa: E731
    alpha = get("alpha").item()
    if get("hada_w1_a") is not None:
        w = (get("hada_w1_a") @ get("hada_w1_b")) * (get("hada_w2_a") @ get("hada_w2_b"))
        return w.reshape(shape) * alpha / get("hada_w1_b").shape[0]
    dim = None
    w1 = get("lokr_w1")
    if w1 is None:
        w1, dim = get("lokr_w1_a") @ get("lokr_w1_b"), get("lokr_w1_b").shape[0]
    w2 = get("lokr_w2")
    if w2 is None:
        w2, dim = get("lokr_w2_a") @ get("lokr_w2_b"), get("lokr_w2_b").shape[0]
    if w2.dim() == 4:
        w1 = w1[:, :, None, None]
    scale = alpha / dim if dim else 1.0
    return torch.kron(w1, w2).reshape(shape) * scale


def dora_delta(sd: dict[str, torch.Tensor], key: str, weight: torch.Tensor) -> torch.Tensor:
    """DoRA as LyCORIS applies it with wd_on_out: m · (W + ΔW) / ‖W + ΔW‖ per output row, minus W."""
    up, down = sd[f"{key}.lora_up.weight"], sd[f"{key}.lora_down.weight"]
    delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape) * sd[f"{key}.alpha"].item() / down.shape[0]
    merged = weight + delta
    norm = merged.flatten(1).norm(dim=1).reshape(-1, *([1] * (weight.dim() - 1)))
    return sd[f"{key}.dora_scale"] * merged / norm - weight


def _groups(sd: dict[str, torch.Tensor]) -> set[str]:
    return {k.rsplit(".", 1)[0] for k in sd if k.endswith(".alpha")}


@pytest.fixture(scope="module")
def models(tiny_sd1, tiny_sdxl):
    return {"sd1": str(tiny_sd1), "sdxl": str(tiny_sdxl)}


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@pytest.mark.parametrize("kind", KINDS)
def test_written_file_applies_the_trained_delta(models, tmp_path, family, kind):
    base = load_base(models[family])
    net = Network.attach(base, _config(kind))
    _perturb(net)
    layers = adapted_layers(base, ADAPTER)
    trained = {k: applied_delta(m, ADAPTER) for k, m in layers.items()}
    weights = {k: m.get_base_layer().weight.detach().clone() for k, m in layers.items()}
    sd = net.kohya_state_dict(torch.float32)
    net.detach()
    path = tmp_path / f"{kind}.safetensors"
    save_file(sd, str(path))
    sd = load_file(str(path))
    assert _groups(sd) == set(trained), "one entry per adapted layer, named as the reader expects"
    prefixes = ("lora_unet_", "lora_te1_", "lora_te2_") if family == "sdxl" else ("lora_unet_", "lora_te_")
    assert all(g.startswith(prefixes) for g in _groups(sd))
    if family == "sdxl":
        assert any(g.startswith("lora_unet_input_blocks_") for g in _groups(sd)), "SGM block names for SDXL"
        assert not any(g.startswith("lora_unet_down_blocks") for g in _groups(sd))
    try:
        if kind == "dora":  # diffusers 0.42's SD1/SDXL loaders drop dora_scale (with a warning): use LyCORIS' formula
            loaded = {k: dora_delta(sd, k, w) for k, w in weights.items()}
        elif kind in ("lora", "locon", "dora"):
            # folder + weight_name: diffusers before 0.40 refuses a bare file path offline (the floors run)
            base.pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="reload")
            loaded = {k: applied_delta(m, "reload") for k, m in adapted_layers(base, "reload").items()}
            assert set(loaded) == set(trained), "diffusers applied every key of the file, and only those"
        else:
            loaded = {k: lycoris_delta(sd, k, delta.shape) for k, delta in trained.items()}
        for key, delta in trained.items():
            assert delta.abs().max() > 0
            torch.testing.assert_close(loaded[key], delta, rtol=1e-4, atol=1e-5, msg=f"{kind} {key}")
    finally:
        detach_all(base)


def test_key_suffixes_per_kind(models):
    base = load_base(models["sd1"])
    suffixes = {}
    for kind in KINDS:
        net = Network.attach(base, _config(kind, train_te=False))
        sd = net.kohya_state_dict()
        suffixes[kind] = {k.split(".", 1)[1] for k in sd}
        if kind == "dora":
            key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
            assert sd[f"{key}.dora_scale"].shape == (sd[f"{key}.lora_up.weight"].shape[0], 1), "wd_on_out layout"
        if kind == "locon":
            conv = sd["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"]
            assert conv.shape == (2, 32, 3, 3) and sd["lora_unet_down_blocks_0_resnets_0_conv1.alpha"].item() == 3.0
        net.detach()
    assert suffixes["lora"] == {"lora_down.weight", "lora_up.weight", "alpha"}
    assert suffixes["locon"] == suffixes["lora"]
    assert suffixes["dora"] == suffixes["lora"] | {"dora_scale"}
    assert suffixes["loha"] == {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "alpha"}
    assert suffixes["lokr"] <= {"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "alpha"}
    assert {"lokr_w1", "alpha"} <= suffixes["lokr"]


def test_lokr_with_two_full_factors_folds_the_scale(models):
    """Readers ignore alpha when neither LoKr factor is low-rank; the file must still give alpha/r × kron."""
    base = load_base(models["sd1"])
    cfg = _config("lokr", train_te=False)
    cfg.network.rank, cfg.network.alpha = 64, 16.0  # rank >= half the factor sizes: peft keeps full w2
    net = Network.attach(base, cfg)
    _perturb(net)
    layers = adapted_layers(base, ADAPTER)
    full = [k for k, m in layers.items() if ADAPTER in m.lokr_w1 and ADAPTER in m.lokr_w2]
    assert full, "the tiny model has layers where both LoKr factors are full"
    sd = net.kohya_state_dict(torch.float32)
    for key in full:
        delta = layers[key].get_delta_weight(ADAPTER)
        torch.testing.assert_close(lycoris_delta(sd, key, delta.shape), delta, rtol=1e-5, atol=1e-6)
    net.detach()
