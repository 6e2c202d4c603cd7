"""Notebook 02: the training config as a form made from TrainConfig's own field descriptions.

    form = HyperparameterForm(cfg, project)
    display(form.widget)          # edit, then run the next cell
    cfg = form.value()            # a validated TrainConfig

Every button calls a plain method (``apply_preset``, ``import_kohya``, ``refresh``, ``save``), which the notebook's
next cells call too: a headless run never clicks.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from lorakit.config.kohya import KohyaImport, import_kohya
from lorakit.config.presets import PRESETS, apply_preset, describe_recipe
from lorakit.config.schema import SECTIONS, TrainConfig, advice, default_of, iter_fields
from lorakit.errors import ConfigError
from lorakit.train.optimizers import lr_curve
from lorakit.train.steps import (
    DatasetCount,
    StepsPlan,
    Suggestion,
    count_project,
    format_duration,
    plan_steps,
    suggest_settings,
)

SECTION_TITLES = {
    "model": "Model: which base model and how it predicts",
    "network": "Network: adapter kind, rank and alpha",
    "optimizer": "Optimizer and learning-rate schedule",
    "data": "Data: resolution, buckets, captions, augmentation",
    "training": "Training: epochs, batch, precision, noise, seed",
    "saving": "Saving checkpoints",
    "sampling": "Sample images during training",
    "validation": "Validation loss on held-out images",
}
KINDS = [("(say what, for step advice)", ""), ("a character, person or object", "character"), ("a style", "style")]
_WIDE = widgets.Layout(width="420px")
_STYLE = {"description_width": "200px"}


def field_widget(name: str, value: Any, f) -> widgets.Widget:
    """One input for one setting: Checkbox, Dropdown (choices), IntText, FloatText, Textarea (lists) or Text."""
    help_text = f.metadata.get("help", "")
    common = {"description": name, "tooltip": help_text, "style": _STYLE, "layout": _WIDE}
    default = default_of(f)
    if isinstance(default, bool):
        return widgets.Checkbox(value=value, indent=True, **common)
    if f.metadata.get("choices"):
        options = [(c or "(none)", c) for c in f.metadata["choices"]]  # "" reads as none (training.log_with)
        return widgets.Dropdown(options=options, value=value, **common)
    if isinstance(default, int):
        return widgets.IntText(value=value, **common)
    if isinstance(default, float):
        return widgets.FloatText(value=value, **common)
    if isinstance(default, list):
        return widgets.Textarea(value="\n".join(map(str, value)), placeholder="one per line", rows=3, **common)
    return widgets.Text(value=value, **common)


def read_widget(w: widgets.Widget, default: Any) -> Any:
    """A widget's value in the field's type (a Textarea becomes a list of non-empty lines)."""
    if isinstance(default, list):
        return [line for line in w.value.splitlines() if line.strip()]
    return w.value


def steps_html(plan: StepsPlan, suggestion: Suggestion | None = None, recipe: str = "",
               cfg: TrainConfig | None = None) -> str:
    """The per-epoch steps table, the formula and the guidance as HTML; the suggestion for the dataset's size (its
    learning rates named from ``cfg``) and the recipe's effective learning rate under it."""
    rows = "".join(
        f"<tr><td>{r.epoch}</td><td>{r.steps}</td><td>{'✔' if r.checkpoint else ''}</td>"
        f"<td>{'✔' if r.sample else ''}</td><td>{format_duration(r.seconds)}</td></tr>"
        for r in plan.rows
    )
    head = "<tr><th>epoch</th><th>steps</th><th>checkpoint</th><th>sample</th><th>time</th></tr>"
    return (f"<p>{html.escape(plan.summary())}</p><table style='text-align:right'>{head}{rows}</table>"
            f"<p><b>{html.escape(plan.guidance)}</b></p>"
            + (f"<p>{html.escape(suggestion.text(cfg))}</p>" if suggestion else "")
            + (f"<p style='color:#57606a'>{html.escape(recipe)}</p>" if recipe else ""))


def lr_figure(cfg: TrainConfig, total_steps: int, steps_per_epoch: int = 0):
    """A matplotlib figure of the UNet and text-encoder learning rate per step (the trainer's scheduler code)."""
    import matplotlib.pyplot as plt


    curve = lr_curve(cfg, max(total_steps, 1), every=max(1, total_steps // 2000))  # ~2000 points are plenty
    steps = [s for s, _, _ in curve]
    fig, ax = plt.subplots(figsize=(8, 3))
    if cfg.network.train_unet:
        ax.plot(steps, [u for _, u, _ in curve], label=f"UNet (max {cfg.optimizer.unet_lr:g})")
    if cfg.train_text_encoder:
        ax.plot(steps, [t for _, _, t in curve], label=f"text encoder (max {cfg.optimizer.text_encoder_lr:g})")
    for epoch_end in range(steps_per_epoch, total_steps, steps_per_epoch) if steps_per_epoch > 0 else ():
        ax.axvline(epoch_end, color="#ddd", lw=0.8, zorder=0)  # epoch boundaries
    ax.set(xlabel="step", ylabel="learning rate", title=f"lr_scheduler = {cfg.optimizer.lr_scheduler}")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def memory_html(lines: list[str]) -> str:
    """lorakit.train.memory.report's lines as HTML: the first in bold (red when it does not fit), the rest below."""
    if not lines:
        return ""
    color = "#cf222e" if "does not fit" in lines[0] else "#1a7f37"
    rest = "".join(f"<div style='color:#57606a'>{html.escape(x.strip())}</div>" for x in lines[1:])
    return f"<b style='color:{color}'>GPU {html.escape(lines[0])}</b>{rest}"


class HyperparameterForm:
    """Widgets for every TrainConfig setting, grouped by section, plus presets, kohya import, steps and LR preview."""

    def __init__(self, cfg: TrainConfig | None = None, project=None, kind: str = "", live_memory: bool = False):
        self.project = project
        self.kind = kind
        self.live_memory = live_memory  # re-estimate the GPU memory (in the background) as the form changes
        self._memory_timer: threading.Timer | None = None
        self._memory_lock = threading.Lock()
        self.fields: dict[str, tuple[widgets.Widget, Any]] = {}  # "section.name" -> (widget, default)
        sections = {}
        cfg = cfg or TrainConfig()
        for section, name, value, f in iter_fields(cfg):
            w = field_widget(name, value, f)
            w.observe(self._on_change, names="value")
            self.fields[f"{section}.{name}"] = (w, default_of(f))
            note = widgets.HTML(f"<span style='color:#57606a'>{html.escape(f.metadata.get('help', ''))}</span>",
                                layout=widgets.Layout(width="560px"))
            sections.setdefault(section, []).append(widgets.HBox([w, note]))
        self.sections = widgets.Accordion(children=[widgets.VBox(sections[s]) for s in SECTIONS],
                                          titles=tuple(SECTION_TITLES[s] for s in SECTIONS))
        self.status = widgets.HTML()
        self.memory_out = widgets.HTML()
        self.report = widgets.HTML()
        self.steps_out = widgets.HTML()
        self.plot_out = widgets.Output()
        self.widget = widgets.VBox([self._preset_box(), self._kohya_box(), self.sections, self.status,
                                    self.memory_out, self._actions_box(), self.steps_out, self.plot_out])
        self._on_change()

    # ---- the parts of the form -------------------------------------------------------------------------
    def _preset_box(self) -> widgets.Widget:
        self.preset = widgets.Dropdown(options=[("(keep the current values)", "")]
                                       + [(p.title, p.name) for p in PRESETS.values()],
                                       description="preset", style=_STYLE, layout=widgets.Layout(width="560px"))
        self.preset_note = widgets.HTML()
        self.preset.observe(lambda _: self._show_preset_note(), names="value")
        button = widgets.Button(description="Apply preset", icon="magic")
        button.on_click(lambda _: self._guard(lambda: self.apply_preset(self.preset.value)))
        return widgets.VBox([widgets.HBox([self.preset, button]), self.preset_note])

    def _kohya_box(self) -> widgets.Widget:
        self.kohya_text = widgets.Textarea(placeholder="paste kohya_ss GUI settings (JSON) here",
                                           layout=widgets.Layout(width="700px", height="120px"))
        self.kohya_path = widgets.Text(placeholder="or the path of a kohya_ss .json file", description="file",
                                       layout=widgets.Layout(width="560px"))
        button = widgets.Button(description="Import kohya_ss", icon="download")
        button.on_click(lambda _: self._guard(lambda: self.import_kohya(self.kohya_path.value.strip()
                                                                        or self.kohya_text.value)))
        box = widgets.VBox([self.kohya_text, widgets.HBox([self.kohya_path, button]), self.report])
        return widgets.Accordion(children=[box], titles=("Import a kohya_ss config (paste or file)",))

    def _actions_box(self) -> widgets.Widget:
        self.kind_box = widgets.Dropdown(options=KINDS, value=self.kind if self.kind in dict(KINDS).values() else "",
                                         description="training", style={"description_width": "70px"})
        self.kind_box.observe(lambda change: setattr(self, "kind", change["new"]), names="value")
        refresh = widgets.Button(description="Steps and LR preview", icon="line-chart")
        refresh.on_click(lambda _: self._guard(self.refresh))
        save = widgets.Button(description="Save lorakit.toml", icon="save", button_style="primary")
        save.on_click(lambda _: self._guard(lambda: self._say(f"saved {self.save()}", ok=True)))
        self.minutes_box = widgets.IntText(value=0, description="minutes", style={"description_width": "70px"},
                                           layout=widgets.Layout(width="160px"),
                                           tooltip="time budget for the suggestion (0 = none)")
        self.vram_box = widgets.FloatText(value=0, description="GPU GB", style={"description_width": "70px"},
                                          layout=widgets.Layout(width="160px"),
                                          tooltip="the card to check the batch against (0 = this machine's GPU)")
        use = widgets.Button(description="Use suggested repeats/epochs/batch", icon="check",
                             layout=widgets.Layout(width="260px"))
        use.on_click(lambda _: self._guard(self.use_suggestion))
        measure = widgets.Button(description="Measure speed per batch", icon="tachometer",
                                 layout=widgets.Layout(width="220px"))
        measure.on_click(lambda _: self._guard(self.measure_speed))
        return widgets.VBox([widgets.HBox([self.kind_box, refresh, save]),
                             widgets.HBox([self.minutes_box, self.vram_box, use, measure])])

    # ---- the actions (each also a plain call for headless runs) ------------------------------------------
    def value(self) -> TrainConfig:
        """The form's values as a validated TrainConfig (a ConfigError says what to fix)."""
        data: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for key, (w, default) in self.fields.items():
            section, name = key.split(".")
            data[section][name] = read_widget(w, default)
        return TrainConfig.from_dict(data, source="form").validate()

    def set_value(self, cfg: TrainConfig) -> None:
        """Show ``cfg`` in the widgets."""
        for key, (w, default) in self.fields.items():
            value = cfg.get(key)
            w.value = "\n".join(map(str, value)) if isinstance(default, list) else value
        self._on_change()

    def apply_preset(self, name: str) -> TrainConfig:
        """Fill the form from a preset, keeping the project's own settings; returns the new config."""
        if not name:
            return self.value()
        cfg = apply_preset(name, self.value())
        self.set_value(cfg)
        if name in dict(KINDS).values():
            self.kind_box.value = name
        self._say(f"preset {name!r} applied: {PRESETS[name].title}", ok=True)
        return cfg

    def import_kohya(self, source: str | Path | dict) -> KohyaImport:
        """Fill the form from kohya_ss settings (path, pasted text or dict) and show the mapping report."""
        result = import_kohya(source)
        current = self.value()
        keep = {k: current.get(k) for k in ("data.dataset_dir", "data.reg_dir")}  # paths stay the project's
        if current.model.base_model:  # the config's model may be a path on the machine that wrote it
            keep["model.base_model"] = current.model.base_model
        self.set_value(result.config.replace(keep))
        self.report.value = f"<pre style='font-size:85%'>{html.escape(result.report())}</pre>"
        kept = (f"; kept your base model (the config names {result.config.model.base_model!r})"
                if "model.base_model" in keep and keep["model.base_model"] != result.config.model.base_model else "")
        self._say(f"kohya_ss import: {len(result.mapped)} mapped, {len(result.unsupported)} not supported, "
                  f"{len(result.ignored)} ignored (report above){kept}", ok=True)
        return result

    def steps_plan(self) -> StepsPlan:
        """Steps per epoch for the project's dataset with the form's values."""
        cfg = self.value()
        count = count_project(cfg, self.project.root) if self.project is not None else DatasetCount()
        return plan_steps(cfg, count, kind=self.kind)

    def suggestion(self) -> Suggestion | None:
        """Repeats, epochs and batch size for the project's dataset (the minutes box fits them to a time budget at
        the measured speed; the GPU GB box names the card the batch must fit, else this machine's GPU)."""
        cfg = self.value()
        count = count_project(cfg, self.project.root) if self.project is not None else DatasetCount()
        if not count.images:
            return None
        vram = int(self.vram_box.value * 2**30) if self.vram_box.value > 0 else None
        with self._memory_lock:  # the batch's memory check shares the estimator with the live memory line
            return suggest_settings(cfg, count, self.kind or "character", self.minutes_box.value, vram_bytes=vram)

    def use_suggestion(self) -> TrainConfig:
        """Put the suggested repeats, epochs (a checkpoint every epoch), batch size and, when the batch changes, the
        learning rates scaled for it into the form."""
        suggestion = self.suggestion()
        if suggestion is None:
            raise ConfigError("no training images in the project yet: import them in notebook 01 first.")
        before = self.value()
        cfg = before.replace(suggestion.settings(before))
        self.set_value(cfg)
        self.refresh()
        self._say(suggestion.text(before), ok=True)
        return cfg

    def measure_speed(self, batches: tuple[int, ...] | None = None, steps: int = 3):
        """Time a few training steps at several batch sizes on this machine (lorakit.train.speed_probe), for the
        time column and the batch suggestion; returns the probe."""
        from lorakit.train.speed_probe import measure_batch_speeds

        self._say("measuring: loading the base model, then a few steps per batch size…", ok=True)
        probe = measure_batch_speeds(self.value(), batches, steps)
        self.refresh()
        self._say(probe.text(), ok=True)
        return probe

    def refresh(self) -> StepsPlan:
        """Redraw the steps table and the learning-rate preview."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        cfg, plan = self.value(), self.steps_plan()
        self.steps_out.value = steps_html(plan, self.suggestion(), describe_recipe(cfg), cfg)
        self.plot_out.clear_output(wait=True)
        fig = lr_figure(cfg, plan.total_steps or 1000, plan.steps_per_epoch)
        with self.plot_out:
            display(fig)
        plt.close(fig)
        return plan

    def memory(self, budget_bytes: int | None = None) -> str:
        """Show (and return) what this setting needs on the GPU: 'needs about X GB of your Y GB', and the fixes."""
        from lorakit.train.memory import report

        with self._memory_lock:  # one estimate at a time (they are cached per setting)
            lines = report(self.value(), budget_bytes)
        self.memory_out.value = memory_html(lines)
        return "\n".join(lines)

    def _schedule_memory(self, delay: float = 1.0) -> None:
        """Re-estimate once the form has been still for ``delay`` seconds, off the kernel's thread."""
        if self._memory_timer is not None:
            self._memory_timer.cancel()
        self.memory_out.value = "<i style='color:#57606a'>estimating GPU memory…</i>"

        def run() -> None:
            try:
                self.memory()
            except Exception as e:  # noqa: BLE001 - a failed estimate must not break the form
                self.memory_out.value = f"<i>memory estimate unavailable: {html.escape(str(e))}</i>"

        self._memory_timer = threading.Timer(delay, run)
        self._memory_timer.daemon = True
        self._memory_timer.start()

    def save(self, path: str | Path | None = None) -> Path:
        """Write the form's config as TOML (default: the project's lorakit.toml)."""
        if path is None:
            if self.project is None:
                raise ConfigError("No project: pass a path to save().")
            path = self.project.config_path
        return self.value().save(path)

    # ---- feedback ------------------------------------------------------------------------------------------
    def _on_change(self, _change=None) -> None:
        try:
            notes = advice(self.value())
        except ConfigError as e:
            self._say(str(e), ok=False)
            return
        body = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        if self.live_memory:
            self._schedule_memory()
        self.status.value = "<b style='color:#1a7f37'>✔ valid</b>" + (f"<ul style='color:#9a6700'>{body}</ul>"
                                                                        if body else "")

    def _show_preset_note(self) -> None:
        p = PRESETS.get(self.preset.value)
        self.preset_note.value = f"<i>{html.escape(p.when)}</i>" if p else ""

    def _say(self, text: str, ok: bool) -> None:
        color = "#1a7f37" if ok else "#cf222e"
        self.status.value = f"<b style='color:{color}'>{'✔' if ok else '✖'} {html.escape(text)}</b>"

    def _guard(self, action) -> None:
        """Run a button's action; show a ConfigError in the status line instead of a traceback."""
        try:
            action()
        except (ConfigError, OSError) as e:
            self._say(str(e), ok=False)
