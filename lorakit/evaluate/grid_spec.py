"""What a grid is: axes, cells and the plan of a grid spec (no drawing; see grid.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lorakit.config.sample_prompts import parse_sample_prompt
from lorakit.config.schema import TrainConfig
from lorakit.errors import GridError
from lorakit.lora.prompt_tags import parse_prompt
from lorakit.models.samplers import sampler_name
from lorakit.project import Project

AXIS_KINDS = ("checkpoint", "strength", "prompt", "seed", "cfg", "steps", "sampler")




@dataclass
class Axis:
    kind: str
    values: list[Any]
    labels: list[str]


@dataclass
class Cell:
    """The settings of one image."""

    prompt: str
    negative_prompt: str
    seed: int
    cfg: float
    steps: int
    sampler: str
    checkpoint: str | None  # path of the LoRA file, or None for the base model
    strength: float
    width: int | None = None
    height: int | None = None

    def batch_key(self) -> tuple:
        """What cells must share to be drawn in one batch: LoRAs (file and prompt tags) and sampling settings."""
        lora = (self.checkpoint, self.strength) if self.checkpoint and self.strength else None
        tags = tuple(parse_prompt(self.prompt)[1])
        return (lora, tags, self.negative_prompt, self.cfg, self.steps, self.sampler, self.width, self.height)

    def image_key(self) -> tuple:
        return (*self.batch_key(), self.prompt, self.seed)


@dataclass
class GridSpec:
    prompt: str
    x: Axis
    y: Axis | None = None
    z: Axis | None = None
    negative_prompt: str = ""
    steps: int = 20
    cfg: float = 7.0
    seed: int = 1
    sampler: str = "Euler a"
    strength: float = 1.0
    checkpoint: str | None = None  # default LoRA when no axis is 'checkpoint'
    width: int | None = None
    height: int | None = None


def parse_axis(text: str, project: Project | None = None) -> Axis:
    """'strength=1,0.8' / 'seed=1,2,3' / 'prompt=red,blue' (S/R: the first is searched, each replaces it) /
    'sampler=Euler a|DDIM' / 'checkpoint' (all of the project's) / 'checkpoint=name-000002,name'."""
    kind, _, raw = text.partition("=")
    kind = kind.strip().lower()
    aliases = {"epoch": "checkpoint", "checkpoints": "checkpoint", "weight": "strength", "prompt_sr": "prompt",
               "prompt s/r": "prompt", "sr": "prompt", "scale": "cfg", "cfg scale": "cfg"}
    kind = aliases.get(kind, kind)
    if kind not in AXIS_KINDS:
        raise GridError(f"unknown axis {kind!r}; axes are: {', '.join(AXIS_KINDS)}")
    sep = "|" if "|" in raw else ","
    parts = [p.strip() for p in raw.split(sep) if p.strip()] if raw else []
    if kind == "checkpoint":
        if project is None:
            raise GridError("a checkpoint axis needs the project folder")
        files = project.checkpoints()
        if parts:
            by_name = {f.stem: f for f in files} | {f.name: f for f in files}
            missing = [p for p in parts if p not in by_name and not Path(p).is_file()]
            if missing:
                raise GridError(f"checkpoints not found: {', '.join(missing)}; have: {', '.join(by_name) or 'none'}")
            files = [by_name.get(p, Path(p)) for p in parts]
        if not files:
            raise GridError(f"no checkpoints in {project.output_dir}: train first (notebook 03).")
        return Axis(kind, [str(f) for f in files], [f.stem for f in files])
    if not parts:
        raise GridError(f"axis {kind!r} needs values, e.g. {kind}=" + {"strength": "1,0.75,0.5", "seed": "1,2,3",
                        "cfg": "4,7", "steps": "20,30", "sampler": "Euler a|DDIM", "prompt": "red,blue"}[kind])
    try:
        if kind == "strength" or kind == "cfg":
            values: list[Any] = [float(p) for p in parts]
        elif kind in ("seed", "steps"):
            values = [int(p) for p in parts]
        elif kind == "sampler":
            values = [sampler_name(p) for p in parts]
        else:
            values = parts
    except ValueError as e:
        raise GridError(f"axis {kind}: {e}") from e
    return Axis(kind, values, [_fmt(v) for v in values])


def grid_defaults(project: Project | None, cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Prompt, steps, CFG and sampler from the sample settings (``cfg``, else the project's lorakit.toml)."""
    out: dict[str, Any] = {"prompt": "", "steps": 20, "cfg": 7.0, "sampler": "Euler a"}
    if cfg is None and project is not None and project.config_path.is_file():
        cfg = project.load_config()
    if cfg is None:
        return out
    sampling = cfg.sampling
    prompts = [parse_sample_prompt(p).prompt for p in sampling.sample_prompts]
    out.update(prompt=prompts[0] if prompts else "", steps=sampling.sample_steps, cfg=float(sampling.sample_cfg),
               sampler=sampler_name(sampling.sample_sampler))
    return out


def build_spec(project: Project | None, x: str = "checkpoint", y: str = "strength=1,0.75,0.5", z: str = "",
               prompt: str = "", **settings: Any) -> GridSpec:
    """A GridSpec from axis texts as typed in the CLI or the notebook form; ``settings`` are GridSpec fields.

    With no prompt, the project's first sample prompt is used.
    """
    prompt = prompt or grid_defaults(project)["prompt"]
    if not prompt:
        raise GridError("give a prompt (the project's config has no sample prompt to fall back on)")
    unknown = set(settings) - {f for f in GridSpec.__dataclass_fields__ if f not in ("x", "y", "z", "prompt")}
    if unknown:
        raise GridError(f"unknown grid settings: {', '.join(sorted(unknown))}")
    return GridSpec(prompt=prompt, x=parse_axis(x, project), y=parse_axis(y, project) if y.strip() else None,
                    z=parse_axis(z, project) if z and z.strip() else None, **settings)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _apply(cell: Cell, axis: Axis | None, i: int) -> Cell:
    if axis is None:
        return cell
    v = axis.values[i]
    if axis.kind == "checkpoint":
        return replace(cell, checkpoint=v)
    if axis.kind == "strength":
        return replace(cell, strength=v)
    if axis.kind == "prompt":
        if axis.values[0] not in cell.prompt:
            raise GridError(f"Prompt S/R: {axis.values[0]!r} does not occur in the prompt {cell.prompt!r}")
        return replace(cell, prompt=cell.prompt.replace(axis.values[0], v))
    return replace(cell, **{axis.kind: v})


def plan(spec: GridSpec, project: Project | None = None) -> list[list[list[Cell]]]:
    """The cells [z][row][col] of a grid spec."""
    checkpoint = spec.checkpoint
    axes = {a.kind for a in (spec.x, spec.y, spec.z) if a}
    tagged = bool(parse_prompt(spec.prompt)[1])  # the prompt names its LoRAs itself, as in A1111
    if checkpoint is None and project is not None and "checkpoint" not in axes and not tagged:
        files = project.checkpoints()
        checkpoint = str(files[-1]) if files else None
    start = Cell(spec.prompt, spec.negative_prompt, spec.seed, spec.cfg, spec.steps, sampler_name(spec.sampler),
                 checkpoint, spec.strength, spec.width, spec.height)
    zs = range(len(spec.z.values)) if spec.z else [0]
    ys = range(len(spec.y.values)) if spec.y else [0]
    cells = [[[_apply(_apply(_apply(start, spec.z if spec.z else None, k), spec.y, j), spec.x, i)
               for i in range(len(spec.x.values))] for j in ys] for k in zs]
    for cell in (c for z in cells for row in z for c in row):
        check_cell(cell)
    return cells


def check_cell(cell: Cell) -> None:
    """Settings no sampler can draw with are refused before anything is drawn."""
    if cell.steps < 1:
        raise GridError(f"steps = {cell.steps}: a sampler needs at least 1 step (20-30 is usual).")
    if not cell.cfg >= 0:
        raise GridError(f"cfg = {cell.cfg}: the guidance scale is 0 or more (4-8 is usual).")
    if cell.seed < 0:
        raise GridError(f"seed = {cell.seed}: seeds are 0 or more.")
    for name in ("width", "height"):
        size = getattr(cell, name)
        if size is not None and (size < 8 or size % 8):
            raise GridError(f"{name} = {size}: image sizes are multiples of 8 (the VAE works in 8-pixel blocks).")


def headers(axis: Axis | None) -> list[str]:
    """Header texts of an axis: the value alone for checkpoints and Prompt S/R, else 'kind: value'."""
    if axis is None:
        return [""]
    if axis.kind in ("checkpoint", "prompt"):
        return list(axis.labels)
    return [f"{axis.kind}: {label}" for label in axis.labels]

