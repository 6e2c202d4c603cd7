"""Which tensor of an original-layout single-file checkpoint each kohya LoRA key changes.

    ckpt = CheckpointLayout.of(Path("v1-5-pruned-emaonly.safetensors"))   # header only, no weights loaded
    ckpt.targets["lora_unet_down_blocks_0_attentions_0_proj_in"]
    # Target(name='model.diffusion_model.input_blocks.1.1.proj_in.weight', rows=None, shape=(320, 320, 1, 1))

The UNet's module names come from a diffusers UNet built on the meta device from the family's architecture (or a
diffusers folder's unet/config.json, ``config=``), named as lorakit names LoRA keys (the family's unet_key) and
mapped to the original layout as lorakit's single-file writer does. Text-encoder keys are read off the file's own
tensor names; OpenCLIP's fused q/k/v (SD2, SDXL's second encoder) are row slices of ``in_proj_weight``.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lorakit.errors import LoraToolError, ModelError
from lorakit.files import printable
from lorakit.lora.network import target_modules, te_key
from lorakit.models import families
from lorakit.models.families.base import OPEN_CLIP, ORIGINAL_UNET
from lorakit.models.single_file import (
    _unet_original,
    checkpoint_shapes,
    detect_checkpoint_family,
    resolve_family,
)

_CLIP_LAYER = r"(?:text_model\.)?(encoder\.layers\.\d+\.(?:self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12]))\.weight"
_OPEN_CLIP_LAYER = r"transformer\.resblocks\.(\d+)\.(attn\.in_proj_weight|attn\.out_proj\.weight|mlp\.c_fc\.weight|" \
                   r"mlp\.c_proj\.weight)"
_OPEN_CLIP_NAMES = {"attn.out_proj.weight": "self_attn.out_proj", "mlp.c_fc.weight": "mlp.fc1",
                    "mlp.c_proj.weight": "mlp.fc2"}


@dataclass(frozen=True)
class Target:
    """The checkpoint tensor a LoRA module changes (``rows``: its slice of a fused q/k/v weight), and the layer's
    weight shape."""

    name: str
    shape: tuple[int, ...]
    rows: tuple[int, int] | None = None

    def read(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[self.rows[0]:self.rows[1]] if self.rows else tensor


@dataclass
class CheckpointLayout:
    """A single file's family and the map kohya key -> Target, plus the keys lorakit trains by default."""

    path: Path
    family: str
    targets: dict[str, Target]
    trained: set[str]  # the modules lorakit's LoRA/LoCon adapt (attention, projections; convs in conv_trained)
    conv_trained: set[str]
    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, path: str | Path, config: str | Path | None = None) -> CheckpointLayout:
        path = Path(path)
        if not path.is_file():
            raise LoraToolError(f"{printable(path)} does not exist: give a .safetensors checkpoint file.")
        if path.suffix != ".safetensors":
            raise LoraToolError(f"{printable(path.name)}: give a .safetensors checkpoint (convert a .ckpt first).")
        shapes = checkpoint_shapes(path)
        try:
            layout = detect_checkpoint_family(shapes)
        except ModelError as e:
            raise LoraToolError(f"{printable(path.name)}: {e}") from None
        with warnings.catch_warnings():  # sd2 vs sd2-v does not matter for the weights' names
            warnings.simplefilter("ignore")
            fam = families.get(resolve_family(path, layout, "auto"))
        unet = _meta_unet(fam, config)
        targets: dict[str, Target] = {}
        for name, module in unet.named_modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                original = ORIGINAL_UNET + _unet_original(name + ".weight", unet)
                targets[fam.unet_key(unet, name)] = Target(original, tuple(module.weight.shape))
        attn = target_modules(unet, fam.unet_target_blocks, False)
        convs = target_modules(unet, fam.unet_target_blocks + fam.unet_conv_blocks, True)
        trained = {fam.unet_key(unet, n) for n in attn}
        conv_trained = {fam.unet_key(unet, n) for n in convs} - trained
        for (prefix, te_layout), te_prefix in zip(fam.original_text_encoders, fam.te_prefixes(), strict=True):
            te = _text_encoder_targets(shapes, prefix, te_layout, te_prefix)
            targets |= te
            trained |= set(te)
        layout_obj = cls(path, fam.layout, targets, trained, conv_trained, shapes)
        layout_obj._check_unet_fits(config)
        return layout_obj

    @property
    def family_label(self) -> str:
        return {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}.get(self.family, self.family)

    def _check_unet_fits(self, config) -> None:
        wrong = [(k, t) for k, t in self.targets.items() if k.startswith("lora_unet_") and
                 self.shapes.get(t.name) != t.shape]
        if wrong:
            key, t = wrong[0]
            have = self.shapes.get(t.name)
            where = f"the UNet config in {printable(config)}" if config else f"the standard {self.family_label} UNet"
            raise LoraToolError(
                f"{printable(self.path.name)} does not match {where} ({len(wrong)} layers differ, e.g. {t.name}: "
                f"{'missing' if have is None else have} vs {t.shape}): give the diffusers folder of the same "
                "architecture with --config.")

    def check_lora(self, modules: dict, lora_name: str, lora_label: str) -> None:
        """Refuse a LoRA whose modules this checkpoint lacks, or whose shapes differ: naming both."""
        missing = [k for k in modules if k not in self.targets]
        wrong = [k for k, m in modules.items() if k in self.targets and
                 _flat(m.weight_shape) != _flat(self.targets[k].shape)]
        if missing or wrong:
            bad = (missing or wrong)[0]
            raise LoraToolError(
                f"{lora_name} ({lora_label} LoRA) does not fit {printable(self.path.name)} ({self.family_label} "
                f"checkpoint): {len(missing)} of its modules are missing and {len(wrong)} have other sizes (e.g. "
                f"{bad}). Use a LoRA trained for this base model.")


def _flat(shape: tuple[int, ...]) -> tuple[int, int]:
    return shape[0], int(torch.Size(shape[1:]).numel())


def _meta_unet(fam, config: str | Path | None):
    """The family's UNet (or the one in ``config``) with no weights: module names and shapes only."""
    from diffusers import UNet2DConditionModel

    if config:
        file = Path(config) / "unet" / "config.json"
        if not file.is_file():
            raise LoraToolError(f"{printable(config)} is not a diffusers folder with unet/config.json: give the "
                                "folder of the model the checkpoint was made from.")
        cfg = json.loads(file.read_text(encoding="utf-8"))
    else:
        cfg = fam.architecture_configs()["unet"]
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(cfg)


def _text_encoder_targets(shapes: dict, prefix: str, layout: str, te_prefix: str) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for name, shape in shapes.items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if layout != OPEN_CLIP:
            if m := re.fullmatch(_CLIP_LAYER, rest):
                out[te_key(te_prefix, m[1])] = Target(name, shape)
            continue
        if m := re.fullmatch(_OPEN_CLIP_LAYER, rest):
            layer = f"encoder.layers.{m[1]}."
            if m[2] == "attn.in_proj_weight":
                width = shape[0] // 3
                for i, proj in enumerate("qkv"):
                    out[te_key(te_prefix, f"{layer}self_attn.{proj}_proj")] = Target(
                        name, (width, shape[1]), (i * width, (i + 1) * width))
            else:
                out[te_key(te_prefix, layer + _OPEN_CLIP_NAMES[m[2]])] = Target(name, shape)
    return out
