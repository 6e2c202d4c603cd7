"""Progress for training: a tqdm bar (CLI and notebook) with loss, lr and steps/s; loss smoothing."""

from __future__ import annotations

import contextlib
from pathlib import Path

from lorakit.config.sample_prompts import parse_sample_prompt
from lorakit.config.schema import TrainConfig
from lorakit.pictures import draw_grid
from lorakit.train.events import Callback, TrainResult
from lorakit.train.steps import record_config_speed


def smooth(values: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average, as TensorBoard's smoothing slider."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def start_line(info: dict) -> str:
    """The run's first line: model, images, steps, and the CPU threads lorakit chose."""
    threads = info.get("threads") or 0
    where = f"; {threads} CPU thread{'s' if threads != 1 else ''}" if threads else ""
    return (f"training {info.get('model', '')}: {info.get('images', 0)} images, {info['total_steps']} steps in "
            f"{info.get('epochs', 0)} epochs{where}")


class TqdmCallback(Callback):
    """A tqdm.auto progress bar: a widget in Jupyter, text in a terminal."""

    def __init__(self) -> None:
        self.bar = None

    def on_start(self, info: dict) -> None:
        from tqdm.auto import tqdm

        print(start_line(info))
        for note in info.get("notes", []):
            print(f"  note: {note}")
        self.bar = tqdm(total=info["total_steps"], initial=info.get("start_step", 0), desc="training", unit="step")

    def on_step(self, step: int, loss: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")

    def on_validation(self, step: int, loss: float, checkpoint: str) -> None:
        line = f"validation loss {loss:.5f} at step {step}" + (f" ({checkpoint})" if checkpoint else "")
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line)

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


class SpeedRecorder(Callback):
    """Remembers the run's steps/s (first step excluded) for this machine and setting, so that notebook 02 can say
    how long a run will take. It writes only to ``path`` (default: the user's speed file), and only when asked:
    the trainer itself writes nothing outside the project."""

    def __init__(self, cfg: TrainConfig, path: Path | None = None) -> None:
        self.cfg, self.path = cfg, path

    def on_end(self, result: TrainResult) -> None:
        ran = result.seconds - result.time_to_first_step
        if result.process_index == 0 and result.steps > 2 and ran > 0:
            with contextlib.suppress(OSError):
                record_config_speed(self.cfg, (result.steps - 1) / ran, self.path)


def default_callbacks(project, cfg: TrainConfig | None = None) -> list[Callback]:
    """The CLI's: a progress bar and the speed record (with ``cfg``); trackers are training.log_with's (trackers.py)."""
    return [TqdmCallback()] + ([SpeedRecorder(cfg)] if cfg is not None else [])


def loss_figure(losses: list[float], title: str = "training loss", validation: list[dict] | None = None):
    """A matplotlib figure of the loss per step, raw (faint) and smoothed; ``validation`` rows (step, loss) beside it.

    The validation loss is plain MSE on held-out images (train/validation.py), the training loss may be weighted
    (min-SNR): it gets its own axis on the right, so that both trends read at full height.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.6))
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, alpha=0.3, label="loss")
    ax.plot(steps, smooth(losses), label="smoothed")
    if validation:
        points = sorted({r["step"]: r["loss"] for r in validation}.items())
        right = ax.twinx()
        right.plot(*zip(*points, strict=True), marker="o", color="tab:red", label="validation (held out)")
        right.set_ylabel("validation loss", color="tab:red")
        right.legend(loc="upper center")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    plt.close(fig)  # returned for display; not drawn twice by the inline backend
    return fig


def samples_sheet(paths, prompts: list[str] | None = None):
    """The sample images of a run as one picture: a row per epoch, a column per prompt (labeled with it)."""
    from PIL import Image

    from lorakit.train.sampling import parse_sample_name

    rows: dict[str, dict[int, str]] = {}
    named = [(p, parse_sample_name(p)) for p in paths]
    strengths = {n.strength for _, n in named if n is not None and n.strength is not None}
    keep = min(strengths, key=lambda s: (abs(s - 1.0), -s)) if strengths else None  # several: the one nearest 1
    paths = [p for p, n in named if n is None or n.strength in (None, keep)]
    for p in sorted(paths):
        rows.setdefault(p.parent.name, {})[int(p.stem.rsplit("_", 1)[-1])] = p
    if not rows:
        return None
    cols = sorted({i for r in rows.values() for i in r})
    images = []
    for epoch in sorted(rows):
        first = Image.open(next(iter(rows[epoch].values()))).convert("RGB")
        blank = Image.new("RGB", first.size, "white")
        images.append([Image.open(rows[epoch][i]).convert("RGB") if i in rows[epoch] else blank for i in cols])

    labels = [parse_sample_prompt(prompts[i]).prompt if prompts and i < len(prompts) else f"prompt {i + 1}"
              for i in cols]
    return draw_grid(images, labels, [f"epoch {int(e)}" for e in sorted(rows)])
