"""Help to judge a grid: does the LoRA do anything, is a cell a copy of a training image, what do the scores say.

    from lorakit.evaluate.judge import lora_effect, nearest_training_images, side_by_side, best_cell
    from lorakit.demo.judging import toy_annotator, toy_scorer
    effects = lora_effect(gen, project.checkpoints(), "a yellow blicket on a green background")
    matches = nearest_training_images(image, project)          # the closest training images
    side_by_side(image, matches).show()
    result = make_grid(project, spec, annotate=toy_annotator(project), best=best_cell(project, scorer=toy_scorer(project)))

Two criteria decide between checkpoints and strengths: likeness (the concept appears) and adaptability (the rest
of the prompt still steers it). A ``Scorer`` measures both for one cell's image: for any prompt,
``lorakit.evaluate.scoring.EmbeddingScorer`` (CLIP / DINOv2); for prompts of the toy world (data/demo),
``lorakit.demo.judging.toy_scorer``. ``score_grid`` judges a grid's own images plus only what is asked for
(adaptability prompts, extra seeds); ``pick_best`` and ``suggestion`` say which cell, with the numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lorakit.dataset.scan import parse_folder_name, scan_dataset
from lorakit.evaluate.generate import Generator
from lorakit.evaluate.grid import GridResult, render_cells
from lorakit.evaluate.grid_spec import Cell, GridSpec, plan
from lorakit.models.samplers import sampler_name
from lorakit.pictures import HIGHLIGHT
from lorakit.project import Project

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
    ``lorakit.evaluate.grid.render_cells`` (images a grid already drew are reused).
    """

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








Scorer = Callable[[Cell, Image.Image], "dict[str, Any] | None"]
"""Judges one cell's image: {"likeness": 0..1, "adaptability": 0..1 or None}, or None when it cannot say.

A scorer may also have ``can_score(prompt) -> bool``: prompts it cannot judge draw no images for scoring."""


def can_score(scorer: Scorer, prompt: str) -> bool:
    """Whether ``scorer`` can judge images of ``prompt`` (True for scorers that do not say)."""
    check = getattr(scorer, "can_score", None)
    return bool(check(prompt)) if check else True


@dataclass
class Choice:
    """Mean scores of one checkpoint × strength over the cells that share it."""

    checkpoint: str
    strength: float
    likeness: float
    adaptability: float | None  # None: no image of this choice tested it (no adaptability prompt was drawn)
    n: int
    copies: list[str] = field(default_factory=list)  # training images that some of its images copy

    @property
    def score(self) -> float:
        """Both must hold: the weaker of the two decides, their mean breaks ties."""
        a = self.adaptability if self.adaptability is not None else 0.0
        return min(self.likeness, a) + 0.01 * (self.likeness + a)


def score_pairs(pairs: Iterable[tuple[Cell, Image.Image]], scorer: Scorer) -> list[Choice]:
    """Likeness and adaptability per (checkpoint, strength), averaged over the cells' other settings.

    Cells the scorer cannot judge (it returns None) are left out; an adaptability of None (the image tested no
    edit) is left out of that mean only. A scorer's ``copy`` and ``nearest`` keys name copied training images.
    """
    pairs = list(pairs)
    batch = getattr(scorer, "score_images", None)  # a model-based scorer judges many images at once
    scores = batch([c for c, _ in pairs], [im for _, im in pairs]) if batch and pairs else [scorer(c, im)
                                                                                       for c, im in pairs]
    sums: dict[tuple[str, float], dict[str, Any]] = {}
    for (cell, _), s in zip(pairs, scores, strict=True):
        if s is None:
            continue
        acc = sums.setdefault(_choice_key(cell), {"l": [], "a": [], "copies": []})
        acc["l"].append(float(s["likeness"]))
        if s.get("adaptability") is not None:
            acc["a"].append(float(s["adaptability"]))
        if s.get("copy") and s.get("nearest") not in acc["copies"]:
            acc["copies"].append(s["nearest"])
    first_seen = {c: i for i, c in enumerate(dict.fromkeys(c for c, _ in sums))}  # grid columns: training order
    keys = sorted(sums, key=lambda k: (first_seen[k[0]], -k[1]))
    return [Choice(Path(c).stem if c else "(base)", st, sum(sums[(c, st)]["l"]) / len(sums[(c, st)]["l"]),
                   sum(sums[(c, st)]["a"]) / len(sums[(c, st)]["a"]) if sums[(c, st)]["a"] else None,
                   len(sums[(c, st)]["l"]), sums[(c, st)]["copies"]) for c, st in keys]


def _choice_key(cell: Cell) -> tuple[str, float]:
    """(checkpoint, strength), with every strength-0 or LoRA-less cell as the base model ('', 0)."""
    return (cell.checkpoint, cell.strength) if cell.checkpoint and cell.strength else ("", 0.0)


def score_choices(result: GridResult, scorer: Scorer) -> list[Choice]:
    """Likeness and adaptability per (checkpoint, strength) of a grid's cells."""
    pairs = [(c, im) for zc, zi in zip(result.cells, result.cell_images, strict=True)
             for row, irow in zip(zc, zi, strict=True) for c, im in zip(row, irow, strict=True)]
    return score_pairs(pairs, scorer)


@dataclass
class Sweep:
    """What scoring a grid drew and found: the choices, the (cell, image) pairs judged, the images sampled."""

    choices: list[Choice]
    pairs: list[tuple[Cell, Image.Image]]
    generated: int = 0  # images drawn for the scores beyond what the cache (the grid) already held


def scoring_cells(spec: GridSpec, project: Project, scorer: Scorer, edits: Sequence[Any] = (),
                  extra_seeds: int = 0) -> list[Cell]:
    """The cells to judge: each grid cell the scorer can judge, each adaptability prompt (``edits``' ``prompt``)
    with the same checkpoint, strength and settings, and each of those again for ``extra_seeds`` more seeds.

    Nothing beyond the grid's own cells without edits or extra seeds; nothing at all for prompts the scorer
    cannot judge (a toy-world scorer on real photos' prompts).
    """
    out: list[Cell] = []
    for cell in (c for z in plan(spec, project) for row in z for c in row):
        prompts = [p for p in dict.fromkeys([cell.prompt, *(e.prompt for e in edits)]) if can_score(scorer, p)]
        for k in range(int(extra_seeds) + 1):
            out += [replace(cell, prompt=p, seed=cell.seed + k) for p in prompts]
    return list({c.image_key(): c for c in out}.values())


def score_grid(gen: Generator, spec: GridSpec, project: Project, scorer: Scorer, edits: Sequence[Any] = (),
               extra_seeds: int = 0, batch_size: int = 8, progress: bool = False,
               cache: dict | None = None) -> Sweep:
    """Score every checkpoint × strength of a grid spec on the grid's own cells, the adaptability prompts and
    ``extra_seeds`` more seeds (default none: one seed is a coin toss, each extra seed costs a grid of images).

    ``cache`` (e.g. the grid's GridResult.rendered, or a dict the grid then reuses) saves drawing images twice.
    """
    cells = scoring_cells(spec, project, scorer, edits, extra_seeds)
    rendered = render_cells(gen, cells, batch_size, progress, cache, [project.output_dir])
    pairs = [(c, rendered.images[c.image_key()]) for c in cells]
    return Sweep(score_pairs(pairs, scorer), pairs, rendered.generated)


def pick_best(choices: Sequence[Choice], order: Sequence[str] = ()) -> Choice | None:
    """The best choice. Ties go to the one whose neighbours in the grid score best (a lone good cell may be luck),
    then to the earlier checkpoint (less training) and the lower strength.

    Neighbours are the checkpoints before and after at the same strength, and the strengths just above and below
    for the same checkpoint. None when no choice shows the concept at all: then there is nothing to pick.
    """
    choices = [c for c in choices if c.adaptability is not None]  # both criteria, or no pick
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


def best_cell(project: Project | None = None, choice: Choice | None = None, scorer: Scorer | None = None,
              ) -> Callable[[GridResult], tuple[int, int, int] | None]:
    """A ``best`` hook for make_grid: the (z, row, col) of the first cell of ``choice`` (e.g. what a score_grid
    over several seeds picked), or, without one, of the best checkpoint × strength that ``scorer`` finds in the
    grid's own images."""
    if choice is None and scorer is None:
        raise ValueError("best_cell needs a choice or a scorer")
    order = [p.stem for p in project.checkpoints()] if project else []

    def best(result: GridResult) -> tuple[int, int, int] | None:
        picked = choice or pick_best(score_choices(result, scorer), order)
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
    lines = [f"{'checkpoint':<{width}}  strength  likeness  adaptability   n  copies"]
    for c in choices:
        mark = "  <- best" if best is not None and c == best else ""
        adapt = f"{c.adaptability:12.2f}" if c.adaptability is not None else f"{'-':>12}"
        copies = ", ".join(Path(n).stem for n in c.copies) or "-"
        lines.append(f"{c.checkpoint:<{width}}  {c.strength:8g}  {c.likeness:8.2f}  {adapt}  {c.n:3d}  {copies}{mark}")
    return "\n".join(lines)


def checkpoint_label(name: str) -> str:
    """'zkx-000006' -> 'epoch 6', 'zkx-step00000500' -> 'step 500' (kohya's numbering); any other name stays as
    it is."""
    m = re.search(r"-0*(\d+)$", name)
    if m and len(name) - m.start() == 7:
        return f"epoch {int(m.group(1))}"
    m = re.search(r"-step(\d{8})$", name)
    return f"step {int(m.group(1))}" if m else name


def suggestion(choices: Sequence[Choice], best: Choice | None) -> str:
    """One sentence with the numbers: what to use and which checkpoints copy training images, or why nothing
    can be suggested. 'Suggested: epoch 6 at strength 0.8: likeness 0.81, adaptability 0.77 (12 images);
    epoch 10 copies training image 014.'"""
    if not choices:
        return ("Nothing was scored: the scorer cannot judge this grid's prompts, so no images were drawn for "
                "scores. Judge the grid by eye, or give a CLIP model to score any prompt (notebook 04: SCORING_CLIP).")
    if all(c.adaptability is None for c in choices):
        return ("Only likeness is known: no adaptability prompt was drawn (the list in notebook 04 is empty), and "
                "likeness alone always favours the most trained checkpoint. Add adaptability prompts and score again.")
    copied: dict[str, list[str]] = {}
    for c in choices:
        for name in c.copies:
            copied.setdefault(c.checkpoint, []).append(Path(name).stem)
    copies = "; ".join(f"{checkpoint_label(ck)} copies training image{'s' if len(set(v)) > 1 else ''} "
                       f"{', '.join(dict.fromkeys(v))}" for ck, v in copied.items())
    if best is None:
        return ("No checkpoint draws the concept yet (likeness 0 everywhere): train longer, raise the learning rate, "
                "or check that the prompt uses the trigger word." + (f" {copies}." if copies else ""))
    return (f"Suggested: {checkpoint_label(best.checkpoint)} at strength {best.strength:g}: likeness "
            f"{best.likeness:.2f}, adaptability {best.adaptability:.2f} ({best.n} images)"
            + (f"; {copies}." if copies else "."))


def fit_curve_points(choices: Sequence[Choice], strength: float, order: Sequence[str] = ()
                     ) -> list[tuple[str, float, float | None]]:
    """(checkpoint, likeness, adaptability) at ``strength``, in training order: the under/overfit curve."""
    rank = {name: i for i, name in enumerate(order)}
    at = [c for c in choices if c.strength == strength and c.checkpoint != "(base)"]
    return [(c.checkpoint, c.likeness, c.adaptability) for c in sorted(at, key=lambda c: rank.get(c.checkpoint, len(rank)))]


def fit_curve(choices: Sequence[Choice], strength: float, order: Sequence[str] = (), best: Choice | None = None
              ) -> Image.Image:
    """Likeness and adaptability over the checkpoints at one strength, as a picture: likeness rises with
    training (underfit on the left), adaptability falls when it overfits; the pick is marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = fit_curve_points(choices, strength, order)
    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    xs = list(range(len(points)))
    ax.plot(xs, [p[1] for p in points], "o-", label="likeness")
    ax.plot(xs, [np.nan if p[2] is None else p[2] for p in points], "s-", label="adaptability")
    if best is not None and best.strength == strength and best.checkpoint in [p[0] for p in points]:
        ax.axvline([p[0] for p in points].index(best.checkpoint), color=tuple(v / 255 for v in HIGHLIGHT),
                   linestyle="--", label="suggested")
    ax.set_xticks(xs, [checkpoint_label(p[0]) for p in points], rotation=30, ha="right")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"strength {strength:g}: underfit (left) to overfit (right)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
