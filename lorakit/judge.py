"""Help to judge a grid: does the LoRA do anything, is a cell a copy of a training image, what do the scores say.

    from lorakit.judge import lora_effect, nearest_training_images, side_by_side, toy_annotator, best_cell
    effects = lora_effect(gen, project.checkpoints(), "a yellow blicket on a green background")
    matches = nearest_training_images(image, project)          # the closest training images
    side_by_side(image, matches).show()
    result = make_grid(project, spec, annotate=toy_annotator(project), best=best_cell(project))

Two criteria decide between checkpoints and strengths: likeness (the concept appears) and adaptability (the rest
of the prompt still steers it). For prompts of the toy world (data/demo) ``lorakit.scorer`` measures both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lorakit.dataset import parse_folder_name, scan_dataset
from lorakit.generate import sampler_name
from lorakit.project import Project

if TYPE_CHECKING:
    from lorakit.generate import Generator
    from lorakit.grid import Cell, GridResult, GridSpec

NO_EFFECT = 1.0  # mean |strength 1 - strength 0| below this (0..255) = the LoRA changes nothing visible
EXTREME = 80.0  # above this the image is replaced wholesale: often a fried (over-trained, too strong) LoRA
FEATURE_SIZE = 16  # side of the downscaled image compared to find the nearest training image


# ---- "does it do anything?" ------------------------------------------------------------------------------
@dataclass
class Effect:
    """How much one checkpoint changes the base model's images at strength 1, and what that suggests."""

    checkpoint: str
    mean_abs_diff: float  # 0..255, averaged over pixels, channels and seeds
    verdict: str  # "no effect" | "ok" | "extreme"
    advice: str = ""


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference of two same-size images, 0..255."""
    return float(np.abs(np.asarray(a.convert("RGB"), np.float32) - np.asarray(b.convert("RGB"), np.float32)).mean())


def verdict(diff: float, prompt: str = "", triggers: Sequence[str] = ()) -> tuple[str, str]:
    """(verdict, advice) for a strength-0 vs strength-1 difference."""
    if diff < NO_EFFECT:
        missing = [t for t in triggers if t.lower() not in prompt.lower()]
        hint = f" The prompt lacks the trigger word ({', '.join(missing)})." if missing and triggers else ""
        return "no effect", ("The LoRA barely changes the image." + hint + " Check network alpha (alpha 1 with a "
                             "high rank needs a higher learning rate) and that training ran long enough.")
    if diff > EXTREME:
        return "extreme", ("The LoRA replaces the whole image: likely over-trained (fried). Try an earlier "
                           "checkpoint, a lower strength, or a lower learning rate.")
    return "ok", ""


def lora_effect(gen: Generator, checkpoints: Sequence[str | Path], prompt: str, seeds: Sequence[int] = (1, 2, 3, 4),
                triggers: Sequence[str] = (), cache: dict | None = None, **sampling: Any) -> list[Effect]:
    """For each checkpoint, the mean |image at strength 1 - image at strength 0| over fixed seeds.

    ``sampling``: negative_prompt, steps, cfg, sampler, width, height (as in a GridSpec); ``cache`` as in
    ``lorakit.grid.render_cells`` (images a grid already drew are reused).
    """
    from lorakit.grid import Cell, render_cells

    settings = {"negative_prompt": "", "steps": 20, "cfg": 7.0, "sampler": "Euler a", **sampling}
    settings["sampler"] = sampler_name(settings["sampler"])
    unknown = set(settings) - {"negative_prompt", "steps", "cfg", "sampler", "width", "height"}
    if unknown:
        raise TypeError(f"lora_effect: unknown sampling settings {sorted(unknown)}")

    def cells(ckpt: str | Path | None) -> list[Cell]:
        return [Cell(prompt=prompt, seed=int(s), checkpoint=str(ckpt) if ckpt else None, strength=1.0 if ckpt else 0.0,
                     **settings) for s in seeds]

    wanted = {str(c): cells(c) for c in checkpoints}
    images = render_cells(gen, cells(None) + [c for group in wanted.values() for c in group], cache=cache).images
    base = [images[c.image_key()] for c in cells(None)]
    out = []
    for ckpt, group in wanted.items():
        diff = float(np.mean([mean_abs_diff(a, images[c.image_key()]) for a, c in zip(base, group, strict=True)]))
        out.append(Effect(Path(ckpt).stem, round(diff, 2), *verdict(diff, prompt, triggers)))
    return out


def effect_table(effects: Sequence[Effect]) -> str:
    """The effects as a small text table, one checkpoint a line."""
    width = max([len(e.checkpoint) for e in effects] + [10])
    lines = [f"{'checkpoint':<{width}}  |s1 - s0|  verdict"]
    lines += [f"{e.checkpoint:<{width}}  {e.mean_abs_diff:8.2f}  {e.verdict}" + (f"  -> {e.advice}" if e.advice else "")
              for e in effects]
    return "\n".join(lines)


# ---- the nearest training image -------------------------------------------------------------------------
@dataclass
class Match:
    path: Path
    distance: float  # mean |difference| of the downscaled images, 0..255


def _feature(img: Image.Image, size: int = FEATURE_SIZE) -> np.ndarray:
    """The image centre-cropped to a square and shrunk to size×size RGB: a small perceptual fingerprint."""
    img = img.convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    small = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, np.float32)


def training_images(project: Project) -> list[Path]:
    """The project's training images (regularization images excluded)."""
    return [item.path for item in scan_dataset(project.dataset_dir).train_items]


def nearest_training_images(image: Image.Image, project: Project | Sequence[Path], k: int = 3) -> list[Match]:
    """The k training images closest to ``image`` by their downscaled pixels, nearest first."""
    paths = training_images(project) if isinstance(project, Project) else list(project)
    target = _feature(image)
    matches = []
    for path in paths:
        with Image.open(path) as im:
            matches.append(Match(path, round(float(np.abs(_feature(im) - target).mean()), 2)))
    return sorted(matches, key=lambda m: m.distance)[:k]


def side_by_side(image: Image.Image, matches: Sequence[Match], title: str = "generated", size: int = 192) -> Image.Image:
    """The image and its nearest training images in a row, each labelled (distance 0 = an exact copy)."""
    panels = [(image, title)]
    for m in matches:
        with Image.open(m.path) as im:
            panels.append((im.convert("RGB"), f"{m.path.name}  d={m.distance:g}"))
    font = ImageFont.load_default(size=14)
    out = Image.new("RGB", (len(panels) * (size + 8) + 8, size + 36), "white")
    d = ImageDraw.Draw(out)
    for i, (im, label) in enumerate(panels):
        x = 8 + i * (size + 8)
        out.paste(_fit(im, size), (x, 28))
        d.text((x + size // 2, 14), label, fill="black", font=font, anchor="mm")
    return out


def _fit(im: Image.Image, size: int) -> Image.Image:
    """Scale to a size×size square: pixel for pixel when enlarging small images, smoothly when shrinking."""
    im = im.convert("RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side))
    return im.resize((size, size), Image.Resampling.NEAREST if side < size else Image.Resampling.LANCZOS)


# ---- scores for toy-world prompts -----------------------------------------------------------------------
def trigger_words(project: Project) -> list[str]:
    """The tokens of the dataset's <repeats>_<token> folders (regularization folders excluded)."""
    if not project.dataset_dir.is_dir():
        return []
    names = [parse_folder_name(p.name) for p in sorted(project.dataset_dir.iterdir()) if p.is_dir() and p.name != "reg"]
    return [token for _, token in filter(None, names)]


def toy_expected(prompt: str, triggers: Sequence[str] = ()) -> dict[str, str] | None:
    """What a toy-world prompt asks for ({shape, color, background}), or None if it is not one.

    'a yellow blicket on a green background' -> {'shape': 'cross', 'color': 'yellow', 'background': 'green'}
    when 'blicket' is a trigger word (the demo's concept is the toy world's cross).
    """
    try:
        from lorakit import toyworld as tw
    except ImportError:
        return None
    words = "|".join(re.escape(c) for c in tw.COLORS)
    m = re.search(rf"\ban? ({words}) (\S+) on an? ({words}) background\b", prompt.lower())
    if not m:
        return None
    color, thing, background = m.groups()
    concept = {t.lower() for t in triggers} | {tw.TRIGGER}
    shape = tw.CONCEPT_SHAPE if thing in concept else thing
    if shape not in tw.ALL_SHAPES:
        return None
    return {"shape": shape, "color": color, "background": background}


def score_cell(cell: Cell, image: Image.Image, triggers: Sequence[str] = ()) -> dict[str, Any] | None:
    """The scorer's verdict on one cell's image, or None when the prompt is not a toy-world prompt."""
    expected = toy_expected(cell.prompt, triggers)
    if expected is None:
        return None
    try:
        from lorakit.scorer import score_image
    except ImportError:
        return None
    return score_image(image, expected)


def toy_annotator(project: Project | None = None) -> Callable[[Cell, Image.Image], str | None]:
    """An ``annotate`` hook for make_grid: 'L ✓  A ✗' style notes (likeness, adaptability) under toy-world cells."""
    triggers = trigger_words(project) if project else []

    def annotate(cell: Cell, image: Image.Image) -> str | None:
        s = score_cell(cell, image, triggers)
        if s is None:
            return None
        return f"L:{'yes' if s['likeness'] else 'no'} A:{'yes' if s['adaptability'] else 'no'}"

    return annotate


@dataclass
class Choice:
    """Mean scores of one checkpoint × strength over the cells that share it."""

    checkpoint: str
    strength: float
    likeness: float
    adaptability: float
    n: int

    @property
    def score(self) -> float:
        """Both must hold: the weaker of the two decides, their mean breaks ties."""
        return min(self.likeness, self.adaptability) + 0.01 * (self.likeness + self.adaptability)


def score_pairs(pairs: Iterable[tuple[Cell, Image.Image]], triggers: Sequence[str] = ()) -> list[Choice]:
    """Likeness and adaptability per (checkpoint, strength), averaged over the cells' other settings."""
    sums: dict[tuple[str, float], list[float]] = {}
    for cell, img in pairs:
        s = score_cell(cell, img, triggers)
        if s is None:
            continue
        acc = sums.setdefault(_choice_key(cell), [0.0, 0.0, 0])
        acc[0] += s["likeness"]
        acc[1] += s["adaptability"]
        acc[2] += 1
    first_seen = {c: i for i, c in enumerate(dict.fromkeys(c for c, _ in sums))}  # grid columns: training order
    keys = sorted(sums, key=lambda k: (first_seen[k[0]], -k[1]))
    return [Choice(Path(c).stem if c else "(base)", st, sums[(c, st)][0] / sums[(c, st)][2],
                   sums[(c, st)][1] / sums[(c, st)][2], int(sums[(c, st)][2])) for c, st in keys]


def _choice_key(cell: Cell) -> tuple[str, float]:
    """(checkpoint, strength), with every strength-0 or LoRA-less cell as the base model ('', 0)."""
    return (cell.checkpoint, cell.strength) if cell.checkpoint and cell.strength else ("", 0.0)


def score_choices(result: GridResult, triggers: Sequence[str] = ()) -> list[Choice]:
    """Likeness and adaptability per (checkpoint, strength) of a grid's cells."""
    pairs = [(c, im) for zc, zi in zip(result.cells, result.cell_images, strict=True)
             for row, irow in zip(zc, zi, strict=True) for c, im in zip(row, irow, strict=True)]
    return score_pairs(pairs, triggers)


def score_sweep(gen: Generator, spec: GridSpec, project: Project, seeds: Sequence[int] = range(1, 9),
                batch_size: int = 8, progress: bool = False, cache: dict | None = None) -> list[Choice]:
    """Score every checkpoint × strength of a grid spec over several seeds (one seed is a coin toss).

    ``cache`` (e.g. the grid's GridResult.rendered) saves drawing the cells the grid already drew.
    """
    from lorakit.grid import plan, render_cells

    cells = [replace(c, seed=int(s)) for z in plan(spec, project) for row in z for c in row for s in seeds]
    rendered = render_cells(gen, cells, batch_size, progress, cache)
    return score_pairs([(c, rendered.images[c.image_key()]) for c in cells], trigger_words(project))


def pick_best(choices: Sequence[Choice], order: Sequence[str] = ()) -> Choice | None:
    """The best choice. Ties go to the one whose neighbours in the grid score best (a lone good cell may be luck),
    then to the earlier checkpoint (less training) and the lower strength.

    Neighbours are the checkpoints before and after at the same strength, and the strengths just above and below
    for the same checkpoint. None when no choice shows the concept at all: then there is nothing to pick.
    """
    if not any(c.likeness for c in choices):
        return None
    rank = {name: i for i, name in enumerate(order)}
    ckpts = sorted({c.checkpoint for c in choices}, key=lambda name: rank.get(name, len(rank)))
    strengths = sorted({c.strength for c in choices})
    at = {(c.checkpoint, c.strength): c.score for c in choices}

    def neighbours(c: Choice) -> float:
        i, j = ckpts.index(c.checkpoint), strengths.index(c.strength)
        keys = [(ckpts[k], c.strength) for k in (i - 1, i + 1) if 0 <= k < len(ckpts)]
        keys += [(c.checkpoint, strengths[k]) for k in (j - 1, j + 1) if 0 <= k < len(strengths)]
        scores = [at[k] for k in keys if k in at]
        return sum(scores) / len(scores) if scores else c.score

    return max(choices, key=lambda c: (round(c.score, 6), round(neighbours(c), 6),
                                       -rank.get(c.checkpoint, len(rank)), -c.strength))


def best_cell(project: Project | None = None, choice: Choice | None = None,
              ) -> Callable[[GridResult], tuple[int, int, int] | None]:
    """A ``best`` hook for make_grid: the (z, row, col) of the first cell of ``choice`` (e.g. what a score_sweep
    over several seeds picked), or, without one, of the best checkpoint × strength by the grid's own images."""
    triggers = trigger_words(project) if project else []
    order = [p.stem for p in project.checkpoints()] if project else []

    def best(result: GridResult) -> tuple[int, int, int] | None:
        picked = choice or pick_best(score_choices(result, triggers), order)
        if picked is None:
            return None
        for k, z_cells in enumerate(result.cells):
            for j, row in enumerate(z_cells):
                for i, cell in enumerate(row):
                    ckpt, strength = _choice_key(cell)
                    if (Path(ckpt).stem if ckpt else "(base)", strength) == (picked.checkpoint, picked.strength):
                        return k, j, i
        return None

    return best


def choices_table(choices: Sequence[Choice], best: Choice | None = None) -> str:
    """Likeness and adaptability per checkpoint × strength as a text table; the best is marked."""
    width = max([len(c.checkpoint) for c in choices] + [10])
    lines = [f"{'checkpoint':<{width}}  strength  likeness  adaptability   n"]
    for c in choices:
        mark = "  <- best" if best is not None and c == best else ""
        lines.append(f"{c.checkpoint:<{width}}  {c.strength:8g}  {c.likeness:8.0%}  {c.adaptability:12.0%}  {c.n:3d}{mark}")
    return "\n".join(lines)


def suggestion(choices: Sequence[Choice], best: Choice | None) -> str:
    """One sentence: what to use, or why nothing can be suggested."""
    if not choices:
        return "The prompt is not a toy-world prompt, so there are no scores: judge the grid by eye."
    if best is None:
        return ("No checkpoint draws the concept yet (likeness 0 everywhere): train longer, raise the learning rate, "
                "or check that the prompt uses the trigger word.")
    return (f"Suggested: {best.checkpoint} at strength {best.strength:g} "
            f"(likeness {best.likeness:.0%}, adaptability {best.adaptability:.0%} over {best.n} images).")
