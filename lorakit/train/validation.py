"""Validation loss: the loss on images never trained on, with the same noise every time.

    cfg.validation.enabled = True          # hold out one training image in ten (at least one) ...
    cfg.validation.dir = "validation"      # ... or use a folder of your own
    result = train(project, cfg)           # result.validation: [{"step", "epoch", "loss", "checkpoint"}, ...]

Which images: with ``validation.dir`` empty, the concept images (never the regularization images) are ranked by a
hash of ``validation.noise_seed`` and ``<folder>/<file name>``, and the first ``max(1, round(split × n))`` are held out.
The rule reads neither the order nor the number of the other images: adding images keeps the held-out ones
held out, unless a new image ranks before one of them. A resumed run holds out the same images.

What is measured: for each held-out image, its cached latents, its caption as written (no shuffling or dropout),
and ``validation.timesteps`` fixed pairs of (timestep, Gaussian noise) drawn from a generator seeded by the image's
name: one timestep in each equal stratum of the training's timestep range. The loss is the training's own
(``loop.batch_loss``: same target by prediction type, the adapter active) as plain MSE, without min-SNR or
debiased weighting and without noise offset, so that every evaluation, of every run, weighs the same things the
same way. It is taken in eval mode (no dropout) and without gradients, at step 0 (the base model), at every saved
checkpoint and every ``validation.every_n_steps`` steps, and appended to ``logs/validation.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from lorakit.config.schema import TrainConfig
from lorakit.dataset.scan import (
    IMAGE_EXTENSIONS,
    ImageItem,
    Sample,
    ScanResult,
    file_digest,
    folder_problem,
    image_size,
    read_caption,
)
from lorakit.errors import DatasetError
from lorakit.project import Project
from lorakit.train.events import Callback


def rank_key(item: ImageItem, seed: int) -> str:
    """The held-out order: a hash of the seed and the image's folder and file name."""
    return hashlib.sha256(f"{seed}:{item.folder}/{item.path.name}".encode()).hexdigest()


def split_items(items: list[ImageItem], share: float, seed: int) -> tuple[list[ImageItem], list[ImageItem]]:
    """(kept for training, held out): ``max(1, round(share × n))`` images, first by ``rank_key``."""
    n_held = max(1, round(share * len(items)))
    if n_held >= len(items):
        raise DatasetError(
            f"validation.split = {share:g} holds out {n_held} of the {len(items)} training image"
            f"{'s' if len(items) != 1 else ''} and leaves none to train on: add images, name a folder of "
            "validation images in validation.dir, or turn validation off.")
    held = set(map(id, sorted(items, key=lambda it: rank_key(it, seed))[:n_held]))
    return [it for it in items if id(it) not in held], [it for it in items if id(it) in held]


def folder_images(folder: Path, caption_extension: str, training: list[ImageItem]) -> list[ImageItem]:
    """The images of a validation folder (directly in it or one folder down), checked: readable, not trained on."""
    paths = sorted(p for p in [*folder.glob("*"), *folder.glob("*/*")]
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not paths:
        raise DatasetError(f"validation.dir: no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}: put a few "
                           "images with .txt captions there, or empty validation.dir to hold out training images.")
    trained = {file_digest(it.path): it.path for it in training}
    items = []
    for path in paths:
        twin = trained.get(file_digest(path))
        if twin is not None:
            raise DatasetError(f"validation.dir: {path} is also a training image ({twin}): a validation image must "
                               "never be trained on, so remove it from one of the two folders.")
        try:
            with Image.open(path) as im:
                im.load()
            size = image_size(path)
        except Exception as e:  # any decoder error: the file is named, nothing has started yet
            raise DatasetError(f"validation.dir: {path} cannot be read as an image ({type(e).__name__}: {e}): "
                               "replace or remove it.") from e
        cap = path.with_suffix(caption_extension)
        parent = path.parent.name if path.parent != folder and not folder_problem(path.parent.name) else ""
        caption = read_caption(cap) if cap.is_file() else parent.partition("_")[2]
        items.append(ImageItem(path, caption, 1, False, size, folder=path.parent.name))
    return items


def choose_images(project: Project, cfg: TrainConfig, scan: ScanResult) -> list[ImageItem]:
    """The validation images of a run; with a split, the held-out ones leave ``scan.items`` (never in a batch)."""
    v, d = cfg.validation, cfg.data
    if not v.enabled:
        return []
    if not v.dir:
        kept, held = split_items(scan.train_items, v.split, v.noise_seed)
        held_ids = set(map(id, held))
        scan.items = [it for it in scan.items if id(it) not in held_ids]
        return held
    folder = project.resolve(v.dir)
    if not folder.is_dir():
        raise DatasetError(f"validation.dir: no folder at {folder}: create it with a few images and captions, or "
                           "empty validation.dir to hold out training images instead.")
    for name, other in (("data.dataset_dir", d.dataset_dir), ("data.reg_dir", d.reg_dir)):
        there = project.resolve(other).resolve() if other else None
        here = folder.resolve()
        if there is not None and (here.is_relative_to(there) or there.is_relative_to(here)):
            raise DatasetError(f"validation.dir {v.dir!r} overlaps {name} {other!r}: its images would be trained "
                               "on; use a folder outside the training folders, e.g. 'validation'.")
    return folder_images(folder, d.caption_extension, scan.items)


def fixed_draws(item: ImageItem, latent_shape: tuple[int, ...], k: int, seed: int, low: int,
                high: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise of shape (k, *latent_shape), k timesteps, one per stratum of [low, high)): the same every call."""
    gen = torch.Generator("cpu").manual_seed(int(rank_key(item, seed)[:15], 16))
    noise = torch.randn((k, *latent_shape), generator=gen)
    offsets = torch.rand(k, generator=gen)
    width = (high - low) / k
    timesteps = (low + (torch.arange(k) + offsets) * width).long().clamp(low, high - 1)
    return noise, timesteps


BatchLoss = Callable[[list[Sample], tuple[torch.Tensor, torch.Tensor]], torch.Tensor]


class Validation:
    """Measures and records the validation loss of a run (on the main process; a no-op without images)."""

    def __init__(self, run, log: Path, events: Callback, loss: BatchLoss, rows: list[dict], active: bool = True):
        self.run, self.log, self.events, self.loss, self.rows = run, log, events, loss, rows
        self.items: list[ImageItem] = list(run.validation) if active else []
        v, t = run.cfg.validation, run.cfg.training
        high = min(t.max_timestep, run.base.noise_scheduler.config.num_train_timesteps)
        low = min(t.min_timestep, high - 1)
        self.draws = []
        for it in self.items:
            shape = tuple(run.latents([Sample(it, False)], "cpu").shape[1:])
            self.draws.append(fixed_draws(it, shape, v.timesteps, v.noise_seed, low, high))
        self._last: tuple[tuple[int, str], float] | None = None  # ((step, weights), loss)

    def due(self, step: int) -> bool:
        every = self.run.cfg.validation.every_n_steps
        return bool(self.items and every and step % every == 0)

    @torch.no_grad()
    def value(self) -> float:
        """The mean loss over the validation images, now (eval mode, no gradients, the same noise every time)."""
        modes = [(m, m.training) for m in self.run.trained]
        for m, _ in modes:
            m.eval()
        try:
            losses = [self.loss([Sample(it, False)] * len(ts), (noise, ts)).item()
                      for it, (noise, ts) in zip(self.items, self.draws, strict=True)]
        finally:
            for m, was in modes:
                m.train(was)
        return sum(losses) / len(losses)

    def measure(self, step: int, epoch: int, checkpoint: Path | None = None, weights: str = "raw") -> float | None:
        """Measure (once per step and ``weights``: raw, or the EMA swapped in), log a row and tell the callbacks."""
        if not self.items:
            return None
        if self._last is None or self._last[0] != (step, weights):
            self._last = ((step, weights), self.value())
        row = {"step": step, "epoch": epoch, "loss": self._last[1], "checkpoint": checkpoint.name if checkpoint else "",
               "images": len(self.items), "session": self.run.record.session_id}
        self.rows.append(row)
        append_row(self.log, row)
        self.events.on_validation(step, self._last[1], row["checkpoint"])
        return self._last[1]


def append_row(path: Path, row: dict) -> None:
    """One JSON line appended in a single write (a reader never sees half a row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(row) + "\n").encode("utf-8"))
    finally:
        os.close(fd)
