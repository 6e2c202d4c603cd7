"""A warm start: a new run that begins from a LoRA file's weights (kohya's ``network_weights``), not from zero.

    check_init_file(path, cfg)                 # header only, before any long work: kind, rank, readable
    note = load_init_weights(net, path)        # into the attached network, so the file's delta is where it starts

Unlike ``--resume`` (the same run, continued with its optimizer, schedule and position), a warm start is a new
run: a fresh optimizer and schedule, epoch 1, over whatever data and settings the config now has. The file must
be the same kind and rank as ``network``: the up factors are rescaled when its alpha differs, so the delta it
starts from is the file's (kohya's own files, and lorakit's, LoRA / LoCon / DoRA / LoHa). Layers the file lacks
start from their usual initialisation (a UNet-only file in a run that also trains the text encoder); layers the
base model does not have mean the file is for another model, and are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError
from lorakit.lora.file import open_lora

KIND_MARKERS = {".hada_w1_a": "loha", ".lokr_w1": "lokr", ".lokr_w1_a": "lokr", ".dora_scale": "dora"}


def file_kind(keys: list[str]) -> str:
    """"lora" (also LoCon), "dora", "loha" or "lokr", from the key names."""
    for marker, kind in KIND_MARKERS.items():
        if any(k.endswith(marker) for k in keys):
            return kind
    return "lora"


def _ranks(f, keys: list[str]) -> set[int]:
    """The ranks of the file's linear layers (lora_down rows or hada_w1_b rows; convs left out)."""
    ranks = set()
    for key in keys:
        if key.endswith((".lora_down.weight", ".hada_w1_b")):
            shape = f.get_slice(key).get_shape()
            if len(shape) == 2:
                ranks.add(int(shape[0]))
    return ranks


def check_init_file(path: str | Path, cfg: TrainConfig) -> None:
    """Refuse, with what to set, a file a warm start cannot begin from; reads the header only."""
    path = Path(path)
    where = "network.init_from (--init-from)"
    if not path.is_file():
        raise ConfigError(f"{where}: no file at {path}; give the LoRA file to start from, e.g. "
                          "output/NAME-000004.safetensors.")
    with open_lora(path) as f:
        keys = list(f.keys())
        ranks = _ranks(f, keys)
    if not any(k.startswith(("lora_unet", "lora_te")) for k in keys):
        raise ConfigError(f"{where}: {path.name} has no kohya lora_unet_/lora_te_ layers (a diffusers or "
                          "another trainer's layout); convert it to kohya's format first.")
    kind = file_kind(keys)
    wanted = cfg.network.type
    if kind != ("lora" if wanted == "locon" else wanted):
        raise ConfigError(f"{where}: {path.name} is a {kind} file and network.type is {wanted!r}; set network.type "
                          f"= {kind!r} to start from it.")
    if kind == "lokr":
        raise ConfigError(f"{where}: starting from a LoKr file is not supported (its factor shapes depend on the "
                          "layer); start LoKr runs from zero.")
    if ranks and ranks != {cfg.network.rank}:
        got = ", ".join(map(str, sorted(ranks)))
        smaller = (f" (or lower the file's rank: `lorakit lora resize {path.name} OUT.safetensors --rank "
                   f"{cfg.network.rank}`)" if min(ranks) > cfg.network.rank else "")
        raise ConfigError(f"{where}: {path.name} has rank {got} and network.rank is {cfg.network.rank}; set "
                          f"network.rank = {min(ranks)}{smaller} to start from it.")


def _layers(net) -> dict:
    from peft.tuners.tuners_utils import BaseTunerLayer

    from lorakit.lora.network import ADAPTER, te_key, unet_key

    out = {}
    for prefix, model in net.parts.items():
        for name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer) and ADAPTER in getattr(module, "r", {}):
                out[unet_key(net.base, name) if prefix == "lora_unet" else te_key(prefix, name)] = module
    return out


@torch.no_grad()
def load_init_weights(net, path: str | Path) -> str:
    """Copy the file's factors into the attached network (rescaled to its alpha); a note saying what was loaded."""
    from safetensors.torch import load_file

    from lorakit.lora.network import ADAPTER
    from lorakit.lora.patching import layer_index

    path = Path(path)
    sd = load_file(str(path))
    groups = sorted({k.split(".", 1)[0] for k in sd})
    ours = _layers(net)
    foreign = [g for g in groups if g not in ours and g not in layer_index(net.base)]
    if foreign:
        raise ConfigError(f"network.init_from: {path.name} has {len(foreign)} layers this base model does not have "
                          f"(e.g. {foreign[0]}): it was trained for another model.")
    loaded, unused = 0, 0
    for key in groups:
        module = ours.get(key)
        if module is None:
            unused += 1  # a part this run does not train: the text encoder at text_encoder_lr 0, LoCon's convs
            continue
        get = {name[len(key) + 1:]: t for name, t in sd.items() if name.startswith(key + ".")}
        rank = module.r[ADAPTER]
        file_rank = (get.get("lora_down.weight") if "lora_down.weight" in get else get["hada_w1_b"]).shape[0]
        if file_rank != rank:
            raise ConfigError(f"network.init_from: {path.name} layer {key} has rank {file_rank}, this run's is {rank} "
                              "(network.conv_rank for conv layers): set them to the file's ranks.")
        alpha = float(get["alpha"]) if "alpha" in get else float(file_rank)
        factor = (alpha / file_rank) / module.scaling[ADAPTER]  # keep the file's delta under this run's scale
        if "lora_down.weight" in get:
            module.lora_A[ADAPTER].weight.copy_(get["lora_down.weight"].reshape(module.lora_A[ADAPTER].weight.shape))
            module.lora_B[ADAPTER].weight.copy_(get["lora_up.weight"].reshape(module.lora_B[ADAPTER].weight.shape)
                                                * factor)
            if "dora_scale" in get:
                magnitude = module.lora_magnitude_vector[ADAPTER].weight
                scale = get["dora_scale"]
                if scale.numel() != magnitude.numel() or (scale.dim() > 1 and scale.shape[0] == 1):
                    raise ConfigError(f"network.init_from: {path.name} stores DoRA magnitudes per input column "
                                      "(A1111's layout); lorakit trains one per output row and cannot start "
                                      "from it.")
                magnitude.copy_(scale.reshape(magnitude.shape))
        else:
            for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
                getattr(module, name)[ADAPTER].copy_(get[name] * (factor if name == "hada_w1_a" else 1.0))
        loaded += 1
    if not loaded:
        raise ConfigError(f"network.init_from: none of {path.name}'s layers is trained by this run (is "
                          "network.train_unet off, or text_encoder_lr 0 for a text-encoder-only file?).")
    fresh = len(ours) - loaded
    return (f"started from {path.name}: {loaded} layers loaded"
            + (f", {fresh} not in the file start from zero" if fresh else "")
            + (f", {unused} of its layers are not trained by this run and left out" if unused else "")
            + " (a new run: fresh optimizer and schedule)")
