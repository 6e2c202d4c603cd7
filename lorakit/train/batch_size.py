"""A batch size for this dataset on this machine, and the learning rate that goes with it.

    choice = suggest_batch(images=20, seen=1800, current=1, speeds=measured_batch_speeds(...), max_fitting=6)
    choice.batch_size, choice.settings(cfg), choice.text()

Three limits, each stated in the choice's reasons:

- **Enough optimizer steps.** A run sees ``seen`` images whatever the batch; a batch of ``b`` makes ``seen / b``
  updates. Below ``MIN_STEPS`` of them the LoRA learns less from the same images, even with the learning rate
  scaled (measured on the second toy world: data/demo/README.md, "Batch size"). A batch is also never larger than
  the dataset: a batch that holds one image twice learns nothing from the second copy.
- **GPU memory.** With a GPU (or a card size given), the largest batch whose training step fits: lorakit's
  meta-device estimate (``lorakit.train.memory``), or a speed measurement that ran out of memory.
- **Speed.** Only a measured speed makes a larger batch worth its fewer steps. With speeds measured at several
  batches on this machine (``lorakit.train.speed_probe``, or earlier runs), the choice is the smallest batch
  within ``SPEED_MARGIN`` of the most images per second: on a GPU that is where the card is busy; on a CPU a larger
  batch rarely gains. Without two measurements the batch is kept (within the other limits), and the text says how
  to measure.

When the batch changes, the learning rates follow the square-root rule for Adam-like optimizers (lr × √(new/old),
Malladi et al. 2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"), linearly for SGD, and not
at all for the self-tuning ones (Prodigy, D-Adaptation), whose lr is a multiplier of the step they find.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lorakit.config.schema import SELF_TUNING_OPTIMIZERS, TrainConfig

CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
MIN_STEPS = 300  # optimizer updates a run keeps at least (see the module docstring)
SPEED_MARGIN = 0.90  # a larger batch must give more than this share of the best images/s to be chosen


@dataclass(frozen=True)
class BatchChoice:
    """The suggested batch size, why, and the factor the learning rates are scaled by."""

    batch_size: int
    current: int
    optimizer: str = "AdamW"
    reasons: tuple[str, ...] = ()
    images_per_second: dict[int, float] = field(default_factory=dict)  # measured, per batch

    @property
    def lr_scale(self) -> float:
        """lr × this when going from ``current`` to ``batch_size`` (√ for Adam-like, linear for SGD, 1 self-tuning)."""
        if self.optimizer in SELF_TUNING_OPTIMIZERS or self.batch_size == self.current:
            return 1.0
        ratio = self.batch_size / self.current
        return ratio if self.optimizer == "SGD" else math.sqrt(ratio)

    def settings(self, cfg: TrainConfig) -> dict[str, object]:
        """The changes to ``cfg``: the batch size and, scaled, its learning rates."""
        out: dict[str, object] = {"training.train_batch_size": self.batch_size}
        if self.lr_scale != 1.0:
            o = cfg.optimizer
            out["optimizer.unet_lr"] = float(f"{o.unet_lr * self.lr_scale:.3g}")
            if o.text_encoder_lr:
                out["optimizer.text_encoder_lr"] = float(f"{o.text_encoder_lr * self.lr_scale:.3g}")
        return out

    def text(self, cfg: TrainConfig | None = None) -> str:
        head = (f"Batch {self.batch_size}" + (" (as set)" if self.batch_size == self.current else
                                              f" (now {self.current})"))
        lr = ""
        if self.lr_scale != 1.0:
            rule = "linear rule for SGD" if self.optimizer == "SGD" else "square-root rule for Adam-like optimizers"
            lr = f" Learning rates × {self.lr_scale:.2f} ({rule})"
            if cfg is not None:
                new = self.settings(cfg)
                lr += f": UNet {cfg.optimizer.unet_lr:g} → {new['optimizer.unet_lr']:g}" + (
                    f", text encoder {cfg.optimizer.text_encoder_lr:g} → {new['optimizer.text_encoder_lr']:g}"
                    if "optimizer.text_encoder_lr" in new else "")
            lr += "."
        return f"{head}: " + "; ".join(self.reasons) + "." + lr


def batch_cap(images: int, seen: int, accumulation: int = 1) -> int:
    """The largest batch the data allows: no more than the images, and at least MIN_STEPS optimizer steps."""
    return max(1, min(images, seen // (MIN_STEPS * max(1, accumulation))))


def suggest_batch(images: int, seen: int, current: int = 1, *, optimizer: str = "AdamW", accumulation: int = 1,
                  speeds: Mapping[int, float] | None = None, max_fitting: int | None = None,
                  memory_source: str = "", fastest: bool = False) -> BatchChoice:
    """The batch size for ``images`` training images and ``seen`` samples in the run (images × repeats × epochs,
    regularization included), from the three limits in the module docstring.

    ``speeds``: steps/s measured on this machine per batch size; ``max_fitting``: the largest batch the GPU holds
    (None: not known, no GPU), with ``memory_source`` saying where that came from ("the estimate for your 12 GB"),
    or, with ``max_fitting`` None, why the memory was not checked. ``fastest``: take the fastest measured batch,
    not the smallest near it (a time budget that cuts the run: there, images seen matter more than steps).
    """
    if images < 1:
        raise ValueError("no training images: put them in dataset/<repeats>_<token>/ (notebook 01).")
    current = max(1, current)
    reasons: list[str] = []
    allowed = [b for b in CANDIDATES if b <= batch_cap(images, seen, accumulation)]
    top = allowed[-1] if allowed else 1
    limit = (f"at most {top} keeps at least {MIN_STEPS} steps ({seen} samples in the run ÷ {top}"
             + (f" ÷ {accumulation} accumulation" if accumulation > 1 else "") + f" = {seen // (top * accumulation)})"
             if top < images else f"at most {top}, the number of training images")
    if max_fitting is not None:
        if max_fitting < 1:
            reasons.append(f"even batch 1 does not fit the GPU ({memory_source or 'memory estimate'}): "
                           "see the memory fixes")
            allowed = [1]
        elif max_fitting < top:
            allowed = [b for b in allowed if b <= max_fitting]
            limit = f"at most {max_fitting} fits the GPU ({memory_source or 'memory estimate'})"
        else:
            limit += f"; the GPU holds batch {max_fitting} or more ({memory_source or 'memory estimate'})"
    else:
        limit += "; " + (memory_source or "GPU memory not checked (no GPU here: give the card's size, --vram or "
                         "notebook 02's GPU GB)")
    allowed = allowed or [1]
    reasons.append(limit)

    ips = {b: sps * b for b, sps in (speeds or {}).items() if sps > 0}
    measured = {b: v for b, v in ips.items() if b in allowed}
    if len(measured) >= 2:
        best = max(measured.values())
        batch = min(b for b, v in measured.items() if v >= (1.0 if fastest else SPEED_MARGIN) * best)
        quickest = max(measured, key=measured.get)
        listed = ", ".join(f"batch {b} {v:.3g}" for b, v in sorted(measured.items()))
        reasons.append(f"measured images/s on this machine: {listed}; "
                       + (f"batch {batch} is the fastest" + (" (the time budget cuts the run)" if fastest else "")
                          if batch == quickest else
                          f"batch {batch} is within {1 - SPEED_MARGIN:.0%} of the fastest (batch {quickest}) "
                          "with more steps"))
    else:
        batch = max([b for b in allowed if b <= current] or [allowed[0]])
        reasons.append("no speeds measured at two batch sizes on this machine, so the batch is not raised for "
                       "speed: measure them (notebook 02's *Measure speed per batch*, or `lorakit config speed`)")
    return BatchChoice(batch, current, optimizer, tuple(reasons), ips)


def largest_fitting_batch(cfg: TrainConfig, budget_bytes: int, estimate: Callable[[TrainConfig], int] | None = None,
                          candidates: tuple[int, ...] = CANDIDATES) -> int:
    """The largest candidate batch whose training step fits ``budget_bytes`` (0 if not even batch 1), by the
    meta-device estimate (``estimate``: a config's total bytes; lorakit.train.memory's by default). Memory grows
    with the batch, so a bisection over the candidates needs about log2(len) estimates."""
    if estimate is None:
        from lorakit.train.memory import estimate_memory

        def estimate(c: TrainConfig) -> int:
            return estimate_memory(c).total

    def fits(b: int) -> bool:
        return estimate(cfg.replace({"training.train_batch_size": b})) <= budget_bytes

    lo, hi = -1, len(candidates)  # candidates[lo] fits (or none), candidates[hi] does not (or past the end)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            lo = mid
        else:
            hi = mid
    return candidates[lo] if lo >= 0 else 0
