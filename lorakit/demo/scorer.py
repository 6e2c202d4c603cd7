"""Score toy-world images: is the concept there (likeness), and does the image obey the prompt (adaptability)?

    from lorakit.demo.scorer import score_image, score_batch
    score_image(img, {"shape": "cross", "color": "yellow", "background": "green"})
    # {'shape': 'cross', 'color': 'yellow', 'background': 'green', 'likeness': True, 'adaptability': True, ...}

Analytic, no model: the background colour is the median of the image's border; the shape is the largest
connected region that differs from it; its colour is the mean of its core; its kind is the template
(every shape of the toy world, drawn so that its own extent fills the region's bounding box) that overlaps it best (IoU).
Colours are named by the nearest colour of the toy palette.

All nine shapes compete, not only the ones a prompt could ask for: with only circle, square, triangle and cross,
a rounded, diamond-like blob overlaps the cross best and would count as one (the diamond template takes it).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from lorakit.demo import toyworld as tw

MIN_AREA = 0.015  # smallest region, as a fraction of the image, that counts as a shape
MIN_IOU = 0.5  # below this overlap with every template, the region is no shape ("none")
MIN_CONTRAST = 40.0  # RGB distance from the background below which nothing is drawn


@dataclass(frozen=True)
class Reading:
    """What the scorer sees in an image."""

    shape: str
    color: str | None
    background: str
    iou: float
    area: float


def _rgb(img: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(img, Image.Image):
        img = np.asarray(img.convert("RGB"))
    return np.asarray(img, dtype=np.float32)[..., :3]


def nearest_color(rgb: np.ndarray) -> str:
    """The palette colour nearest to an RGB triple."""
    names = list(tw.PALETTE)
    table = np.array([tw.PALETTE[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - rgb) ** 2).sum(axis=1)))]


def border_color(a: np.ndarray) -> np.ndarray:
    """Median colour of the one-pixel frame of the image."""
    frame = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])
    return np.median(frame, axis=0)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask (empty if the mask is)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        region, queue = [], deque([(y0, x0)])
        while queue:
            y, x = queue.popleft()
            region.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(region) > len(best):
            best = region
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best, strict=True)
        out[list(ys), list(xs)] = True
    return out


@functools.cache
def extent(shape: str, n: int = 512) -> tuple[float, float, float, float]:
    """Where a shape drawn in the unit square actually reaches: (x0, y0, x1, y1).

    A crescent, a star, an apex-up triangle do not fill their nominal square (the crescent's tips end at 0.81
    of its width); a template stretched over the nominal square would not match the shape's own render.
    """
    t = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(t, t)
    ys, xs = np.nonzero(tw.shape_mask(shape, x, y, 0.5, 0.5, 1.0))
    return xs.min() / n, ys.min() / n, (xs.max() + 1) / n, (ys.max() + 1) / n


def template(shape: str, shape_hw: tuple[int, int], box: tuple[int, int, int, int], supersample: int = 4) -> np.ndarray:
    """A shape drawn so that its own extent fills a bounding box (x0, y0, x1, y1, exclusive ends), as a mask."""
    h, w = shape_hw
    x0, y0, x1, y1 = box
    ex0, ey0, ex1, ey1 = extent(shape)
    ys = (np.arange(h * supersample) + 0.5) / supersample
    xs = (np.arange(w * supersample) + 0.5) / supersample
    # image coordinates -> the unit square the shape is drawn in, the box landing on the shape's extent
    u = ex0 + (xs - x0) / max(x1 - x0, 1) * (ex1 - ex0)
    v = ey0 + (ys - y0) / max(y1 - y0, 1) * (ey1 - ey0)
    x, y = np.meshgrid(u, v)
    inside = tw.shape_mask(shape, x, y, 0.5, 0.5, 1.0).astype(np.float32)
    return inside.reshape(h, supersample, w, supersample).mean(axis=(1, 3)) >= 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def read_image(img: Image.Image | np.ndarray, shapes: Sequence[str] = tw.ALL_SHAPES) -> Reading:
    """Find the background colour, the shape's kind and its colour in an image."""
    a = _rgb(img)
    bg = border_color(a)
    background = nearest_color(bg)
    dist = np.sqrt(((a - bg) ** 2).sum(axis=-1))
    strong = float(np.percentile(dist, 99))
    if strong < MIN_CONTRAST:
        return Reading("none", None, background, 0.0, 0.0)
    region = largest_component(dist > 0.5 * strong)  # half-way between the background and the shape
    area = float(region.mean())
    if area < MIN_AREA:
        return Reading("none", None, background, 0.0, area)
    ys, xs = np.nonzero(region)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    scores = {s: iou(region, template(s, region.shape, box)) for s in shapes}
    shape = max(scores, key=scores.get)
    core = region & (dist > 0.8 * strong)
    color = nearest_color(a[core if core.any() else region].mean(axis=0))
    if scores[shape] < MIN_IOU:
        shape = "none"
    return Reading(shape, color, background, round(scores[shape] if shape != "none" else max(scores.values()), 3), area)


def _expected(expected: Any) -> dict[str, str | None]:
    if isinstance(expected, Mapping):
        return {k: expected.get(k) for k in ("shape", "color", "background")}
    return {k: getattr(expected, k, None) for k in ("shape", "color", "background")}


def score_image(img: Image.Image | np.ndarray, expected: Any) -> dict[str, Any]:
    """Compare an image with what its prompt asked for (an Expected or a dict with shape/color/background).

    likeness = the shape is the expected one; adaptability = its colour and the background are the expected
    ones; correct = all three. Attributes given as None are not checked.
    """
    exp = _expected(expected)
    r = read_image(img)
    ok = {k: exp[k] is None or getattr(r, k) == exp[k] for k in ("shape", "color", "background")}
    return {
        **asdict(r),
        **{f"{k}_ok": v for k, v in ok.items()},
        "likeness": ok["shape"],
        "adaptability": ok["color"] and ok["background"],
        "correct": all(ok.values()),
    }


@dataclass
class BatchScore:
    """Fractions over a batch of images: likeness, adaptability, all correct; plus each image's score."""

    likeness: float
    adaptability: float
    correct: float
    n: int
    items: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, float]:
        return {"likeness": self.likeness, "adaptability": self.adaptability, "correct": self.correct, "n": self.n}


def score_batch(images: Sequence[Image.Image | np.ndarray], expected: Sequence[Any]) -> BatchScore:
    """Score images against their prompts' attributes; fractions in 0..1."""
    if len(images) != len(expected):
        raise ValueError(f"{len(images)} images but {len(expected)} expectations: give one per image.")
    items = [score_image(img, e) for img, e in zip(images, expected, strict=True)]
    n = max(len(items), 1)
    return BatchScore(
        likeness=sum(i["likeness"] for i in items) / n,
        adaptability=sum(i["adaptability"] for i in items) / n,
        correct=sum(i["correct"] for i in items) / n,
        n=len(items),
        items=items,
    )
