"""The toy worlds: the demo's, where lorakit's recipe was tuned, and a second one that it was never tuned on.

    from lorakit.demo.worlds import WORLDS
    world = WORLDS["second"]
    world.base_dir, world.concept_shape, world.trigger     # data/toy-base-2, "fep" (a crescent), "zorb"

A world is a base model pretrained on some shapes of ``toyworld`` and a concept that the base has never seen,
taught under a made-up trigger word from a few rendered images plus regularization images of the ordinary shapes.
The second world differs from the demo's in everything a recipe could be tuned to: the base's seed and width
(a narrower, two-layer, 96-wide text encoder and a 32/64/96 UNet), the shapes it was pretrained on, the concept,
the trigger, the colour pairs of the concept images and the dataset's size (16 images, 64 regularization images).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from lorakit.demo import toyworld as tw
from lorakit.shipped import shipped_dir

DATA = shipped_dir("data")  # the second world's base is in a checkout's data/ only (the wheel leaves it out)


def _cycle_pairs(offsets: tuple[int, ...]) -> tuple[tuple[str, str], ...]:
    """(colour, background) pairs: each colour with the colour ``offset`` places on, for each offset."""
    c = tw.COLORS
    return tuple((c[i], c[(i + d) % len(c)]) for d in offsets for i in range(len(c)))


@dataclass(frozen=True)
class World:
    """A base model, the shapes it knows, and the concept a LoRA teaches it."""

    name: str
    base_dir: Path
    base_shapes: tuple[str, ...]  # shapes the base was pretrained on (keys of toyworld: circle, ..., dax, ...)
    concept_shape: str  # a shape the base has never seen
    trigger: str
    concept_pairs: tuple[tuple[str, str], ...]
    n_concept: int
    concept_repeats: int
    n_reg: int
    reg_shapes: tuple[str, ...]  # the ordinary shapes of the regularization images and ordinary prompts
    seed: int  # of the concept images' geometry
    reg_seed: int  # of the regularization images
    # the base's networks (scripts/train_toy_base.py)
    unet_channels: tuple[int, ...] = (32, 64, 64)
    text_width: int = 64
    text_layers: int = 3

    def concept_scenes(self) -> list[tw.Scene]:
        rng = random.Random(self.seed)
        return [tw.Scene(self.concept_shape, *self.concept_pairs[i % len(self.concept_pairs)],
                         *tw.random_geometry(rng), seed=self.seed + i) for i in range(self.n_concept)]

    def reg_scenes(self) -> list[tw.Scene]:
        scenes = [tw.scene_from_seed(self.reg_seed + i, shapes=self.reg_shapes, held_out=None)
                  for i in range(self.n_reg)]
        return [replace(s, shape=self.reg_shapes[i % len(self.reg_shapes)]) for i, s in enumerate(scenes)]

    def write_dataset(self, dataset_dir: Path, reg_dir: Path, px: int = 64) -> tuple[Path, Path]:
        """``<dataset_dir>/<r>_<trigger>/`` and ``<reg_dir>/1_shape/``, NNN.png + NNN.txt each, in kohya layout."""
        concept = Path(dataset_dir) / f"{self.concept_repeats}_{self.trigger}"
        tw.write_images(concept, self.concept_scenes(), px, word=self.trigger)
        reg = Path(reg_dir) / "1_shape"
        tw.write_images(reg, self.reg_scenes(), px)
        return concept, reg

    def concept_eval_set(self, n: int, seen: bool | None = None, seed: int = 11) -> list[tw.Expected]:
        """Concept prompts; seen True/False/None = only pairs in / not in the concept images / any pair."""
        pairs = [(c, b) for c in tw.COLORS for b in tw.COLORS if c != b]
        if seen is not None:
            pairs = [p for p in pairs if (p in self.concept_pairs) == seen]
        random.Random(seed).shuffle(pairs)
        return [tw.Expected(self.concept_shape, *pairs[i % len(pairs)]) for i in range(n)]

    def base_eval_set(self, n: int, seed: int = 13) -> list[tw.Expected]:
        """Ordinary prompts: the regularization shapes in turn, each with shuffled colour pairs."""
        rng = random.Random(seed)
        pools = {s: [t for t in tw.all_triples((s,))] for s in self.reg_shapes}
        for pool in pools.values():
            rng.shuffle(pool)
        k = len(self.reg_shapes)
        return [tw.Expected(*pools[self.reg_shapes[i % k]][i // k % len(pools[self.reg_shapes[i % k]])])
                for i in range(n)]


DEMO = World(
    name="demo", base_dir=DATA / "toy-base",
    base_shapes=(*tw.BASE_SHAPES, *tw.EXTRA_SHAPES), concept_shape=tw.CONCEPT_SHAPE, trigger=tw.TRIGGER,
    concept_pairs=tw.CONCEPT_PAIRS, n_concept=20, concept_repeats=10, n_reg=48, reg_shapes=tw.BASE_SHAPES,
    seed=2024, reg_seed=3024,
)
SECOND = World(
    name="second", base_dir=DATA / "toy-base-2",
    base_shapes=(*tw.BASE_SHAPES, "cross", "dax", "wug", "toma"), concept_shape="fep", trigger="zorb",
    concept_pairs=(*_cycle_pairs((2, 3)), ("red", "black"), ("white", "purple")), n_concept=16,
    concept_repeats=10, n_reg=64, reg_shapes=tw.BASE_SHAPES, seed=7331, reg_seed=9331,
    unet_channels=(32, 64, 96), text_width=96, text_layers=2,
)
WORLDS: dict[str, World] = {w.name: w for w in (DEMO, SECOND)}
