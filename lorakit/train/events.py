"""What a run tells the outside: the callback interface (notebook live view, CLI bar, loggers) and its result.

    class Printer(Callback):
        def on_step(self, step, loss, lr): print(step, loss)
    result = train(project, cfg, callbacks=[Printer()])   # result.checkpoints, result.losses, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainResult:
    checkpoints: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    time_to_first_step: float = 0.0
    interrupted: bool = False
    state_path: Path | None = None
    weights_checksum: str = ""
    process_index: int = 0
    num_processes: int = 1
    moved_aside: list[Path] = field(default_factory=list)  # an earlier run's files, kept in output/previous/
    validation: list[dict] = field(default_factory=list)  # {"step", "epoch", "loss", "checkpoint"} (validation.py)
    embedding: Path | None = None  # pivotal tuning's embedding file (output/embeddings/<trigger>.safetensors)

    @property
    def final(self) -> Path | None:
        return self.checkpoints[-1] if self.checkpoints else None


class Callback:
    """Receives training events; override what you need (the notebook's live view does)."""

    def on_start(self, info: dict) -> None: ...
    def on_step(self, step: int, loss: float, lr: float) -> None: ...
    def on_epoch_end(self, epoch: int, mean_loss: float) -> None: ...
    def on_checkpoint(self, path: Path) -> None: ...
    def on_samples(self, epoch: int, step: int, paths: list[Path]) -> None: ...
    def on_validation(self, step: int, loss: float, checkpoint: str) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...


class Callbacks(Callback):
    """Several callbacks as one: each event goes to each, in order."""

    def __init__(self, callbacks: list[Callback] | tuple = ()) -> None:
        self.callbacks = list(callbacks)

    def on_start(self, info: dict) -> None:
        for cb in self.callbacks:
            cb.on_start(info)

    def on_step(self, step: int, loss: float, lr: float) -> None:
        for cb in self.callbacks:
            cb.on_step(step, loss, lr)

    def on_epoch_end(self, epoch: int, mean_loss: float) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, mean_loss)

    def on_checkpoint(self, path: Path) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(path)

    def on_samples(self, epoch: int, step: int, paths: list[Path]) -> None:
        for cb in self.callbacks:
            cb.on_samples(epoch, step, paths)

    def on_validation(self, step: int, loss: float, checkpoint: str) -> None:
        for cb in self.callbacks:
            cb.on_validation(step, loss, checkpoint)

    def on_end(self, result: TrainResult) -> None:
        for cb in self.callbacks:
            cb.on_end(result)
