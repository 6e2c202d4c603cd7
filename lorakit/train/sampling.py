"""Sample images during training, from prompts with kohya's options (--n --w --h --s --l --d --ss).

    parse_sample_prompt("a fr3dd!e cat --n blurry --w 512 --h 768 --s 28 --l 6.5 --d 42")

Each prompt has one seed (its ``--d``, else ``training.seed`` + its index), the same at every strength and
checkpoint, so the pictures of a run differ only by what the LoRA learned. The files are
``samples/<epoch>/<name>_<step>_<prompt>.png``, with ``_s<strength>`` before the prompt index when
``sampling.sample_strengths`` lists several; the baseline of ``sampling.sample_at_start`` is epoch 0, step 0.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from lorakit.config.sample_prompts import parse_sample_prompt
from lorakit.models.samplers import make_scheduler

_NAME = re.compile(r"_(\d{6,})(?:_s(\d+(?:\.\d+)?))?_(\d{2,})$")


@dataclass(frozen=True)
class SampleName:
    """What a sample's path says: the epoch (its folder), the step, the strength (None: the only one) and
    the prompt's index."""

    epoch: int
    step: int
    strength: float | None
    index: int


def sample_file(out_dir: Path, name: str, step: int, index: int, strength: float | None = None) -> Path:
    tag = f"_s{strength:g}" if strength is not None else ""
    return out_dir / f"{name}_{step:06d}{tag}_{index:02d}.png"


def parse_sample_name(path: Path) -> SampleName | None:
    """The parts of a sample's file name (None when it is not one of lorakit's samples)."""
    m = _NAME.search(Path(path).stem)
    if m is None or not path.parent.name.isdigit():
        return None
    strength = float(m.group(2)) if m.group(2) is not None else None
    return SampleName(int(path.parent.name), int(m.group(1)), strength, int(m.group(3)))


def prompt_seed(cfg, index: int, line: str) -> int:
    """The seed of sample prompt ``index``: its ``--d``, else training.seed + index (the same every time)."""
    sp = parse_sample_prompt(line)
    return sp.seed if sp.seed is not None else cfg.training.seed + index


@torch.no_grad()
def draw_samples(base, cfg, out_dir: Path, step: int, net=None, baseline: bool = False) -> list[Path]:
    """Draw every sample prompt with the adapter as it is now, at each of sampling.sample_strengths (through
    ``net``; without it, as the model is); ``baseline``: once, with the adapter off. Returns the PNG paths."""
    pipe = base.pipe
    strengths = cfg.sampling.sample_strengths
    several = len(strengths) > 1 and not baseline
    todo = [0.0] if baseline else strengths
    saved_scheduler = pipe.scheduler
    default = make_scheduler(saved_scheduler.config, cfg.sampling.sample_sampler)
    own = {}  # a prompt's --ss sampler, made once for all strengths
    models = [m for m in (getattr(pipe, k, None) for k in ("unet", "text_encoder", "text_encoder_2"))
              if isinstance(m, torch.nn.Module)]
    modes = [(m, m.training) for model in models for m in model.modules()]  # dropout off while drawing
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for model in models:
            model.eval()
        for strength in todo:
            scaled = net.at_strength(strength) if net is not None and (baseline or strength != 1.0) else nullcontext()
            with scaled:
                for i, line in enumerate(cfg.sampling.sample_prompts):
                    sp = parse_sample_prompt(line)
                    if sp.sampler and sp.sampler not in own:
                        own[sp.sampler] = make_scheduler(saved_scheduler.config, sp.sampler)
                    pipe.scheduler = own[sp.sampler] if sp.sampler else default
                    image = pipe(
                        prompt=sp.prompt, negative_prompt=sp.negative or None, width=sp.width, height=sp.height,
                        num_inference_steps=sp.steps or cfg.sampling.sample_steps,
                        guidance_scale=sp.cfg if sp.cfg is not None else cfg.sampling.sample_cfg,
                        generator=torch.Generator("cpu").manual_seed(prompt_seed(cfg, i, line)),
                    ).images[0]
                    path = sample_file(out_dir, cfg.saving.output_name, step, i, strength if several else None)
                    image.save(path)
                    paths.append(path)
    finally:
        pipe.scheduler = saved_scheduler
        for m, mode in modes:
            m.training = mode
    return paths


def strength_sheets(samples_dir: Path, prompts: list[str] | None = None, name: str = "",
                    strengths: list[float] | None = None) -> list:
    """One picture per sample prompt: a row per drawing (the baseline first, as step 0), a column per strength.

    Reads ``samples_dir`` (``project.samples_dir``); ``name`` keeps only ``<name>_…`` files; ``strengths``
    labels the column of runs with a single strength (their file names do not say it). The baseline, drawn
    with the adapter off, is the same at every strength and fills its whole row.
    """
    from PIL import Image

    from lorakit.pictures import draw_grid

    found: dict[int, dict[tuple[int, int], dict[float | None, Path]]] = {}
    for path in sorted(Path(samples_dir).glob("*/*.png")):
        parsed = parse_sample_name(path)
        if parsed is None or (name and not path.stem.startswith(f"{name}_")):
            continue
        found.setdefault(parsed.index, {}).setdefault((parsed.step, parsed.epoch), {})[parsed.strength] = path
    sheets = []
    for index in sorted(found):
        rows = found[index]
        columns = sorted({s for cells in rows.values() for s in cells if s is not None})
        single = not columns
        if single:
            columns = [None]
        images, labels = [], []
        for (step, epoch), cells in sorted(rows.items()):
            base = cells.get(None) if not single or step == 0 else None
            row = []
            for s in columns:
                path = cells.get(s, base)
                row.append(Image.open(path).convert("RGB") if path is not None else None)
            first = next(im for im in row if im is not None)
            images.append([im if im is not None else Image.new("RGB", first.size, "white") for im in row])
            labels.append("step 0 (base)" if step == 0 else f"epoch {epoch}, step {step}")
        if single:
            heads = [f"strength {strengths[0]:g}" if strengths and len(strengths) == 1 else "strength"]
        else:
            heads = [f"strength {s:g}" for s in columns]
        prompt = parse_sample_prompt(prompts[index]).prompt if prompts and index < len(prompts) else ""
        sheets.append(draw_grid(images, heads, labels, title=f"prompt {index + 1}: {prompt}" if prompt
                                else f"prompt {index + 1}"))
    return sheets


SHEETS = "sheets"  # samples/sheets/: a new run moves it to output/previous/ with the sample folders


def save_strength_sheets(samples_dir: Path, cfg) -> list[Path]:
    """Write strength_sheets to ``samples/sheets/<name>_sheet_<prompt>.png``; returns the paths."""
    s = cfg.sampling
    sheets = strength_sheets(samples_dir, s.sample_prompts, cfg.saving.output_name, s.sample_strengths)
    out = Path(samples_dir) / SHEETS
    if sheets:
        out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{cfg.saving.output_name}_sheet_{i:02d}.png" for i in range(len(sheets))]
    for sheet, path in zip(sheets, paths, strict=True):
        sheet.save(path)
    return paths
