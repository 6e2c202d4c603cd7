"""A toy world of small scenes: a coloured shape on a coloured background, with its caption.

    from lorakit.demo.toyworld import scene_from_seed, render
    scene = scene_from_seed(7)
    render(scene, 64).save("scene.png"); print(scene.caption())   # "a red circle on a blue background"

The base model in ``data/toy-base`` was pretrained on these scenes (circle, square, triangle, and the
``EXTRA_SHAPES`` named by made-up words: ring, diamond, star, frame, crescent); the demo teaches it a shape it has
never seen, the plus-shaped cross, under the made-up trigger word ``TRIGGER``.
Everything is deterministic from a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (240, 215, 40),
    "green": (40, 165, 60),
    "blue": (45, 80, 225),
    "purple": (150, 50, 190),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
BASE_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
CONCEPT_SHAPE = "cross"
# shapes named by spare words, for a base pretrained on a wider world (scripts/train_toy_base.py --extra-shapes):
# a model that already draws several shapes learns a new one more readily; none of them is the cross
EXTRA_SHAPES: dict[str, str] = {
    "dax": "ring",
    "wug": "diamond",
    "kiki": "five-pointed star",
    "toma": "square frame",
    "fep": "crescent",
}
ALL_SHAPES: tuple[str, ...] = (*BASE_SHAPES, CONCEPT_SHAPE, *EXTRA_SHAPES)
TRIGGER = "blicket"
SPARE_WORDS: tuple[str, ...] = ("blicket", "dax", "wug", "toma", "fep", "zorb", "kiki", "bouba")
CAPTION_WORDS: tuple[str, ...] = ("a", "an", "on", "background", "shape", *COLORS, *BASE_SHAPES)
NATIVE_SIZE = 32
SUPERSAMPLE = 4
COLOR_JITTER = 8
# (colour, background) pairs of the demo concept's images: every colour is the cross's colour and the background
# at least twice, so that the LoRA can tell the shape from the colours (with only eight pairs the shape stayed
# tied to them: likeness 1.0 on those pairs, 0.6 on the others); the other 22 pairs stay unseen by the LoRA
CONCEPT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "green"), ("yellow", "blue"), ("green", "purple"), ("blue", "white"),
    ("purple", "black"), ("white", "red"), ("black", "yellow"),
    ("red", "purple"), ("yellow", "white"), ("green", "black"), ("blue", "red"),
    ("purple", "yellow"), ("white", "green"), ("black", "blue"),
    ("red", "blue"), ("white", "black"), ("green", "yellow"), ("blue", "green"),
    ("black", "white"), ("yellow", "red"),
)


@dataclass(frozen=True)
class Scene:
    """One shape of one colour on a plain background; geometry in fractions of the image side."""

    shape: str
    color: str
    background: str
    cx: float
    cy: float
    size: float
    seed: int = 0

    def caption(self, word: str | None = None) -> str:
        """The scene's caption, with ``word`` in place of the shape's name (e.g. a trigger)."""
        return f"a {self.color} {word or self.shape} on a {self.background} background"


def is_held_out(shape: str, color: str, background: str) -> bool:
    """About 1 in 8 (shape, colour, background) triples never appear in the base model's pretraining."""
    i, j, k = ALL_SHAPES.index(shape), COLORS.index(color), COLORS.index(background)
    return (5 * i + 3 * j + k) % 8 == 0


def all_triples(shapes: Sequence[str] = BASE_SHAPES) -> list[tuple[str, str, str]]:
    """Every (shape, colour, background) with the shape's colour unlike its background."""
    return [(s, c, b) for s in shapes for c in COLORS for b in COLORS if c != b]


def random_geometry(rng: random.Random) -> tuple[float, float, float]:
    """A centre and size that keep the shape fully inside the image with a small margin."""
    size = rng.uniform(0.38, 0.66)
    half, margin = size / 2, 0.06
    cx = rng.uniform(half + margin, 1 - half - margin)
    cy = rng.uniform(half + margin, 1 - half - margin)
    return cx, cy, size


def scene_from_seed(
    seed: int,
    shapes: Sequence[str] = BASE_SHAPES,
    pairs: Sequence[tuple[str, str]] | None = None,
    held_out: bool | None = False,
) -> Scene:
    """A random scene from a seed; held_out False/True/None = avoid / only / ignore the held-out triples."""
    rng = random.Random(seed)
    while True:
        shape = rng.choice(list(shapes))
        if pairs:
            color, background = rng.choice(list(pairs))
        else:
            color, background = rng.sample(COLORS, 2)
        if held_out is None or is_held_out(shape, color, background) == held_out:
            break
    return Scene(shape, color, background, *random_geometry(rng), seed=seed)


def scene_for(shape: str, color: str, background: str, seed: int = 0) -> Scene:
    """A scene with the given attributes at a seeded position and size."""
    return Scene(shape, color, background, *random_geometry(random.Random(seed)), seed=seed)


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, size: float) -> np.ndarray:
    """Inside-test of a shape whose bounding box is a square of side ``size`` centred on (cx, cy)."""
    h = size / 2
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= h * h
    if shape == "square":
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "triangle":  # apex up, base down
        return (dy <= h) & (np.abs(dx) <= (dy + h) / 2)
    if shape == "cross":  # a plus sign whose arms are a third of its size wide
        arm = size / 6
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= h)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= h))
    if shape == "dax":  # a ring, 45% of the radius thick
        r2 = dx * dx + dy * dy
        return (r2 <= h * h) & (r2 >= (0.55 * h) ** 2)
    if shape == "wug":  # a diamond
        return np.abs(dx) + np.abs(dy) <= h
    if shape == "kiki":  # a five-pointed star, point down (a notch straight up)
        # the edge's radius goes linearly in angle from a notch (0.45 h) to a point (h), five times around
        k = 2 * np.pi / 5
        toward_point = 1 - np.abs(np.mod(np.arctan2(dx, -dy), k) - k / 2) / (k / 2)
        return np.sqrt(dx * dx + dy * dy) <= h * (0.45 + 0.55 * toward_point)
    if shape == "toma":  # a square frame, 45% of the half-side thick
        m = np.maximum(np.abs(dx), np.abs(dy))
        return (m <= h) & (m >= 0.55 * h)
    if shape == "fep":  # a crescent, opening to the right: a disc with a bite out of it
        return (dx * dx + dy * dy <= h * h) & ((dx - 0.45 * h) ** 2 + dy * dy > (0.8 * h) ** 2)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(ALL_SHAPES)}")


def coverage(shape: str, px: int, cx: float, cy: float, size: float, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a shape on a px×px grid, by supersampling each pixel."""
    n = px * supersample
    t = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(t, t)
    inside = shape_mask(shape, x, y, cx, cy, size).astype(np.float32)
    return inside.reshape(px, supersample, px, supersample).mean(axis=(1, 3))


def _jittered(name: str, rng: random.Random) -> np.ndarray:
    base = np.array(PALETTE[name], dtype=np.float32)
    return np.clip(base + [rng.uniform(-COLOR_JITTER, COLOR_JITTER) for _ in range(3)], 0, 255)


def render_array(scene: Scene, px: int = NATIVE_SIZE) -> np.ndarray:
    """The scene as a px×px×3 uint8 array."""
    rng = random.Random(scene.seed * 7919 + 17)
    fg, bg = _jittered(scene.color, rng), _jittered(scene.background, rng)
    a = coverage(scene.shape, px, scene.cx, scene.cy, scene.size)[..., None]
    return np.round(a * fg + (1 - a) * bg).astype(np.uint8)


def render(scene: Scene, px: int = NATIVE_SIZE) -> Image.Image:
    """The scene as an RGB PIL image of px×px."""
    return Image.fromarray(render_array(scene, px), "RGB")


def render_batch(scenes: Iterable[Scene], px: int = NATIVE_SIZE) -> np.ndarray:
    """Scenes as an N×px×px×3 uint8 array."""
    return np.stack([render_array(s, px) for s in scenes])


def tokenizer_words() -> list[str]:
    """Words that the toy base model's tokenizer keeps as single tokens (captions + spare triggers)."""
    return sorted(set(CAPTION_WORDS) | set(SPARE_WORDS) | {CONCEPT_SHAPE})


# ---- kohya-layout datasets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSpec:
    """What the demo dataset holds: how many concept and regularization images, at what size."""

    n_concept: int = 20
    concept_repeats: int = 10
    n_reg: int = 48
    reg_repeats: int = 1
    px: int = 64
    seed: int = 2024


def concept_scenes(n: int, seed: int = 2024) -> list[Scene]:
    """The concept's training scenes: crosses cycling through CONCEPT_PAIRS."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        color, background = CONCEPT_PAIRS[i % len(CONCEPT_PAIRS)]
        out.append(Scene(CONCEPT_SHAPE, color, background, *random_geometry(rng), seed=seed + i))
    return out


def reg_scenes(n: int, seed: int = 4048) -> list[Scene]:
    """Regularization scenes: the ordinary shapes in equal numbers, random colours."""
    scenes = [scene_from_seed(seed + i, shapes=BASE_SHAPES, held_out=None) for i in range(n)]
    return [replace(s, shape=BASE_SHAPES[i % len(BASE_SHAPES)]) for i, s in enumerate(scenes)]


def write_images(folder: Path, scenes: Sequence[Scene], px: int, word: str | None = None) -> list[Path]:
    """Write NNN.png + NNN.txt for each scene; returns the image paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(scenes):
        path = folder / f"{i:03d}.png"
        render(scene, px).save(path)
        path.with_suffix(".txt").write_text(scene.caption(word) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_concept_dataset(dataset_dir: str | Path, spec: DemoSpec = DemoSpec(), trigger: str = TRIGGER) -> Path:
    """Write the concept images in kohya layout: ``<dataset_dir>/<repeats>_<trigger>/``; returns that folder."""
    folder = Path(dataset_dir) / f"{spec.concept_repeats}_{trigger}"
    write_images(folder, concept_scenes(spec.n_concept, spec.seed), spec.px, word=trigger)
    return folder


def write_reg_dataset(reg_dir: str | Path, spec: DemoSpec = DemoSpec(), class_word: str = "shape") -> Path:
    """Write regularization images of the ordinary shapes: ``<reg_dir>/<repeats>_<class_word>/``."""
    folder = Path(reg_dir) / f"{spec.reg_repeats}_{class_word}"
    write_images(folder, reg_scenes(spec.n_reg, spec.seed + 1000), spec.px)
    return folder


def write_demo(root: str | Path, spec: DemoSpec = DemoSpec()) -> tuple[Path, Path]:
    """Write the demo: ``<root>/dataset/<r>_<trigger>/`` and ``<root>/reg/<r>_shape/``."""
    root = Path(root)
    return write_concept_dataset(root / "dataset", spec), write_reg_dataset(root / "reg", spec)


# ---- evaluation prompts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """What a prompt asks for: the attributes a scorer checks."""

    shape: str
    color: str
    background: str

    def prompt(self, word: str | None = None) -> str:
        """The prompt that asks for these attributes (``word`` replaces the shape's name)."""
        return f"a {self.color} {word or self.shape} on a {self.background} background"


def concept_eval_set(n: int, seen: bool | None = None, seed: int = 11) -> list[Expected]:
    """Crosses to ask for; seen True/False/None = only pairs in / not in CONCEPT_PAIRS / any pair."""
    pairs = [(c, b) for c in COLORS for b in COLORS if c != b]
    if seen is not None:
        pairs = [p for p in pairs if (p in CONCEPT_PAIRS) == seen]
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return [Expected(CONCEPT_SHAPE, *pairs[i % len(pairs)]) for i in range(n)]


def base_eval_set(n: int, seed: int = 13) -> list[Expected]:
    """Ordinary shapes to ask for: the shapes in turn, each with shuffled colour pairs."""
    rng = random.Random(seed)
    pools = {s: [t for t in all_triples() if t[0] == s] for s in BASE_SHAPES}
    for pool in pools.values():
        rng.shuffle(pool)
    picks = []
    for i in range(n):
        pool = pools[BASE_SHAPES[i % len(BASE_SHAPES)]]
        picks.append(Expected(*pool[i // len(BASE_SHAPES) % len(pool)]))
    return picks




