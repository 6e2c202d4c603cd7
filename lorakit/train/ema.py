"""An exponential moving average (EMA) of the LoRA weights, kept beside the trained ones and saved as ``-ema`` files.

    ema = LoraEMA.from_config(run.params, cfg.training)     # None when training.ema_decay = 0
    ema.update(step)                                         # after each optimizer step; acts every N steps
    with ema.applied():                                      # the network holds the EMA weights inside
        save(...)

The averaging is diffusers' ``EMAModel`` (the one its training examples use): each update moves the average
``1 - d`` of the way to the current weights, with ``d = min(decay, (1 + n) / (10 + n))`` at the n-th update, so
early on the average follows the weights closely instead of remembering the random start (at n = 1 it copies
them). The decay applies per update: with ``ema_every_n_steps = N`` the average spans N times more steps.

What lorakit adds: updating every N steps, keeping the average in CPU memory (``EMAModel.step`` needs the weights
and the average on one device, so the weights are copied over, which for a LoRA is a few MB), swapping the average
into the network to save it, and a state for resume. File names: ``ema_path`` (``name-000004-ema.safetensors``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers.training_utils import EMAModel

from lorakit.errors import ResumeError
from lorakit.project import EMA_SUFFIX


class LoraEMA:
    """The EMA of a list of trained tensors (every adapter parameter of the run)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float, every: int = 1, on_cpu: bool = False):
        self.params, self.every = list(params), every
        self.device = torch.device("cpu") if on_cpu or not self.params else self.params[0].device
        self.model = EMAModel(self.params, decay=decay)
        self.model.to(device=self.device)

    @classmethod
    def from_config(cls, params: list[torch.nn.Parameter], training) -> LoraEMA | None:
        """The EMA that ``training`` (a TrainingConfig) asks for, or None when ``ema_decay`` is 0."""
        if not training.ema_decay:
            return None
        return cls(params, training.ema_decay, training.ema_every_n_steps, training.ema_on_cpu)

    @property
    def updates(self) -> int:
        return self.model.optimization_step

    def update(self, step: int) -> bool:
        """Fold the current weights into the average if ``step`` is a multiple of ``every``; whether it did."""
        if step % self.every:
            return False
        self.model.step(self._on_ema_device())
        return True

    def _on_ema_device(self) -> list[torch.Tensor]:
        if all(p.device == self.device for p in self.params):
            return self.params
        # EMAModel.step folds in only tensors that require grad (others are copied): keep that flag on the copies
        return [p.detach().to(self.device).requires_grad_(p.requires_grad) for p in self.params]

    def reset(self) -> None:
        """Start the average again from the weights as they are now (a resumed state that had no EMA)."""
        self.model = EMAModel(self.params, decay=self.model.decay)
        self.model.to(device=self.device)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside, the network holds the EMA weights; afterwards its own weights are back, bit for bit."""
        self.model.store(self.params)
        self.model.copy_to(self.params)
        try:
            yield
        finally:
            self.model.restore(self.params)

    def state_dict(self) -> dict:
        """What resume needs (decay, update count, the averaged tensors): state.py stores it as safetensors + JSON."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()`` exactly; a state of another network is a ResumeError."""
        shadow = state.get("shadow_params") or []
        shapes = [tuple(t.shape) for t in shadow]
        if shapes != [tuple(p.shape) for p in self.params]:
            raise ResumeError(f"the saved EMA holds {len(shapes)} tensors of other shapes than this network's "
                              f"{len(self.params)}: resume with the network it was saved with, or train anew.")
        self.model.load_state_dict(state)
        self.model.to(device=self.device)


def ema_path(path: Path) -> Path:
    """``name-000004.safetensors`` -> ``name-000004-ema.safetensors`` (the suffix follows any stem naming)."""
    return path.with_name(f"{path.stem}{EMA_SUFFIX}{path.suffix}")


def checkpoint_variants(path: Path, ema: LoraEMA | None, save_weights: str) -> list[tuple[Path, contextlib.AbstractContextManager]]:
    """The files one save writes, each with the weights to hold while writing it: raw, ``-ema``, or both."""
    if ema is None:
        return [(path, contextlib.nullcontext())]
    out: list[tuple[Path, contextlib.AbstractContextManager]] = []
    if save_weights in ("raw", "both"):
        out.append((path, contextlib.nullcontext()))
    if save_weights in ("ema", "both"):
        out.append((ema_path(path), ema.applied()))
    return out


def restore_ema(ema: LoraEMA | None, state: dict, notes: list[str]) -> None:
    """Put a resumed state's EMA back exactly; a state saved without one restarts the average (with a note)."""
    if ema is None:
        if state.get("ema"):
            notes.append("the saved state has an EMA but training.ema_decay is 0 now: it is dropped")
        return
    if state.get("ema"):
        ema.load_state_dict(state["ema"])
    else:
        ema.reset()  # from the resumed weights, not from the start of the run
        notes.append("the saved state has no EMA (training.ema_decay was 0): the EMA starts from the resumed weights")
