"""The project folder that the notebooks share: paths, create/open, and what each step has produced.

    from lorakit.project import Project
    p = Project.create("my-lora")          # or Project.open("my-lora")
    p.config_path, p.dataset_dir, p.checkpoints()
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lorakit.config.schema import TrainConfig
from lorakit.errors import ProjectError, TrainingError

CONFIG_NAME = "lorakit.toml"
LOCK_NAME = ".lorakit-train.lock"  # one training run per project at a time




@dataclass(frozen=True)
class Project:
    root: Path

    # ---- creating and opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> Project:
        """Make the folder layout (idempotent: never touches existing files)."""
        p = cls(Path(root).expanduser().resolve())
        for d in (p.dataset_dir, p.output_dir, p.samples_dir, p.grids_dir, p.logs_dir, p.cache_dir):
            d.mkdir(parents=True, exist_ok=True)
        return p

    @classmethod
    def open(cls, root: str | Path) -> Project:
        p = cls(Path(root).expanduser().resolve())
        if not p.root.is_dir():
            raise ProjectError(f"No project folder at {p.root}. Create it with notebook 01 or `lorakit demo {root}`.")
        return p

    @classmethod
    def from_env(cls, default: str | Path) -> Project:
        """The notebooks' rule: $LORAKIT_PROJECT if set, else ``default``; created if missing."""
        return cls.create(os.environ.get("LORAKIT_PROJECT") or default)

    # ---- paths ---------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def reg_dir(self) -> Path:
        return self.dataset_dir / "reg"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def state_dir(self) -> Path:
        return self.output_dir / "state"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def grids_dir(self) -> Path:
        return self.root / "grids"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def validation_log(self) -> Path:
        """The validation loss of each run, one JSON row per evaluation (train/validation.py writes it)."""
        return self.logs_dir / "validation.jsonl"

    # ---- what the steps produced ---------------------------------------------------------------------
    def load_config(self) -> TrainConfig:
        if not self.config_path.is_file():
            raise ProjectError(f"{self.config_path} is missing: run notebook 02 (hyperparameters) first.")
        return TrainConfig.load(self.config_path)

    def resolve(self, relative: str) -> Path:
        """A path from the config: absolute as given, else relative to the project folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.root / path

    def checkpoints(self, name: str | None = None) -> list[Path]:
        """LoRA files in output/, in training order: name-000001, name-step00000500, name-000002, ..., then name
        (the last); see training_order."""
        files = sorted(self.output_dir.glob("*.safetensors"))
        if name is not None:
            files = [f for f in files if f.stem == name or f.stem.startswith(name + "-")]
        numbered = [f for f in files if checkpoint_index(f.stem) is not None]
        final = [f for f in files if checkpoint_index(f.stem) is None]
        return training_order(numbered) + sorted(final, key=lambda f: (raw_stem(f.stem), f.stem.endswith(EMA_SUFFIX)))

    def grids(self) -> list[Path]:
        return sorted(self.grids_dir.glob("*.png"))

    # ---- one run at a time ---------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    @contextlib.contextmanager
    def lock(self, enabled: bool = True) -> Iterator[None]:
        """Hold the project's training lock: a second run on the same project is refused before it moves anything.

        The lock file holds the PID, host and start time; a lock left by a process that no longer runs (on this
        host) is taken over with a warning. ``enabled=False`` (the other processes of a multi-GPU run) holds nothing.
        """
        if not enabled:
            yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for attempt in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(self.lock_path)
                if attempt == 0 and not _alive(holder):
                    warnings.warn(f"{self.lock_path.name}: taking over the lock of a run that is no longer "
                                  f"running (pid {holder.get('pid')}, started {holder.get('started')}).", stacklevel=3)
                    with contextlib.suppress(FileNotFoundError):
                        self.lock_path.unlink()
                    continue
                raise TrainingError(
                    f"{self.root} is being trained by another run (pid {holder.get('pid')} on {holder.get('host')}, "
                    f"started {holder.get('started')}): wait for it to finish or stop it; if no run is going, "
                    f"delete {self.lock_path}.") from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f)
            break
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                if _read_lock(self.lock_path).get("pid") == record["pid"]:
                    self.lock_path.unlink()


EMA_SUFFIX = "-ema"  # name-000004-ema.safetensors: the EMA weights saved beside name-000004 (train/ema.py)


def raw_stem(stem: str) -> str:
    """A checkpoint's stem without its EMA suffix: 'lora-000004-ema' -> 'lora-000004'."""
    return stem.removesuffix(EMA_SUFFIX)


STEP_TAG = "step"  # name-step00000500.safetensors: a save every N steps, as kohya names it


def checkpoint_index(stem: str) -> tuple[str, int] | None:
    """What a checkpoint's stem numbers: 'lora-000004' -> ('epoch', 4), 'lora-step00000500' -> ('step', 500)
    (an EMA twin as its raw file); None for the final file."""
    head, _, tail = raw_stem(stem).rpartition("-")
    if not head:
        return None
    if tail.isascii() and tail.isdigit():
        return "epoch", int(tail)
    number = tail.removeprefix(STEP_TAG)
    if tail.startswith(STEP_TAG) and number.isascii() and number.isdigit():
        return "step", int(number)
    return None


def saved_at_step(path: Path) -> int | None:
    """The training step a LoRA file was saved at (its ss_steps metadata), read from the safetensors header only;
    None when the file does not say."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100_000_000:
                return None
            meta = json.loads(f.read(size)).get("__metadata__") or {}
        return int(meta["ss_steps"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def training_order(files: list[Path]) -> list[Path]:
    """Numbered checkpoints in the order training wrote them, each EMA twin right after its raw file. Epoch files
    sort by epoch and step files by step; when a run has both, epoch files go at the step their ss_steps metadata
    gives (a step save at that same step first). Without that metadata the epoch files come first, then the step
    files."""
    index = {f: checkpoint_index(f.stem) for f in files}
    at = {}
    if len({kind for kind, _ in index.values()}) == 2:
        at = {f: saved_at_step(f) for f in files if index[f][0] == "epoch"}
        if any(v is None for v in at.values()):
            at = {}

    def key(f: Path):
        kind, n = index[f]
        place = ((n if kind == "step" else at[f]), kind == "epoch") if at else (kind == "step", n)
        return (*place, n, raw_stem(f.stem), f.stem.endswith(EMA_SUFFIX))

    return sorted(files, key=key)


def _read_lock(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(holder: dict) -> bool:
    """Whether the process that wrote a lock still runs (a lock from another host counts as alive)."""
    if holder.get("host") != socket.gethostname():
        return bool(holder)
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

