"""The form of notebook 04: the X/Y/Z axes, prompt and sampling settings of a grid, and a cell picker.

    form = GridForm(project)
    display(form.widget)                                  # a person edits it ...
    spec = build_spec(project, **form.values())           # ... and the next cell reads its current values

Headless runs (nbmake) never click the button; the notebook's cells call the same functions with ``values()``.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from lorakit.config.schema import TrainConfig
from lorakit.evaluate.grid import GridResult
from lorakit.evaluate.grid_spec import AXIS_KINDS, GridSpec, grid_defaults, headers
from lorakit.evaluate.scoring import Edit, edits_text, parse_edits
from lorakit.models.samplers import SAMPLERS
from lorakit.project import Project

EXAMPLES = {"checkpoint": "all, or name-000002,name", "strength": "1,0.75,0.5", "prompt": "red,blue (Prompt S/R)",
            "seed": "1,2,3", "cfg": "4,7", "steps": "20,30", "sampler": "Euler a|DDIM", "": ""}
STYLE = {"description_width": "110px"}


class AxisField:
    """One axis: its kind (or none) and its values, as text like 'strength=1,0.8'."""

    def __init__(self, label: str, text: str) -> None:
        kind, _, values = text.partition("=")
        self.kind = w.Dropdown(options=["", *AXIS_KINDS], value=kind.strip(), description=label, style=STYLE,
                               layout=w.Layout(width="260px"))
        self.values = w.Text(value=values.strip(), placeholder=EXAMPLES[kind.strip()], layout=w.Layout(width="320px"))
        self.kind.observe(self._hint, names="value")
        self.widget = w.HBox([self.kind, self.values])

    def _hint(self, change: dict) -> None:
        self.values.placeholder = EXAMPLES.get(change["new"], "")

    def text(self) -> str:
        """'kind=values', 'checkpoint' (all checkpoints) or '' (no axis)."""
        if not self.kind.value:
            return ""
        return f"{self.kind.value}={self.values.value}" if self.values.value.strip() else self.kind.value


class GridForm:
    """Widgets for a grid spec, filled with the project's sample settings."""

    def __init__(self, project: Project | None, cfg: TrainConfig | None = None, x: str = "checkpoint",
                 y: str = "strength=1,0.75,0.5", z: str = "", seed: int = 1) -> None:
        d = grid_defaults(project, cfg)
        self.x, self.y, self.z = AxisField("X axis", x), AxisField("Y axis", y), AxisField("Z (one grid each)", z)
        self.prompt = w.Textarea(value=d["prompt"], description="prompt", style=STYLE, layout=w.Layout(width="600px"))
        self.negative = w.Textarea(value="", description="negative", style=STYLE, layout=w.Layout(width="600px"))
        self.steps = w.IntSlider(value=d["steps"], min=1, max=80, description="steps", style=STYLE)
        self.cfg = w.FloatSlider(value=d["cfg"], min=1.0, max=15.0, step=0.5, description="CFG", style=STYLE)
        self.seed = w.IntText(value=seed, description="seed", style=STYLE)
        self.sampler = w.Dropdown(options=list(SAMPLERS), value=d["sampler"], description="sampler", style=STYLE)
        self.scores = w.Checkbox(value=True, description="likeness / adaptability scores", indent=False)
        self.extra_seeds = w.BoundedIntText(value=0, min=0, max=32, description="extra seeds", style=STYLE,
                                            tooltip="more seeds per cell for the scores: each one draws the grid "
                                                    "and its adaptability prompts again")
        self.widget = w.VBox([
            w.HTML("<b>Axes</b>: checkpoint, strength, prompt (S/R: the first value is searched, each replaces it), "
                   "seed, cfg, steps, sampler. Values separated by commas (samplers by |)."),
            self.x.widget, self.y.widget, self.z.widget, self.prompt, self.negative,
            w.HBox([self.steps, self.cfg]), w.HBox([self.seed, self.sampler]), w.HBox([self.scores, self.extra_seeds]),
        ])

    def values(self) -> dict[str, Any]:
        """The current values as keyword arguments of ``lorakit.evaluate.grid_spec.build_spec``."""
        return {"x": self.x.text(), "y": self.y.text(), "z": self.z.text(), "prompt": self.prompt.value.strip(),
                "negative_prompt": self.negative.value.strip(), "steps": int(self.steps.value),
                "cfg": float(self.cfg.value), "seed": int(self.seed.value), "sampler": self.sampler.value}


class AdaptabilityForm:
    """The adaptability prompts, one a line ('colour: caption => edited caption'), editable before scoring."""

    def __init__(self, edits: list[Edit]) -> None:
        self.text = w.Textarea(value=edits_text(edits), layout=w.Layout(width="900px", height="130px"))
        self.widget = w.VBox([w.HTML("<b>Adaptability prompts</b>: one attribute changed per line "
                                     "(<code>attribute: caption =&gt; edited caption</code>); empty = none"),
                              self.text])

    def edits(self) -> list[Edit]:
        """The edits as the text now says (a malformed line names itself)."""
        return parse_edits(self.text.value)


class CellPicker:
    """Choose one cell of a grid result (column, row, and Z grid) to look at closely."""

    def __init__(self, result: GridResult, spec: GridSpec, default: tuple[int, int, int] | None = None) -> None:
        cols, rows, zs = headers(spec.x), headers(spec.y), headers(spec.z)
        k, j, i = default or (0, 0, 0)
        self.col = w.Dropdown(options=[(lab, n) for n, lab in enumerate(cols)], value=i, description="column",
                              style=STYLE)
        self.row = w.Dropdown(options=[(lab or "-", n) for n, lab in enumerate(rows)], value=j, description="row",
                              style=STYLE)
        self.z = w.Dropdown(options=[(lab or "-", n) for n, lab in enumerate(zs)], value=k, description="grid",
                            style=STYLE)
        self.result = result
        self.widget = w.HBox([self.col, self.row, self.z])

    def chosen(self) -> tuple[int, int, int]:
        """(z, row, col) of the chosen cell."""
        return int(self.z.value), int(self.row.value), int(self.col.value)

    def image(self):
        """The chosen cell's image."""
        k, j, i = self.chosen()
        return self.result.cell_images[k][j][i]
