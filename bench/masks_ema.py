"""Masked loss and EMA in the toy world: does a mask keep a distractor out, do EMA checkpoints score better?

    OMP_NUM_THREADS=1 python bench/masks_ema.py --epochs 8 --n 16   # both runs, ~6 min on a shared 2-core CPU
    OMP_NUM_THREADS=1 python bench/masks_ema.py                     # 12 epochs

The demo's concept (the cross, trigger `blicket`) is drawn with a distracting second object: a small square in
the top-left corner, in a colour that is neither the cross's nor the background's. Its mask (``NNN_mask.png``)
is white on the cross (slightly enlarged) only. Two runs of the demo recipe, one unmasked and one with
``data.masked_loss``, each with an EMA (``training.ema_decay``; it does not change the raw weights), are scored at
the same checkpoints, raw and EMA, at strength 1:
  likeness     trigger prompts draw the cross (lorakit.demo.scorer)
  distractor   share of trigger-prompt images with something unlike the background in the corner square
  ordinary     ordinary prompts still draw what they ask, with the LoRA active
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning import BASE_MODEL, eval_spec, prepare_project  # noqa: E402

from lorakit.demo import toyworld as tw  # noqa: E402
from lorakit.demo.recipe import demo_config  # noqa: E402
from lorakit.demo.scorer import border_color, score_batch  # noqa: E402

CORNER = (0.04, 0.26)  # the distractor's square, in fractions of the side (both axes)
SPARE = ("purple", "yellow", "white", "red")


def distractor_dataset(project, spec: tw.DemoSpec | None = None) -> None:
    """Rewrite the concept images with a corner square, and a mask of the cross alone beside each."""
    spec = spec or tw.DemoSpec()
    folder = project.dataset_dir / f"{spec.concept_repeats}_{tw.TRIGGER}"
    rng = random.Random(7)
    for i, scene in enumerate(tw.concept_scenes(spec.n_concept, spec.seed)):
        scene = tw.Scene(scene.shape, scene.color, scene.background, rng.uniform(0.58, 0.66), rng.uniform(0.58, 0.66),
                         rng.uniform(0.42, 0.5), scene.seed)
        arr = tw.render_array(scene, spec.px).astype(np.float32)
        color = next(c for c in SPARE if c not in (scene.color, scene.background))
        lo, hi = (round(f * spec.px) for f in CORNER)
        arr[lo:hi, lo:hi] = tw.PALETTE[color]
        path = folder / f"{i:03d}.png"
        Image.fromarray(arr.astype(np.uint8)).save(path)
        cover = tw.coverage(scene.shape, spec.px, scene.cx, scene.cy, scene.size * 1.15)
        Image.fromarray((cover > 0).astype(np.uint8) * 255).save(folder / f"{i:03d}_mask.png")


def has_distractor(img: Image.Image, threshold: float = 60.0) -> bool:
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    n = a.shape[0]
    lo, hi = round(CORNER[0] * n) + 1, round(CORNER[1] * n) - 1
    patch = a[lo:hi, lo:hi].reshape(-1, 3)
    far = np.abs(patch - border_color(a.astype(np.uint8))).max(axis=1) > threshold
    return far.mean() > 0.5


def evaluate(gen, lora: Path | None, spec) -> dict:
    concept = tw.concept_eval_set(spec.n_seen, seen=True) + tw.concept_eval_set(spec.n_unseen, seen=False)
    ordinary = tw.base_eval_set(spec.n_ordinary)
    loras = [(lora, 1.0)] if lora else []
    kw = {"loras": loras, "steps": spec.steps, "cfg": spec.cfg, "sampler": spec.sampler}
    imgs = gen.generate_batch([e.prompt(tw.TRIGGER) for e in concept],
                              seeds=[spec.seed + i for i in range(len(concept))], **kw)
    o_imgs = gen.generate_batch([e.prompt() for e in ordinary],
                                seeds=[spec.seed + 500 + i for i in range(len(ordinary))], **kw)
    c = score_batch(imgs, concept)
    return {"likeness": c.likeness, "adaptability": c.adaptability, "ordinary": score_batch(o_imgs, ordinary).correct,
            "distractor": float(np.mean([has_distractor(im) for im in imgs]))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--score-epochs", default="", help="epochs to score (default: half-way and the last)")
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from lorakit.evaluate.generate import Generator
    from lorakit.train.loop import train

    spec = eval_spec(args.n)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lorakit-masks-"))
    score_epochs = [int(e) for e in args.score_epochs.split(",") if e] or [args.epochs // 2, args.epochs]
    gen = Generator(str(BASE_MODEL))
    rows = [("base model", "-", 0, evaluate(gen, None, spec))]
    for masked in (False, True):
        project = prepare_project(workdir / ("masked" if masked else "unmasked"))
        distractor_dataset(project)
        cfg = demo_config()
        cfg.model.base_model = str(BASE_MODEL)
        cfg.training.max_train_epochs = args.epochs
        cfg.saving.save_every_n_epochs = max(1, args.epochs // 2)
        cfg.sampling.sample_every_n_epochs = 0
        cfg.data.masked_loss = masked
        cfg.training.ema_decay, cfg.saving.save_weights = args.ema_decay, "both"
        t0 = time.time()
        result = train(project, cfg)
        print(f"{'masked' if masked else 'unmasked'}: {result.steps} steps in {time.time() - t0:.0f}s", flush=True)
        for path in result.checkpoints:
            stem = path.stem.removesuffix("-ema")
            tail = stem.rpartition("-")[2]
            epoch = int(tail) if tail.isdigit() else args.epochs
            if epoch in score_epochs:
                row = ("masked" if masked else "unmasked", "ema" if path.stem.endswith("-ema") else "raw", epoch,
                       evaluate(gen, path, spec))
                rows.append(row)
                print(row, flush=True)
    print(f"\n{'run':<10} {'weights':<7} {'epoch':>5} {'likeness':>9} {'adapt':>6} {'distractor':>10} {'ordinary':>9}")
    for run, weights, epoch, s in rows:
        print(f"{run:<10} {weights:<7} {epoch:>5} {s['likeness']:>9.2f} {s['adaptability']:>6.2f} "
              f"{s['distractor']:>10.2f} {s['ordinary']:>9.2f}")


if __name__ == "__main__":
    main()
