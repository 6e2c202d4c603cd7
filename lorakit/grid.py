"""X/Y/Z grids, as in AUTOMATIC1111's X/Y/Z plot: axes of checkpoint, strength, Prompt S/R, seed, CFG, steps, sampler.

    spec = GridSpec(prompt="a zkx on a green background", x=parse_axis("checkpoint", project),
                    y=parse_axis("strength=1.0,0.75,0.5", project))
    result = make_grid(project, spec)      # grids/<stamp>.png (+ .json), labeled like A1111's

Cells that share everything but prompt and seed are generated in one batch; strength-0 cells reuse the base
image. The PNG carries the generation parameters in a ``parameters`` text chunk, as A1111 writes them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from lorakit.files import atomic_path, atomic_write_text
from lorakit.generate import Generator, sampler_name
from lorakit.project import Project

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
        lora = (self.checkpoint, self.strength) if self.checkpoint and self.strength else None
        return (lora, self.negative_prompt, self.cfg, self.steps, self.sampler, self.width, self.height)

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
class GridResult:
    paths: list[Path] = field(default_factory=list)
    images: int = 0
    generated: int = 0
    seconds: float = 0.0
    cells: list[list[list[Cell]]] = field(default_factory=list)  # [z][row][col]
    cell_images: list[list[list[Image.Image]]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds else 0.0


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
    if checkpoint is None and project is not None and "checkpoint" not in {a.kind for a in (spec.x, spec.y, spec.z) if a}:
        files = project.checkpoints()
        checkpoint = str(files[-1]) if files else None
    start = Cell(spec.prompt, spec.negative_prompt, spec.seed, spec.cfg, spec.steps, sampler_name(spec.sampler),
                 checkpoint, spec.strength, spec.width, spec.height)
    zs = range(len(spec.z.values)) if spec.z else [0]
    ys = range(len(spec.y.values)) if spec.y else [0]
    return [[[_apply(_apply(_apply(start, spec.z if spec.z else None, k), spec.y, j), spec.x, i)
              for i in range(len(spec.x.values))] for j in ys] for k in zs]


def render_cells(gen: Generator, cells: list[Cell]) -> tuple[dict[tuple, Image.Image], int]:
    """Generate each distinct image once, batching cells that share LoRA and sampling settings."""
    images: dict[tuple, Image.Image] = {}
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        if c.image_key() not in images:
            groups.setdefault(c.batch_key(), [])
            if all(x.image_key() != c.image_key() for x in groups[c.batch_key()]):
                groups[c.batch_key()].append(c)
    generated = 0
    for (lora, negative, cfg, steps, sampler, width, height), group in groups.items():
        out = gen.generate_batch([c.prompt for c in group], seeds=[c.seed for c in group],
                                 loras=[lora] if lora else [], negative_prompt=negative, steps=steps, cfg=cfg,
                                 sampler=sampler, width=width, height=height)
        generated += len(out)
        for c, im in zip(group, out, strict=True):
            images[c.image_key()] = im
    return images, generated


def a1111_parameters(cell: Cell, size: tuple[int, int], model: str) -> str:
    """A1111's 'parameters' text: the prompt (with its <lora:...> tag), then the settings line."""
    prompt = cell.prompt
    if cell.checkpoint and cell.strength:
        prompt += f" <lora:{Path(cell.checkpoint).stem}:{cell.strength:g}>"
    lines = [prompt]
    if cell.negative_prompt:
        lines.append(f"Negative prompt: {cell.negative_prompt}")
    lines.append(f"Steps: {cell.steps}, Sampler: {cell.sampler}, CFG scale: {cell.cfg:g}, Seed: {cell.seed}, "
                 f"Size: {size[0]}x{size[1]}, Model: {model}")
    return "\n".join(lines)


def draw_grid(images: list[list[Image.Image]], col_labels: list[str], row_labels: list[str],
              title: str = "") -> Image.Image:
    """Images in rows and columns with headers on top and at the left, like A1111's grids.

    Small images (the demo model draws 32 px) are enlarged by a whole factor, pixel for pixel, to be seen.
    """
    w, h = images[0][0].size
    zoom = max(1, 192 // max(w, h))
    if zoom > 1:
        images = [[im.resize((w * zoom, h * zoom), Image.Resampling.NEAREST) for im in row] for row in images]
        w, h = w * zoom, h * zoom
    font_size = max(12, min(32, w // 8))
    font = ImageFont.load_default(size=font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max([probe.textlength(t, font=font) for t in row_labels if t] + [0]) + 16 if any(row_labels) else 0
    top = font_size * 2 + 8 + (font_size + 8 if title else 0)
    cols, rows = len(images[0]), len(images)
    out = Image.new("RGB", (int(left) + cols * w, top + rows * h), "white")
    d = ImageDraw.Draw(out)
    if title:
        d.text((8, 4), title, fill="black", font=font)
    for i, label in enumerate(col_labels):
        cx = int(left) + i * w + w // 2
        d.text((cx, top - font_size // 2 - 4), label, fill="black", font=font, anchor="mm")
    for j, row in enumerate(images):
        if row_labels[j]:
            d.text((int(left) - 8, top + j * h + h // 2), row_labels[j], fill="black", font=font, anchor="rm")
        for i, im in enumerate(row):
            out.paste(im, (int(left) + i * w, top + j * h))
    return out


def make_grid(project: Project, spec: GridSpec, base_model: str = "", generator: Generator | None = None,
              stamp: str | None = None) -> GridResult:
    """Generate and save the grid(s) of ``spec``: one PNG (+ JSON) per Z value under project/grids/."""
    gen = generator or Generator(base_model)
    t0 = time.perf_counter()
    cells = plan(spec, project)
    flat = [c for z in cells for row in z for c in row]
    rendered, generated = render_cells(gen, flat)
    result = GridResult(cells=cells, images=len(flat), generated=generated)
    result.seconds = time.perf_counter() - t0
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    for k, z_cells in enumerate(cells):
        imgs = [[rendered[c.image_key()] for c in row] for row in z_cells]
        result.cell_images.append(imgs)
        title = f"{spec.z.kind}: {spec.z.labels[k]}" if spec.z else ""
        row_labels = [f"{spec.y.kind}: {lab}" if spec.y.kind != "prompt" else lab for lab in spec.y.labels] \
            if spec.y else [""]
        grid = draw_grid(imgs, spec.x.labels, row_labels, title)
        suffix = f"-z{k}" if spec.z else ""
        path = project.grids_dir / f"{stamp}{suffix}.png"
        info = PngInfo()
        first = z_cells[0][0]
        info.add_text("parameters", a1111_parameters(first, imgs[0][0].size, Path(gen.base.source).name))
        info.add_text("lorakit", json.dumps(_record(spec, z_cells, gen, result)))
        with atomic_path(path) as tmp:
            grid.save(tmp, format="PNG", pnginfo=info)
        atomic_write_text(path.with_suffix(".json"), json.dumps(_record(spec, z_cells, gen, result), indent=1))
        result.paths.append(path)
    return result


def _record(spec: GridSpec, cells: list[list[Cell]], gen: Generator, result: GridResult) -> dict:
    return {
        "base_model": gen.base.source,
        "spec": {k: v for k, v in asdict(spec).items() if k not in ("x", "y", "z")},
        "axes": {name: asdict(a) for name, a in (("x", spec.x), ("y", spec.y), ("z", spec.z)) if a},
        "cells": [[asdict(c) for c in row] for row in cells],
        "seconds": round(result.seconds, 3),
        "images": result.images,
    }
