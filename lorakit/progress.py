"""Progress for training: a tqdm bar (CLI and notebook) with loss, lr and steps/s; loss smoothing."""

from __future__ import annotations

from lorakit.train import Callback, TrainResult


def smooth(values: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average, as TensorBoard's smoothing slider."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


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


class Summary(dict):
    """What a run did, shown as a table in a notebook and as lines in a terminal."""

    def __str__(self) -> str:
        return "\n".join(f"{k:>22}: {v}" for k, v in self.items())

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in self.items())
        return f"<table style='text-align:left'>{rows}</table>"


def summary(result: TrainResult) -> Summary:
    """Steps, time, best and last loss (smoothed), files written."""
    sm = smooth(result.losses)
    return Summary({
        "steps": result.steps,
        "epochs": result.epochs,
        "time": f"{result.seconds:.1f} s ({result.steps / max(result.seconds, 1e-9):.2f} steps/s)",
        "time to first step": f"{result.time_to_first_step:.1f} s",
        "last loss (smoothed)": f"{sm[-1]:.4f}" if sm else "-",
        "best loss (smoothed)": f"{min(sm):.4f} at step {sm.index(min(sm)) + 1}" if sm else "-",
        "interrupted": result.interrupted,
        "checkpoints": ", ".join(p.name for p in result.checkpoints) or "-",
        "samples": len(result.samples),
        "resume state": str(result.state_path or "-"),
        "earlier run kept in": str(result.moved_aside[0].parent) if result.moved_aside else "-",
    })


class TensorBoardCallback(Callback):
    """Loss and learning rate to <project>/logs/tensorboard, when the tensorboard package is installed."""

    def __init__(self, log_dir) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def on_step(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("loss", loss, step)
        self.writer.add_scalar("lr", lr, step)

    def on_end(self, result: TrainResult) -> None:
        self.writer.close()


def default_callbacks(project) -> list[Callback]:
    """A progress bar, plus TensorBoard logs if tensorboard is installed."""
    import importlib.util

    callbacks: list[Callback] = [TqdmCallback()]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(TensorBoardCallback(project.logs_dir / "tensorboard"))
    return callbacks
