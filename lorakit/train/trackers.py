"""Logging a run through accelerate's trackers (``training.log_with``): TensorBoard, Weights & Biases or trackio.

The loop logs ``loss`` and ``lr/<group>`` every step, ``validation/loss`` when the run measures one, and the
sample images where the tracker takes images (TensorBoard, W&B). TensorBoard and W&B write under
``<project>/logs/``; W&B runs offline unless the user logged in (WANDB_API_KEY) or set WANDB_MODE, so nothing
reaches the network by default.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from lorakit.errors import ConfigError
from lorakit.train.events import Callback

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}  # log_with -> module to import


def check_tracker(log_with: str) -> None:
    """Refuse, before anything is loaded, a tracker whose package is not installed."""
    module = PACKAGES.get(log_with)
    if module and importlib.util.find_spec(module) is None:
        raise ConfigError(f"training.log_with = {log_with!r} needs the {module} package: "
                          f'pip install "lorakit[logging]" (or set log_with = "" to log nothing).')
    if log_with == "trackio" and not hasattr(importlib.import_module("accelerate.utils"), "is_trackio_available"):
        raise ConfigError('training.log_with = "trackio" needs a newer accelerate: pip install -U accelerate.')


def offline_by_default(log_with: str) -> None:
    """W&B stays on this machine unless the user chose otherwise (WANDB_MODE or WANDB_API_KEY set)."""
    if log_with == "wandb" and not os.environ.get("WANDB_MODE") and not os.environ.get("WANDB_API_KEY"):
        os.environ["WANDB_MODE"] = "offline"


def accelerator_args(log_with: str, logs_dir: Path) -> dict:
    """``Accelerator(**...)``: the tracker and the folder its logs go to; nothing when no tracker is chosen."""
    if not log_with:
        return {}
    check_tracker(log_with)
    offline_by_default(log_with)
    return {"log_with": log_with, "project_dir": str(logs_dir)}


def flat_config(data: dict, prefix: str = "") -> dict:
    """``cfg.to_dict()`` as ``{"section/key": value}`` with values every tracker takes (lists as text)."""
    out: dict = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = "" if value is None else str(value)
    return out


def group_names(run) -> list[str]:
    """The optimizer's parameter groups by what they train, in prepare.py's order: unet first, then text encoders."""
    names = (["unet"] if "lora_unet" in run.net.parts else []) + ["text_encoder"]
    return names[: len(run.optimizer.param_groups)]


class TrackerLog(Callback):
    """The run's values to ``accelerator``'s trackers (main process only; inert without ``log_with``)."""

    def __init__(self, accelerator, log_with: str, project_name: str, config: dict, logs_dir: Path) -> None:
        self.accelerator = accelerator
        self.active = bool(log_with) and accelerator.is_main_process
        if self.active:
            init_kwargs = {"wandb": {"dir": str(logs_dir)}} if log_with == "wandb" else {}
            logs_dir.mkdir(parents=True, exist_ok=True)
            accelerator.init_trackers(project_name, config=flat_config(config), init_kwargs=init_kwargs)

    def step(self, step: int, loss: float, lrs: dict[str, float]) -> None:
        if self.active:
            self.accelerator.log({"loss": loss, **{f"lr/{k}": v for k, v in lrs.items()}}, step=step)

    def on_validation(self, step: int, loss: float, checkpoint: str) -> None:
        if self.active:
            self.accelerator.log({"validation/loss": loss}, step=step)

    def on_samples(self, epoch: int, step: int, paths: list[Path]) -> None:
        if not self.active or not paths:
            return
        import numpy as np
        from PIL import Image

        from lorakit.train.sampling import parse_sample_name

        images = {}
        for i, p in enumerate(paths):  # one series per prompt (and strength): samples/0, samples/0_s0.5, ...
            n = parse_sample_name(p)
            tag = f"{n.index}" + (f"_s{n.strength:g}" if n.strength is not None else "") if n else f"{i}"
            images[f"samples/{tag}"] = Image.open(p).convert("RGB")
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({k: np.asarray(v)[None] for k, v in images.items()}, step=step,
                                   dataformats="NHWC")
            elif tracker.name == "wandb":
                tracker.log_images({k: [v] for k, v in images.items()}, step=step)

    def end(self) -> None:
        """Close the trackers (also after an interrupt); a second call does nothing."""
        if self.active:
            self.active = False
            self.accelerator.end_training()
