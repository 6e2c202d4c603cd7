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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lorakit.evaluate import handoff
from lorakit.evaluate.generate import Generator
from lorakit.evaluate.grid_spec import Cell, GridSpec, headers, plan
from lorakit.files import atomic_path, atomic_write_text
from lorakit.lora.prompt_tags import parse_prompt
from lorakit.pictures import draw_grid
from lorakit.project import Project

Annotate = Callable[["Cell", Image.Image], "str | None"]











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


def mixed_groups(cells: list[Cell], batch_size: int, can_mix) -> tuple[list[list[Cell]], list[Cell]]:
    """(batches of cells drawn together although their LoRA files or strengths differ, the cells that cannot be).

    A batch shares the sampling settings; each LoRA file appears in it at one strength; strength-0 (base) cells fit
    anywhere. Cells with <lora:...> tags in the prompt, or with a file ``can_mix`` refuses (patched LyCORIS / DoRA,
    bundled words), are left for ``batch_groups``."""
    by_settings: dict[tuple, dict[tuple, Cell]] = {}
    rest: list[Cell] = []
    mixable: dict[str, bool] = {}  # per file, asked once (a header read), not once per cell
    for c in cells:
        if c.checkpoint and c.checkpoint not in mixable:
            mixable[c.checkpoint] = can_mix(c.checkpoint)
        plain = not parse_prompt(c.prompt)[1] and (not c.checkpoint or not c.strength or mixable[c.checkpoint])
        if not plain:
            rest.append(c)
            continue
        key = (c.negative_prompt, c.cfg, c.steps, c.sampler, c.width, c.height)
        by_settings.setdefault(key, {}).setdefault(c.image_key(), c)
    batches = []
    for group in by_settings.values():
        pending = sorted(group.values(), key=lambda c: (c.strength, str(c.checkpoint or ""), c.prompt, c.seed))
        while pending:
            batch, strength_of, left = [], {}, []
            for c in pending:
                file = c.checkpoint if c.checkpoint and c.strength else None
                if len(batch) < batch_size and (file is None or strength_of.setdefault(file, c.strength) == c.strength):
                    batch.append(c)
                else:
                    left.append(c)
            batches.append(batch)
            pending = left
    return batches, rest


def render_cells(gen: Generator, cells: list[Cell], batch_size: int = 8, progress: bool = False,
                 cache: dict[tuple, Image.Image] | None = None, lora_dirs: list[Path] | None = None) -> Rendered:
    """Generate each distinct image once, in batches of cells that share the sampling settings.

    With a generator that mixes adapters in a batch (``Generator.generate_mixed``), cells of different checkpoints
    and strengths share a batch; otherwise (and for cells with <lora:...> tags or patched files) a batch shares
    its LoRA too. Images already in ``cache`` (image_key -> image, e.g. an earlier GridResult.rendered) are not
    drawn again; new ones are added to it. ``<lora:name:w>`` tags in prompts are looked up in ``lora_dirs``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    images = cache if cache is not None else {}
    todo = [c for c in cells if c.image_key() not in images]
    mixed, todo = mixed_groups(todo, batch_size, gen.can_mix) if hasattr(gen, "generate_mixed") else ([], todo)
    batches = [(True, b) for b in mixed] + [(False, b) for b in batch_groups(todo, batch_size)]
    out = Rendered(images, batches=len(batches))
    for is_mixed, group in tqdm(batches, desc="grid", unit="batch", disable=not progress):
        first = group[0]
        settings = dict(negative_prompt=first.negative_prompt, steps=first.steps, cfg=first.cfg,
                        sampler=first.sampler, width=first.width, height=first.height)
        if is_mixed:
            images = gen.generate_mixed([c.prompt for c in group], seeds=[c.seed for c in group],
                                        loras=[(c.checkpoint, c.strength) if c.checkpoint and c.strength else None
                                               for c in group], **settings)
        else:
            lora = [(first.checkpoint, first.strength)] if first.checkpoint and first.strength else []
            images = gen.generate_batch([c.prompt for c in group], seeds=[c.seed for c in group], loras=lora,
                                        lora_dirs=lora_dirs or (), **settings)
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
