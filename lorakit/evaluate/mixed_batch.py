"""Images with different LoRA files and strengths in one batch: each LoRA layer adds every file's change to its rows.

    with StackedRows(models, rows=["__base__", "lora1_a", "lora2_b"]):   # one adapter name (or base) per image
        images = pipe(prompt=[...] * 3, ...).images                        # the adapters are off in peft meanwhile

peft mixes adapters in a batch itself (``adapter_names=``): per layer, one sub-batch per adapter, gathered and
scattered back. On the small models a grid is drawn with on a CPU that bookkeeping costs about as much as the LoRA
arithmetic. Here the batch's files are stacked once per layer instead: one matmul (or convolution) through every
file's down-projection at once, a per-row mask that keeps each row's own file at its scale, one through the stacked
up-projections. Same sums, other order: images equal peft's within rounding.

Only plain LoRA layers stack (a Linear or Conv2d down-projection, no bias, no DoRA or other variant, no dropout at
inference); ``StackedRows.fits`` says whether every layer of a batch does, and the caller keeps peft's path if not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

BASE = "__base__"


def _lora_layers(models: Iterable[nn.Module], names: set[str]):
    from peft.tuners.lora import LoraLayer

    for model in models:
        for module in model.modules():
            if isinstance(module, LoraLayer) and names & set(module.lora_A):
                yield module


def _plain(module, name: str) -> bool:
    a, b = module.lora_A[name], module.lora_B[name]
    if module.use_dora.get(name, False) or name in getattr(module, "lora_variant", {}):
        return False
    if not isinstance(module.lora_dropout[name], nn.Identity) and module.lora_dropout[name].training:
        return False
    if type(a) is nn.Linear:
        return type(b) is nn.Linear and a.bias is None and b.bias is None
    if type(a) is nn.Conv2d:
        return (type(b) is nn.Conv2d and a.bias is None and b.bias is None and a.groups == 1 and b.groups == 1
                and b.kernel_size == (1, 1))
    return False


class _Stack:
    """One layer's stacked down- and up-projections and, per batch size, the row mask of scales."""

    def __init__(self, module, names: list[str], rows: Sequence[str]) -> None:
        self.names = [n for n in names if n in module.lora_A]
        a = [module.lora_A[n] for n in self.names]
        self.conv = isinstance(a[0], nn.Conv2d)
        self.a_layer = a[0]
        self.down = torch.cat([m.weight for m in a], dim=0)
        self.up = torch.cat([module.lora_B[n].weight for n in self.names], dim=1)
        ranks = [m.weight.shape[0] for m in a]
        scales = [float(module.scaling[n]) for n in self.names]
        per_name = {}
        start = 0
        for n, r, s in zip(self.names, ranks, scales, strict=True):
            col = torch.zeros(self.down.shape[0], dtype=self.down.dtype, device=self.down.device)
            col[start : start + r] = s
            per_name[n] = col
            start += r
        zero = torch.zeros(self.down.shape[0], dtype=self.down.dtype, device=self.down.device)
        self.row_scales = torch.stack([per_name.get(r, zero) for r in rows])  # images × stacked rank
        self.masks: dict[int, torch.Tensor] = {}

    def mask(self, n: int) -> torch.Tensor:
        if n not in self.masks:
            if n % len(self.row_scales):
                raise ValueError(f"a mixed batch of {len(self.row_scales)} images met a layer input of {n} rows")
            self.masks[n] = self.row_scales.repeat(n // len(self.row_scales), 1)  # CFG: [negative, positive]
        return self.masks[n]

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.down.dtype)
        mask = self.mask(x.shape[0])
        if self.conv:
            a = self.a_layer
            h = F.conv2d(x, self.down, None, a.stride, a.padding, a.dilation)
            return F.conv2d(h * mask[:, :, None, None], self.up)
        h = F.linear(x, self.down)
        return F.linear(h * mask.view(mask.shape[0], *([1] * (h.dim() - 2)), mask.shape[1]), self.up)


class StackedRows:
    """While active, each LoRA layer of ``models`` adds, to each image's rows, that image's adapter at its scale
    (the scales peft holds after ``set_adapters``); the adapters themselves must be switched off in peft."""

    def __init__(self, models: Sequence[nn.Module], rows: Sequence[str]) -> None:
        self.rows = list(rows)
        self.names = sorted({r for r in self.rows if r != BASE})
        self.layers = list(_lora_layers(models, set(self.names)))
        self._hooks: list = []

    def fits(self) -> bool:
        """Whether every LoRA layer the batch uses is a plain one that stacks."""
        return all(_plain(m, n) for m in self.layers for n in self.names if n in m.lora_A)

    def __enter__(self) -> StackedRows:
        for module in self.layers:
            stack = _Stack(module, self.names, self.rows)

            def add(mod, args, kwargs, output, stack=stack):
                x = args[0] if args else next(iter(kwargs.values()))
                return output + stack.delta(x).to(output.dtype)

            self._hooks.append(module.register_forward_hook(add, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
