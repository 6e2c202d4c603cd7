"""Steps calculator: images x repeats x epochs / batch, per epoch, with guidance and a time estimate.

    from lorakit.train.steps import count_dataset, plan_steps
    plan = plan_steps(cfg, count_dataset(project.dataset_dir), kind="character")
    print(plan.table()); print(plan.guidance)

The time estimate uses a steps/s measured on this machine (``record_speed``, called by the trainer), kept in
``~/.cache/lorakit/speed.json`` (or ``$LORAKIT_SPEED_FILE``).
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.config.schema import TrainConfig
from lorakit.dataset.masks import is_mask_file
from lorakit.dataset.scan import IMAGE_EXTENSIONS
from lorakit.errors import LorakitError
from lorakit.files import atomic_write_text
from lorakit.train.batch_size import BatchChoice

GUIDANCE: dict[str, tuple[int, int]] = {"character": (1500, 2000), "style": (3000, 6000)}


# ---- counting the dataset (without opening images) ---------------------------------------------------------


@dataclass
class DatasetCount:
    """Images per ``<repeats>_<token>`` folder, and regularization images."""

    folders: list[tuple[str, int, int]] = field(default_factory=list)  # (folder, images, repeats)
    reg_images: int = 0

    @property
    def images(self) -> int:
        return sum(n for _, n, _ in self.folders)

    @property
    def repeated(self) -> int:
        """Training images seen per epoch: each image times its folder's repeats."""
        return sum(n * r for _, n, r in self.folders)


def _images_in(folder: Path) -> int:
    return sum(1 for p in folder.iterdir()
               if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and not is_mask_file(p))


def _kohya_folders(root: Path) -> list[tuple[str, int, int]]:
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        head, sep, _ = folder.name.partition("_")
        if sep and head.isdigit() and int(head) > 0:
            out.append((folder.name, _images_in(folder), int(head)))
    return out


def count_dataset(dataset_dir: str | Path, repeats: int = 0, reg_dir: str | Path | None = None) -> DatasetCount:
    """Count images in a kohya layout; ``repeats`` > 0 overrides the folder names (as data.repeats does)."""
    folders = [(name, n, repeats or r) for name, n, r in _kohya_folders(Path(dataset_dir)) if name != "reg"]
    reg = sum(n for _, n, _ in _kohya_folders(Path(reg_dir))) if reg_dir else 0
    return DatasetCount(folders, reg)


def count_project(cfg: TrainConfig, project_root: str | Path) -> DatasetCount:
    """``count_dataset`` for the folders ``cfg`` names, relative to the project."""
    root = Path(project_root)
    reg = root / cfg.data.reg_dir if cfg.data.reg_dir else None
    return count_dataset(root / cfg.data.dataset_dir, cfg.data.repeats, reg)


# ---- the plan -------------------------------------------------------------------------------------------------


@dataclass
class EpochRow:
    epoch: int
    steps: int  # optimizer steps done at the end of this epoch
    checkpoint: bool
    sample: bool
    seconds: float | None  # estimated time from the start, when a speed is known


@dataclass
class StepsPlan:
    """How many steps a config makes on a dataset, epoch by epoch."""

    images: int
    samples_per_epoch: int
    batch_size: int
    accumulation: int
    steps_per_epoch: int
    total_steps: int
    rows: list[EpochRow]
    steps_per_second: float | None
    guidance: str

    @property
    def seconds(self) -> float | None:
        return self.total_steps / self.steps_per_second if self.steps_per_second else None

    def table(self) -> str:
        """The per-epoch table as text."""
        head = f"{'epoch':>5} {'steps':>7}  {'checkpoint':<10} {'sample':<6} {'time':>8}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.epoch:>5} {r.steps:>7}  {'yes' if r.checkpoint else '':<10} "
                         f"{'yes' if r.sample else '':<6} {format_duration(r.seconds):>8}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: the formula with this dataset's numbers."""
        accum = f" / {self.accumulation} accumulation" if self.accumulation > 1 else ""
        time = (f", about {format_duration(self.seconds)}" if self.seconds
                else ", time unknown until a run on this machine measures it")
        return (f"{self.images} images -> {self.samples_per_epoch} samples per epoch / batch {self.batch_size}{accum} "
                f"= {self.steps_per_epoch} steps per epoch; {self.total_steps} steps in all{time}.")


def format_duration(seconds: float | None) -> str:
    """'42s', '1m40s', '3h05m'; '' when unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def schedule(batches_per_epoch: int, cfg: TrainConfig) -> tuple[int, int, int]:
    """(steps per epoch, steps in all, epochs): the one formula the trainer, notebook 02 and the CLI share.

    A step is one optimizer update: ``batches_per_epoch / gradient_accumulation_steps`` of them per epoch, for
    ``max_train_epochs`` epochs; ``max_train_steps`` caps that (or alone sets it, with epochs = 0).
    """
    t = cfg.training
    per_epoch = math.ceil(batches_per_epoch / cfg.optimizer.gradient_accumulation_steps)
    total = per_epoch * t.max_train_epochs
    if t.max_train_steps:
        total = min(total, t.max_train_steps) if t.max_train_epochs else t.max_train_steps
    epochs = math.ceil(total / per_epoch) if per_epoch else 0
    return per_epoch, total, epochs


def plan_steps(cfg: TrainConfig, count: DatasetCount, kind: str = "",
               steps_per_second: float | None = None) -> StepsPlan:
    """Steps per epoch and in all, as the trainer counts them (regularization doubles an epoch, as in kohya)."""
    t, o = cfg.training, cfg.optimizer
    samples = count.repeated * (2 if count.reg_images else 1)
    per_epoch, total, epochs = schedule(math.ceil(samples / t.train_batch_size), cfg)
    if steps_per_second is None:
        steps_per_second = known_speed(family=cfg.model.family, resolution=cfg.data.resolution,
                                       batch_size=t.train_batch_size)
    rows = []
    for e in range(1, epochs + 1):
        steps = min(e * per_epoch, total)
        last = e == epochs
        every_save, every_sample = cfg.saving.save_every_n_epochs, cfg.sampling.sample_every_n_epochs
        rows.append(EpochRow(e, steps, last or bool(every_save and e % every_save == 0),
                             bool(every_sample and (e % every_sample == 0 or last) and cfg.sampling.sample_prompts),
                             steps / steps_per_second if steps_per_second else None))
    return StepsPlan(count.images, samples, t.train_batch_size, o.gradient_accumulation_steps, per_epoch, total, rows,
                     steps_per_second, steps_guidance(total, per_epoch, kind))


def steps_guidance(total: int, per_epoch: int, kind: str = "") -> str:
    """What published guides say about this many steps, and how many epochs would reach their range."""
    if total == 0:
        return "No training images found: put them in dataset/<repeats>_<token>/ (notebook 01)."
    if kind not in GUIDANCE:
        return (f"{total} steps. Guides aim for about 1500-2000 steps for a character and 3000-6000 for a style; "
                "save checkpoints along the way and pick the best in notebook 04.")
    low, high = GUIDANCE[kind]
    if low <= total <= high:
        return f"{total} steps: inside the {low}-{high} that guides suggest for a {kind}."
    epochs = max(1, round((low + high) / 2 / per_epoch))
    direction = "few" if total < low else "many"
    return (f"{total} steps: too {direction} for a {kind} (guides suggest {low}-{high}); "
            f"about {epochs} epochs ({epochs * per_epoch} steps) would land inside, or change the repeats.")


# ---- a starting point for a dataset of this size ---------------------------------------------------------------
EPOCHS_TO_CHOOSE_FROM = 10  # checkpoints one per epoch: enough for notebook 04 to find the good one
MIN_EPOCHS = 4


@dataclass
class Suggestion:
    """Repeats and epochs for a dataset of ``images`` training images, from the guides' step ranges (GUIDANCE, at
    batch 1) and, when given, a time budget at this machine's measured speed."""

    images: int
    kind: str
    repeats: int
    epochs: int
    batch_size: int
    steps: int
    seconds: float | None
    note: str = ""
    batch: BatchChoice | None = None  # how the batch size was chosen (suggest_settings), else the form's

    @property
    def seen(self) -> int:
        """How many times each training image is seen (repeats × epochs), whatever the dataset's size."""
        return self.repeats * self.epochs

    def settings(self, cfg: TrainConfig | None = None) -> dict[str, object]:
        """The changes to a config: repeats, epochs, a checkpoint per epoch and, with ``cfg`` and a batch choice,
        the batch size and its learning rates."""
        out: dict[str, object] = {"data.repeats": self.repeats, "training.max_train_epochs": self.epochs,
                                  "saving.save_every_n_epochs": 1}
        if self.batch is not None and cfg is not None:
            out.update(self.batch.settings(cfg))
        return out

    def text(self, cfg: TrainConfig | None = None) -> str:
        time = f", about {format_duration(self.seconds)} at this machine's measured speed" if self.seconds else ""
        return (f"Suggested for {self.images} images ({self.kind}): repeats {self.repeats} × {self.epochs} epochs, "
                f"a checkpoint every epoch: {self.images * self.seen} images seen, each training image "
                f"{self.seen} times; {self.steps} steps at batch {self.batch_size}{time}."
                + (f" {self.note}" if self.note else "") + (f" {self.batch.text(cfg)}" if self.batch else ""))


def suggest_schedule(images: int, kind: str = "character", batch_size: int = 1, *, reg: bool = False,
                     steps_per_second: float | None = None, minutes: float = 0) -> Suggestion:
    """Repeats and epochs that put a dataset of ``images`` inside the guides' range for ``kind`` (1500–2000 images
    seen for a character, 3000–6000 for a style, counted at batch 1), spread over about ten epochs so that notebook
    04 has ten checkpoints to choose from: fewer images get more repeats, the total stays the same. With
    ``minutes`` and a measured ``steps_per_second``, the epochs are cut to fit the time (at least four), and the
    note says what the guides' range would have taken. Regularization images double each epoch's steps (kohya)."""
    if images < 1:
        raise ValueError("no training images: put them in dataset/<repeats>_<token>/ (notebook 01).")
    low, high = GUIDANCE.get(kind, GUIDANCE["character"])
    seen = (low + high) / 2
    repeats = max(1, round(seen / EPOCHS_TO_CHOOSE_FROM / images))
    epochs = max(MIN_EPOCHS, round(seen / (images * repeats)))
    per_epoch = math.ceil(images * repeats * (2 if reg else 1) / max(1, batch_size))
    note = ""
    if minutes and steps_per_second:
        budget = minutes * 60 * steps_per_second  # steps
        fits = int(budget // per_epoch)
        if fits < epochs:
            wanted = per_epoch * epochs / steps_per_second
            note = (f"Cut to fit {minutes:g} minutes (the guides' range, {repeats} repeats × {epochs} epochs, would "
                    f"take {format_duration(wanted)}); a larger batch or a GPU would train the whole range.")
            epochs = max(MIN_EPOCHS, fits)
            if fits < MIN_EPOCHS:  # four checkpoints at least: fewer repeats instead
                per_repeat = images * (2 if reg else 1) / max(1, batch_size)
                repeats = max(1, int(budget / MIN_EPOCHS // per_repeat))
                per_epoch = math.ceil(images * repeats * (2 if reg else 1) / max(1, batch_size))
                if per_epoch * epochs > budget:
                    note += (f" Even {MIN_EPOCHS} epochs of one repeat take "
                             f"{format_duration(per_epoch * epochs / steps_per_second)}.")
    steps = per_epoch * epochs
    return Suggestion(images, kind if kind in GUIDANCE else "character", repeats, epochs, batch_size, steps,
                      steps / steps_per_second if steps_per_second else None, note)


def suggest_settings(cfg: TrainConfig, count: DatasetCount, kind: str = "character", minutes: float = 0, *,
                     vram_bytes: int | None = None, path: Path | None = None) -> Suggestion:
    """Repeats, epochs and batch size for the dataset ``count`` describes, starting from ``cfg``: the images a run
    sees from the guides (suggest_schedule), the batch from that, the GPU's memory and the speeds measured here
    (lorakit.train.batch_size), then the schedule again at that batch, fitted to ``minutes``. The GPU memory is
    checked on this machine's GPU, or against ``vram_bytes`` (a card's size) when given; without either it is not."""
    from lorakit.train.batch_size import CANDIDATES, batch_cap, largest_fitting_batch, suggest_batch

    reg = bool(count.reg_images)
    seen = suggest_schedule(count.images, kind, 1, reg=reg).steps  # samples in the run, the same at any batch
    budget, source = vram_bytes, f"the estimate for a {(vram_bytes or 0) / 2**30:g} GB card"
    if budget is None:
        from lorakit.train.memory import gpu_memory  # torch, no model: cheap once lorakit trains at all

        gpu = gpu_memory()
        if gpu:
            budget, source = gpu[1], f"the estimate for your {gpu[0]}, {gpu[1] / 2**30:.0f} GB"
    o = cfg.optimizer
    cap = batch_cap(count.images, seen, o.gradient_accumulation_steps)  # no estimate above what the data allows
    fits = None
    if budget:
        try:
            fits = largest_fitting_batch(cfg, budget, candidates=tuple(c for c in CANDIDATES if c <= cap) or (1,))
        except (LorakitError, RuntimeError, ValueError) as e:  # the suggestion stands without it, and says so
            source = f"GPU memory not checked: the estimate failed ({str(e).splitlines()[0]})"
    elif vram_bytes is None:
        source = ""  # no GPU and no card given: suggest_batch says how to check
    speeds = measured_batch_speeds(family=cfg.model.family, resolution=cfg.data.resolution, path=path)

    def at(fastest: bool) -> Suggestion:
        choice = suggest_batch(count.images, seen, cfg.training.train_batch_size, optimizer=o.optimizer,
                               accumulation=o.gradient_accumulation_steps, max_fitting=fits, memory_source=source,
                               speeds=speeds, fastest=fastest)
        speed = known_speed(family=cfg.model.family, resolution=cfg.data.resolution, batch_size=choice.batch_size,
                            path=path)
        out = suggest_schedule(count.images, kind, choice.batch_size, reg=reg, steps_per_second=speed,
                               minutes=minutes)
        out.batch = choice
        return out

    out = at(fastest=False)
    if out.note.startswith("Cut to fit"):  # the budget cuts the images seen: the fastest batch sees the most
        out = at(fastest=True)
    return out


# ---- measured speed, per machine ------------------------------------------------------------------------------


def speed_file() -> Path:
    """Where measured speeds are kept: $LORAKIT_SPEED_FILE, else the user's cache folder."""
    if os.environ.get("LORAKIT_SPEED_FILE"):
        return Path(os.environ["LORAKIT_SPEED_FILE"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lorakit" / "speed.json"


@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """This computer and its training device, e.g. 'box|NVIDIA GeForce RTX 3060' or 'box|cpu'."""
    try:
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # no torch, or a broken driver: still name the machine
        device = "unknown"
    return f"{platform.node()}|{device}"


PROBE = "probe"  # the source of speeds measured by lorakit.train.speed_probe (a few steps on random data)


def _speed_key(family: str, resolution: int, batch_size: int, source: str = "") -> str:
    return f"{machine_id()}|{family or 'auto'}|{resolution}|{batch_size}" + (f"|{source}" if source else "")


def _read_speeds(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0}


def record_speed(steps_per_second: float, *, family: str = "", resolution: int = 0, batch_size: int = 1,
                 source: str = "", path: Path | None = None) -> Path:
    """Remember a measured training speed for this machine and setting: the trainer's own (``source`` "") or the
    speed probe's (``source`` PROBE), kept apart so that the two kinds are never compared with each other."""

    if not steps_per_second > 0:
        raise ValueError(f"steps_per_second must be > 0 (got {steps_per_second})")
    path = path or speed_file()
    speeds = _read_speeds(path)
    speeds[_speed_key(family, resolution, batch_size, source)] = float(steps_per_second)
    return atomic_write_text(path, json.dumps(speeds, indent=1, sort_keys=True) + "\n")


def _speeds_here(family: str, path: Path | None, source: str) -> dict[tuple[int, int], float]:
    """{(resolution, batch): steps/s} of one source, for this machine and family."""
    prefix = f"{machine_id()}|{family or 'auto'}|"
    out = {}
    for key, sps in _read_speeds(path or speed_file()).items():
        if not key.startswith(prefix):
            continue
        res, batch, *rest = key[len(prefix):].split("|") + [""]
        if res.isdigit() and batch.isdigit() and rest[0] == source:
            out[int(res), int(batch)] = sps
    return out


def known_speed(*, family: str = "", resolution: int = 0, batch_size: int = 1,
                path: Path | None = None) -> float | None:
    """Steps/s for this setting on this machine, best evidence first: a training run's measurement; the speed
    probe's, calibrated by a setting both measured (a run does a little more per step than the probe); a run's at
    the nearest setting, scaled (cost ~ pixels × batch); the probe's nearest, scaled. None when nothing is known."""
    runs, probes = _speeds_here(family, path, ""), _speeds_here(family, path, PROBE)
    key = (resolution, batch_size)
    if key in runs:
        return runs[key]
    if key in probes:
        both = [k for k in runs if k in probes]
        if not both:
            return probes[key]
        near = min(both, key=lambda k: (abs(math.log(max(k[0], 1) ** 2 * k[1] / max(resolution, 1) ** 2 / batch_size)),
                                        k))
        return probes[key] * runs[near] / probes[near]
    work = max(resolution, 1) ** 2 * batch_size
    for speeds in (runs, probes):
        nearby = [(abs(math.log(max(res, 1) ** 2 * batch / work)), sps * max(res, 1) ** 2 * batch / work)
                  for (res, batch), sps in speeds.items()]
        if nearby:
            return min(nearby)[1]
    return None


def measured_batch_speeds(*, family: str = "", resolution: int = 0, path: Path | None = None) -> dict[int, float]:
    """{batch size: steps/s} measured on this machine at this family and resolution, nothing scaled: the speed
    probe's set when it measured two batches or more (one method for all), else the training runs'."""
    probes, runs = ({b: sps for (res, b), sps in _speeds_here(family, path, source).items() if res == resolution}
                    for source in (PROBE, ""))
    return probes if len(probes) >= 2 else runs


def record_config_speed(cfg: TrainConfig, steps_per_second: float, path: Path | None = None) -> Path:
    """``record_speed`` keyed the way ``plan_steps`` looks it up: the trainer calls this after a run."""
    return record_speed(steps_per_second, family=cfg.model.family, resolution=cfg.data.resolution,
                        batch_size=cfg.training.train_batch_size, path=path)
