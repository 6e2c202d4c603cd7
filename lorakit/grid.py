"""X/Y/Z grids, as in AUTOMATIC1111's X/Y/Z plot: axes of checkpoint, strength, Prompt S/R, seed, CFG, steps, sampler.

    spec = build_spec(project, "checkpoint", "strength=1,0.75,0.5", prompt="a yellow blicket on a green background")
    result = make_grid(project, spec)      # grids/<stamp>.png, labeled like A1111's, + .json/.a1111.txt/.comfyui.json
    print(result.summary())                # cells, images sampled, batches, seconds, images/s

Cells that share everything but prompt and seed are generated in one batch; identical cells (every strength-0
cell is the base image) are generated once. The PNG carries the generation parameters in a ``parameters`` text
chunk, as A1111 writes them; beside it go the JSON record, the A1111 X/Y/Z values (``.a1111.txt``) and a ComfyUI
workflow (``.comfyui.json``). ``annotate(cell, image) -> str`` writes a note under each cell (e.g. scores).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from lorakit import handoff
from lorakit.config import TrainConfig
from lorakit.files import atomic_path, atomic_write_text
from lorakit.generate import Generator, parse_prompt, sampler_name
from lorakit.project import Project

Annotate = Callable[["Cell", Image.Image], "str | None"]

HIGHLIGHT = (255, 128, 0)  # the frame of the suggested cell
AXIS_KINDS = ("checkpoint", "strength", "prompt", "seed", "cfg", "steps", "sampler")


class GridError(ValueError):
    """An axis or grid setting that cannot work, with the fix."""


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


@dataclass
class Rendered:
    """Each distinct image of a set of cells, and what it took to make them."""

    images: dict[tuple, Image.Image]
    generated: int = 0
    batches: int = 0
    seconds: float = 0.0


@dataclass
class GridResult:
    paths: list[Path] = field(default_factory=list)
    images: int = 0  # cells in all grids
    generated: int = 0  # images actually sampled (identical cells are sampled once)
    batches: int = 0
    seconds: float = 0.0  # everything: sampling, drawing, saving
    generate_seconds: float = 0.0  # sampling only (with LoRA loading and switching)
    cells: list[list[list[Cell]]] = field(default_factory=list)  # [z][row][col]
    cell_images: list[list[list[Image.Image]]] = field(default_factory=list)
    notes: list[list[list[str]]] = field(default_factory=list)
    grids: list[Image.Image] = field(default_factory=list, repr=False)
    exports: list[Path] = field(default_factory=list)
    best: tuple[int, int, int] | None = None  # (z, row, col) framed in orange, from the ``best`` hook
    rendered: dict[tuple, Image.Image] = field(default_factory=dict, repr=False)  # image_key -> image

    @property
    def images_per_second(self) -> float:
        """Sampled images per second of sampling time."""
        return self.generated / self.generate_seconds if self.generate_seconds else 0.0

    def summary(self) -> str:
        """One line: cells, sampled images, batches, reuse, time and images/s."""
        reused = self.images - self.generated
        return (f"{self.images} cells: {self.generated} images sampled in {self.batches} batches"
                f"{f' ({reused} reused)' if reused else ''}; sampling {self.generate_seconds:.1f} s "
                f"({self.images_per_second:.2f} images/s), total {self.seconds:.1f} s")


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
    prompts = [p.split(" --")[0].strip() for p in sampling.sample_prompts]
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
    return [[[_apply(_apply(_apply(start, spec.z if spec.z else None, k), spec.y, j), spec.x, i)
              for i in range(len(spec.x.values))] for j in ys] for k in zs]


def batch_groups(cells: list[Cell], batch_size: int = 8) -> list[list[Cell]]:
    """Distinct cells grouped into batches that share LoRA and sampling settings, one checkpoint after another."""
    groups: dict[tuple, dict[tuple, Cell]] = {}
    for c in cells:
        groups.setdefault(c.batch_key(), {}).setdefault(c.image_key(), c)
    # same checkpoint together: its adapter is switched to once, and never evicted and reloaded
    ordered = sorted(groups.values(), key=lambda g: str(next(iter(g.values())).checkpoint or ""))
    out = []
    for group in ordered:
        members = list(group.values())
        out += [members[i:i + batch_size] for i in range(0, len(members), batch_size)]
    return out


def render_cells(gen: Generator, cells: list[Cell], batch_size: int = 8, progress: bool = False,
                 cache: dict[tuple, Image.Image] | None = None, lora_dirs: list[Path] | None = None) -> Rendered:
    """Generate each distinct image once, batching cells that share LoRA and sampling settings.

    Images already in ``cache`` (image_key -> image, e.g. an earlier GridResult.rendered) are not drawn again;
    new ones are added to it. ``<lora:name:w>`` tags in prompts are looked up in ``lora_dirs``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    images = cache if cache is not None else {}
    batches = batch_groups([c for c in cells if c.image_key() not in images], batch_size)
    out = Rendered(images, batches=len(batches))
    for group in tqdm(batches, desc="grid", unit="batch", disable=not progress):
        first = group[0]
        lora = [(first.checkpoint, first.strength)] if first.checkpoint and first.strength else []
        images = gen.generate_batch([c.prompt for c in group], seeds=[c.seed for c in group], loras=lora,
                                    negative_prompt=first.negative_prompt, steps=first.steps, cfg=first.cfg,
                                    sampler=first.sampler, width=first.width, height=first.height,
                                    lora_dirs=lora_dirs or ())
        out.generated += len(images)
        for c, im in zip(group, images, strict=True):
            out.images[c.image_key()] = im
    out.seconds = time.perf_counter() - t0
    return out


def a1111_parameters(cell: Cell, size: tuple[int, int], model: str, script: str = "") -> str:
    """A1111's 'parameters' text: the prompt (with its <lora:...> tag), then the settings line."""
    prompt = cell.prompt
    if cell.checkpoint and cell.strength:
        prompt += f" <lora:{Path(cell.checkpoint).stem}:{cell.strength:g}>"
    lines = [prompt]
    if cell.negative_prompt:
        lines.append(f"Negative prompt: {cell.negative_prompt}")
    lines.append(f"Steps: {cell.steps}, Sampler: {cell.sampler}, CFG scale: {cell.cfg:g}, Seed: {cell.seed}, "
                 f"Size: {size[0]}x{size[1]}, Model: {model}" + (f", {script}" if script else ""))
    return "\n".join(lines)


def _zoom(images: list[list[Image.Image]], target: int = 192) -> list[list[Image.Image]]:
    """Enlarge small images by a whole factor, pixel for pixel (the demo model draws 32 px)."""
    w, h = images[0][0].size
    zoom = max(1, target // max(w, h))
    if zoom == 1:
        return images
    return [[im.resize((w * zoom, h * zoom), Image.Resampling.NEAREST) for im in row] for row in images]


def draw_grid(images: list[list[Image.Image]], col_labels: list[str], row_labels: list[str], title: str = "",
              notes: list[list[str]] | None = None, highlight: tuple[int, int] | None = None) -> Image.Image:
    """Images in rows and columns with headers on top and at the left, like A1111's grids.

    ``notes`` [row][col] are written under each image; ``highlight`` (row, col) frames one cell in orange.
    """
    images = _zoom(images)
    w, h = images[0][0].size
    font_size = max(12, min(32, w // 8))
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=max(11, font_size * 3 // 4))
    note_h = small.size + 8 if notes and any(n for row in notes for n in row) else 0
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max([probe.textlength(t, font=font) for t in row_labels if t] + [0]) + 16) if any(row_labels) else 0
    wrapped = [_wrap(label, font, w - 8, probe) for label in col_labels]  # long headers on several lines
    lines = max([len(x) for x in wrapped] + [1])
    top = font_size * (lines + 1) + 8 + (font_size + 8 if title else 0)
    cols, rows, cell_h = len(images[0]), len(images), h + note_h
    out = Image.new("RGB", (left + cols * w, top + rows * cell_h), "white")
    d = ImageDraw.Draw(out)
    if title:
        d.text((8, 4), title, fill="black", font=font)
    for i, label_lines in enumerate(wrapped):
        for k, line in enumerate(reversed(label_lines)):  # bottom line just above the image
            d.text((left + i * w + w // 2, top - font_size // 2 - 4 - k * (font_size + 2)), line, fill="black",
                   font=font, anchor="mm")
    for j, row in enumerate(images):
        y = top + j * cell_h
        if row_labels[j]:
            d.text((left - 8, y + h // 2), row_labels[j], fill="black", font=font, anchor="rm")
        for i, im in enumerate(row):
            out.paste(im, (left + i * w, y))
            if note_h and notes[j][i]:
                d.text((left + i * w + w // 2, y + h + note_h // 2), notes[j][i], fill="black", font=small,
                       anchor="mm")
    if highlight is not None:
        j, i = highlight
        box = (left + i * w, top + j * cell_h, left + (i + 1) * w - 1, top + j * cell_h + cell_h - 1)
        t = max(3, w // 48)  # orange with a black inner line: visible on any background
        d.rectangle(box, outline=HIGHLIGHT, width=t)
        d.rectangle((box[0] + t, box[1] + t, box[2] - t, box[3] - t), outline="black", width=1)
    return out


def _wrap(text: str, font, width: int, probe: ImageDraw.ImageDraw) -> list[str]:
    """Split a header into lines that fit ``width`` pixels (a word longer than that keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and probe.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def headers(axis: Axis | None) -> list[str]:
    """Header texts of an axis: the value alone for checkpoints and Prompt S/R, else 'kind: value'."""
    if axis is None:
        return [""]
    if axis.kind in ("checkpoint", "prompt"):
        return list(axis.labels)
    return [f"{axis.kind}: {label}" for label in axis.labels]


def make_grid(project: Project, spec: GridSpec, base_model: str = "", generator: Generator | None = None,
              stamp: str | None = None, annotate: Annotate | None = None,
              best: Callable[[GridResult], tuple[int, int, int] | None] | None = None, batch_size: int = 8,
              progress: bool = False, cache: dict[tuple, Image.Image] | None = None) -> GridResult:
    """Generate and save the grid(s) of ``spec``: one PNG (+ JSON, A1111 and ComfyUI files) per Z value.

    ``annotate(cell, image)`` returns a note written under the cell; ``best(result)`` the (z, row, col) to frame.
    """
    gen = generator or Generator(base_model)
    t0 = time.perf_counter()
    cells = plan(spec, project)
    rendered = render_cells(gen, [c for z in cells for row in z for c in row], batch_size, progress, cache,
                            [project.output_dir])
    result = GridResult(cells=cells, images=sum(len(row) for z in cells for row in z), generated=rendered.generated,
                        batches=rendered.batches, generate_seconds=rendered.seconds, rendered=rendered.images)
    for z_cells in cells:
        imgs = [[rendered.images[c.image_key()] for c in row] for row in z_cells]
        result.cell_images.append(imgs)
        result.notes.append([[(annotate(c, im) or "") if annotate else "" for c, im in zip(row, irow, strict=True)]
                             for row, irow in zip(z_cells, imgs, strict=True)])
    chosen = result.best = best(result) if best else None
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    for k in range(len(cells)):
        title = f"{spec.z.kind}: {spec.z.labels[k]}" if spec.z else ""
        highlight = chosen[1:] if chosen and chosen[0] == k else None
        grid = draw_grid(result.cell_images[k], headers(spec.x), headers(spec.y), title, result.notes[k], highlight)
        result.grids.append(grid)
        result.paths.append(project.grids_dir / f"{stamp}{f'-z{k}' if spec.z else ''}.png")
    result.seconds = time.perf_counter() - t0
    for k, path in enumerate(result.paths):
        _save(path, result.grids[k], spec, k, gen, result)
        result.exports += _export(path, spec, result.cells[k], result.cell_images[k][0][0].size, gen)
    result.seconds = time.perf_counter() - t0
    return result


def _save(path: Path, grid: Image.Image, spec: GridSpec, k: int, gen: Generator, result: GridResult) -> None:
    first = result.cells[k][0][0]
    record = _record(spec, k, gen, result)
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(first, result.cell_images[k][0][0].size, Path(gen.base.source).name,
                                                 handoff.a1111_script_line(spec)))
    info.add_text("lorakit", json.dumps(record))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG", pnginfo=info)
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, indent=1))


def _export(path: Path, spec: GridSpec, cells: list[list[Cell]], size: tuple[int, int], gen: Generator) -> list[Path]:
    """The A1111 X/Y/Z values and the ComfyUI workflow beside a grid."""
    model = Path(gen.base.source).name
    a1111 = atomic_write_text(path.with_suffix(".a1111.txt"), handoff.a1111_xyz_text(spec, cells[0][0], size, model))
    xs, ys = headers(spec.x), headers(spec.y)
    flat = [c for row in cells for c in row]
    labels = [f"{ys[j]} {xs[i]}".strip() for j, row in enumerate(cells) for i in range(len(row))]
    workflow = handoff.comfyui_workflow(flat, handoff.comfy_checkpoint_name(gen.base.source), size, labels,
                                        prefix=f"lorakit/{path.stem}")
    comfy = atomic_write_text(path.with_suffix(".comfyui.json"), json.dumps(workflow, indent=1))
    return [a1111, comfy]


def _record(spec: GridSpec, k: int, gen: Generator, result: GridResult) -> dict:
    return {
        "base_model": gen.base.source,
        "spec": {key: v for key, v in asdict(spec).items() if key not in ("x", "y", "z")},
        "axes": {name: asdict(a) for name, a in (("x", spec.x), ("y", spec.y), ("z", spec.z)) if a},
        "z_index": k,
        "cells": [[asdict(c) for c in row] for row in result.cells[k]],
        "notes": result.notes[k],
        "images": result.images,
        "generated": result.generated,
        "batches": result.batches,
        "generate_seconds": round(result.generate_seconds, 3),
        "seconds": round(result.seconds, 3),
        "images_per_second": round(result.images_per_second, 3),
    }
