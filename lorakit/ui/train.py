"""Notebook 03: a small form over the settings people change between runs, and the live training view."""

from __future__ import annotations

import time
from pathlib import Path

import ipywidgets as widgets
from IPython.display import Image as IPImage
from IPython.display import display

from lorakit.config.schema import TrainConfig
from lorakit.train.events import TrainResult
from lorakit.train.progress import TqdmCallback, loss_figure

QUICK_FIELDS = [
    ("training", "max_train_epochs"), ("optimizer", "unet_lr"), ("optimizer", "text_encoder_lr"),
    ("network", "rank"), ("network", "alpha"), ("saving", "save_every_n_epochs"), ("sampling", "sample_every_n_epochs"),
]


class TrainForm:
    """Widgets for the fields most often changed between runs (notebook 02 has them all) and 'resume'."""

    def __init__(self, cfg: TrainConfig, can_resume: bool = False, loras: list[Path] | tuple = ()):
        self.cfg = cfg
        self.inputs: dict[tuple[str, str], widgets.Widget] = {}
        style = {"description_width": "170px"}
        for section, name in QUICK_FIELDS:
            value = getattr(getattr(cfg, section), name)
            cls = widgets.IntText if isinstance(value, int) else widgets.FloatText
            self.inputs[(section, name)] = cls(value=value, description=name, style=style)
        self.resume = widgets.Checkbox(value=False, description="resume the interrupted run",
                                       disabled=not can_resume, style=style)
        options = [("nothing (train from zero)", "")] + [(Path(p).name, str(p)) for p in loras]
        if cfg.network.init_from and cfg.network.init_from not in [v for _, v in options]:
            options.append((Path(cfg.network.init_from).name, cfg.network.init_from))
        self.start_from = widgets.Dropdown(options=options, value=cfg.network.init_from or "",
                                           description="start from (a new run)", style=style)
        self.widget = widgets.VBox([*self.inputs.values(), self.resume, self.start_from])

    def value(self) -> TrainConfig:
        """The config with the form's values, validated."""
        from lorakit.errors import ConfigError

        for (section, name), w in self.inputs.items():
            setattr(getattr(self.cfg, section), name, w.value)
        if self.resume.value and self.start_from.value:
            raise ConfigError("tick 'resume' (continue the interrupted run) or pick a file under 'start from' (a new "
                              "run from that LoRA), not both.")
        self.cfg.network.init_from = self.start_from.value
        return self.cfg.validate()


class LiveView(TqdmCallback):
    """Progress bar, a loss plot (raw and smoothed) redrawn every few seconds, and the samples as they appear."""

    def __init__(self, every_seconds: float = 2.0):
        super().__init__()
        self.plot = widgets.Output()
        self.gallery = widgets.Output()
        self.losses: list[float] = []
        self.validation: list[dict] = []  # {"step", "loss"}: drawn beside the training loss
        self.every, self._last = every_seconds, 0.0
        display(widgets.VBox([self.plot, self.gallery]))

    def on_step(self, step: int, loss: float, lr: float) -> None:
        super().on_step(step, loss, lr)
        self.losses.append(loss)
        if time.monotonic() - self._last > self.every:
            self.draw()

    def on_validation(self, step: int, loss: float, checkpoint: str) -> None:
        super().on_validation(step, loss, checkpoint)
        self.validation.append({"step": step, "loss": loss})
        self.draw()

    def on_samples(self, epoch: int, step: int, paths: list[Path]) -> None:
        with self.gallery:
            print("before training (the base model):" if step == 0 else f"epoch {epoch}, step {step}:")
            for p in paths:
                display(IPImage(filename=str(p), width=160))

    def on_end(self, result: TrainResult) -> None:
        super().on_end(result)
        self.draw()

    def draw(self) -> None:
        self._last = time.monotonic()
        with self.plot:
            self.plot.clear_output(wait=True)
            display(loss_figure(self.losses, validation=self.validation))
