"""The project folder that the notebooks share: paths, create/open, and what each step has produced.

    from lorakit.project import Project
    p = Project.create("my-lora")          # or Project.open("my-lora")
    p.config_path, p.dataset_dir, p.checkpoints()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lorakit.config import TrainConfig

CONFIG_NAME = "lorakit.toml"


class ProjectError(FileNotFoundError):
    """A project folder, or something a step needs in it, is missing."""


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
        """LoRA files in output/, in training order: name-000001, name-000002, ..., then name (the last)."""
        files = sorted(self.output_dir.glob("*.safetensors"))
        if name is not None:
            files = [f for f in files if f.stem == name or f.stem.startswith(name + "-")]
        numbered = [f for f in files if _suffix_number(f.stem) is not None]
        final = [f for f in files if _suffix_number(f.stem) is None]
        return sorted(numbered, key=lambda f: (_suffix_number(f.stem), f.name)) + final

    def grids(self) -> list[Path]:
        return sorted(self.grids_dir.glob("*.png"))


def _suffix_number(stem: str) -> int | None:
    head, _, tail = stem.rpartition("-")
    return int(tail) if head and tail.isdigit() else None
