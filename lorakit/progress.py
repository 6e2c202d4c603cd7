"""Progress for training: a tqdm bar (CLI and notebook) with loss, lr and steps/s."""

from __future__ import annotations

from lorakit.train import Callback, TrainResult


class TqdmCallback(Callback):
    """A tqdm.auto progress bar: a widget in Jupyter, text in a terminal."""

    def __init__(self) -> None:
        self.bar = None

    def on_start(self, info: dict) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=info["total_steps"], initial=info.get("start_step", 0), desc="training", unit="step")

    def on_step(self, step: int, loss: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")

    def on_end(self, result: TrainResult) -> None:
        if self.bar is not None:
            self.bar.close()
