"""The toy world's scores in the judge's terms: what a toy prompt asks for, and a scorer and annotator for grids."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from lorakit.demo import toyworld as tw
from lorakit.demo.scorer import score_image
from lorakit.evaluate.grid_spec import Cell
from lorakit.evaluate.judge import Scorer, training_images, trigger_words
from lorakit.evaluate.scoring import Edit, EmbeddingScorer, ScoringModels, load_encoders
from lorakit.project import Project


def toy_expected(prompt: str, triggers: Sequence[str] = ()) -> dict[str, str] | None:
    """What a toy-world prompt asks for ({shape, color, background}), or None if it is not one.

    'a yellow blicket on a green background' -> {'shape': 'cross', 'color': 'yellow', 'background': 'green'}
    when 'blicket' is a trigger word (the demo's concept is the toy world's cross).
    """
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


class ToyScorer:
    """The toy scorer's verdict on toy-world prompts (the project's trigger words count as the concept), None
    for any other prompt; ``can_score`` says which prompts are worth drawing for it."""

    def __init__(self, triggers: Sequence[str] = ()) -> None:
        self.triggers = list(triggers)

    def can_score(self, prompt: str) -> bool:
        return toy_expected(prompt, self.triggers) is not None

    def __call__(self, cell: Cell, image: Image.Image) -> dict[str, Any] | None:
        return score_cell(cell, image, self.triggers)

    def annotate(self, cell: Cell, image: Image.Image) -> str | None:
        s = self(cell, image)
        return None if s is None else f"L:{'yes' if s['likeness'] else 'no'} A:{'yes' if s['adaptability'] else 'no'}"


def toy_scorer(project: Project | None = None) -> Scorer:
    """A scorer for the judge on toy-world prompts (see ToyScorer)."""
    return ToyScorer(trigger_words(project) if project else [])


def project_scorer(project: Project, clip: str = "", image: str = "", edits: Sequence[Edit] = (),
                   download: bool = False) -> Scorer:
    """Notebook 04's scorer: CLIP (+ an image model) for any prompt when ``clip`` names one, else the toy scorer
    (toy-world prompts only: a real photo's grid then draws nothing for scores). Models load from a folder or the
    local cache; a hub id downloads only with ``download``."""
    if not clip:
        return toy_scorer(project)
    encoders = load_encoders(ScoringModels(clip=clip, image=image, allow_download=download))
    return EmbeddingScorer(encoders, training_images(project), edits)
