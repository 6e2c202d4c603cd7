"""Does a LoRA learn? Train the demo LoRA with lorakit's trainer on CPU and score base vs. LoRA.

    OMP_NUM_THREADS=1 python bench/learning.py                 # the demo recipe, full table
    OMP_NUM_THREADS=1 python bench/learning.py --epochs 3 --n 12
    OMP_NUM_THREADS=1 python bench/learning.py --seeds 42,43,44 --score-epochs 8,16,24   # means over 3 runs
    OMP_NUM_THREADS=1 python bench/learning.py --seeds 42,43,44 --eval-seed 3000   # on other sampling seeds
    OMP_NUM_THREADS=1 python bench/learning.py --world second --seeds 42,43,44     # the world never tuned on

--world demo (the default): the base model is data/toy-base; the concept is the toy world's cross under the
trigger word (data/demo). --world second: lorakit.demo.worlds.SECOND, another base (data/toy-base-2: other seed,
widths and shapes) and another concept (a crescent, ``zorb``, 16 images); the recipe is the demo's, carried over as
a user would: only the base model, the dataset, the trigger word (output name, sample prompts) changed.
For each checkpoint (epoch) × strength it samples prompts and scores them with lorakit.demo.scorer:
  likeness      the trigger prompt draws the concept's shape
  adaptability  ... in the colour and on the background asked for (all pairs; `unseen` = pairs absent
                from the LoRA's images)
  ordinary      prompts for the ordinary shapes, with the LoRA active, still draw what they ask (no leakage)
It ends with `likeness: x` and `adaptability: y` for the recommended checkpoint and strength (with --seeds,
the means over the training runs: compare recipes over several seeds, since one run is one draw).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.config.schema import TrainConfig  # noqa: E402
from lorakit.demo import toyworld as tw  # noqa: E402
from lorakit.demo.recipe import demo_config  # noqa: E402
from lorakit.demo.scorer import score_batch  # noqa: E402
from lorakit.demo.worlds import DEMO, WORLDS, World  # noqa: E402
from lorakit.project import Project  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE_MODEL = REPO / "data" / "toy-base"
RECOMMENDED_STRENGTH = 1.0


@dataclass(frozen=True)
class EvalSpec:
    """How many prompts of each kind to sample, and how."""

    n_seen: int = 16
    n_unseen: int = 32
    n_ordinary: int = 30
    steps: int = 25
    cfg: float = 4.0
    sampler: str = "Euler a"
    seed: int = 1000


def eval_spec(n: int = 0, seed: int = EvalSpec.seed) -> EvalSpec:
    """The default prompt counts, or n unseen, n ordinary and n/2 seen-pair prompts; sampling seeds from ``seed``."""
    spec = EvalSpec(seed=seed)
    return replace(spec, n_seen=n // 2, n_unseen=n, n_ordinary=n) if n else spec


@dataclass
class Cell:
    """Scores of one checkpoint at one strength (epoch 0 = the base model alone)."""

    epoch: int
    strength: float
    likeness: float
    adaptability: float
    unseen_adaptability: float
    ordinary: float
    checkpoint: str = ""


def prepare_project(root: Path, world: World = DEMO) -> Project:
    """A fresh project holding the world's concept images (dataset/<r>_<trigger>/) and reg images (dataset/reg/)."""
    shutil.rmtree(root, ignore_errors=True)
    project = Project.create(root)
    world.write_dataset(project.dataset_dir, project.reg_dir)
    return project


def carry_over(cfg: TrainConfig, world: World) -> TrainConfig:
    """The demo recipe moved to ``world`` as a user would: base model, trigger word (output name, prompts)."""
    cfg.model.base_model = str(world.base_dir)
    cfg.saving.output_name = world.trigger
    cfg.sampling.sample_prompts = [p.replace(tw.TRIGGER, world.trigger) for p in cfg.sampling.sample_prompts]
    return cfg.validate()


def train_demo(project: Project, cfg: TrainConfig) -> tuple[list[Path], float, float]:
    """Train with lorakit's own trainer; returns the checkpoints in epoch order and the seconds it took."""
    from lorakit.train.loop import train

    t0, cpu0 = time.time(), time.process_time()
    result = train(project, cfg)
    # CPU time too: what a machine shared with other jobs does not inflate (the trainer runs in this process)
    return list(result.checkpoints), time.time() - t0, time.process_time() - cpu0


def _images(gen, prompts: list[str], seeds: list[int], lora: Path | None, strength: float, spec: EvalSpec):
    loras = [(lora, strength)] if lora is not None and strength else []
    return gen.generate_batch(prompts, seeds=seeds, loras=loras, steps=spec.steps, cfg=spec.cfg, sampler=spec.sampler)


def evaluate(gen, lora: Path | None, strength: float, spec: EvalSpec, epoch: int = 0, world: World = DEMO) -> Cell:
    """Score one checkpoint at one strength on trigger prompts (seen and unseen pairs) and ordinary prompts."""
    seen = world.concept_eval_set(spec.n_seen, seen=True)
    unseen = world.concept_eval_set(spec.n_unseen, seen=False)
    ordinary = world.base_eval_set(spec.n_ordinary)
    concept = seen + unseen
    seeds = [spec.seed + i for i in range(len(concept))]
    c_imgs = _images(gen, [e.prompt(world.trigger) for e in concept], seeds, lora, strength, spec)
    c_score = score_batch(c_imgs, concept)
    u_score = score_batch(c_imgs[len(seen):], unseen)
    o_imgs = _images(gen, [e.prompt() for e in ordinary], [spec.seed + 500 + i for i in range(len(ordinary))],
                     lora, strength, spec)
    o_score = score_batch(o_imgs, ordinary)
    return Cell(epoch, strength, c_score.likeness, c_score.adaptability, u_score.adaptability, o_score.correct,
                lora.name if lora else "")


def epoch_of(path: Path, n_epochs: int) -> int:
    """Epoch of a checkpoint file: name-00000N -> N, the unnumbered last file -> n_epochs."""
    head, _, tail = path.stem.rpartition("-")
    return int(tail) if head and tail.isdigit() else n_epochs


def format_table(cells: list[Cell]) -> str:
    """The table of scores, one row per (epoch, strength)."""
    rows = [f"{'epoch':>5} {'strength':>8} {'likeness':>9} {'adapt':>6} {'unseen':>7} {'ordinary':>9}"]
    for c in cells:
        rows.append(f"{c.epoch:>5} {c.strength:>8.2f} {c.likeness:>9.2f} {c.adaptability:>6.2f} "
                    f"{c.unseen_adaptability:>7.2f} {c.ordinary:>9.2f}")
    return "\n".join(rows)


def best_cell(cells: list[Cell], min_ordinary: float = 0.9) -> Cell:
    """The cell with the best likeness × adaptability among those that keep ordinary prompts right."""
    pool = [c for c in cells if c.epoch > 0 and c.ordinary >= min_ordinary] or [c for c in cells if c.epoch > 0]
    return max(pool, key=lambda c: (c.likeness * c.adaptability, c.epoch == max(x.epoch for x in pool), -c.epoch))


def run(workdir: Path, cfg: TrainConfig, strengths: list[float], spec: EvalSpec, epochs_to_score: list[int] | None,
        base: Path = BASE_MODEL, world: World = DEMO, rescore: bool = False) -> dict:
    """Train the world's LoRA, score the base model and every (epoch, strength); returns all the figures.

    rescore: score the checkpoints an earlier run left in ``workdir`` again instead of training (a scorer mended,
    other prompts); the training times are then unknown (0).
    """
    from lorakit.evaluate.generate import Generator

    cfg.model.base_model = str(base)
    if rescore:
        checkpoints, train_seconds, cpu_seconds = Project.open(workdir).checkpoints(cfg.saving.output_name), 0.0, 0.0
        if not checkpoints:
            raise SystemExit(f"--rescore: no {cfg.saving.output_name}*.safetensors in {workdir}/output")
    else:
        checkpoints, train_seconds, cpu_seconds = train_demo(prepare_project(workdir, world), cfg)
    n_epochs = cfg.training.max_train_epochs
    by_epoch = {epoch_of(p, n_epochs): p for p in checkpoints}
    print(f"{'found' if rescore else 'trained'} {len(checkpoints)} checkpoints in {train_seconds:.0f}s "
          f"({cpu_seconds / 60:.1f} CPU-minutes)", flush=True)
    gen = Generator(str(base))
    t0 = time.time()
    cells = [evaluate(gen, None, 0.0, spec, world=world)]
    for epoch in sorted(by_epoch):
        if epochs_to_score and epoch not in epochs_to_score:
            continue
        for s in strengths:
            cells.append(evaluate(gen, by_epoch[epoch], s, spec, epoch, world))
            print(format_table(cells[-1:]).splitlines()[1], flush=True)
    eval_seconds = time.time() - t0
    recommended = next((c for c in cells if c.epoch == n_epochs and c.strength == RECOMMENDED_STRENGTH), cells[-1])
    return {"cells": cells, "train_seconds": train_seconds, "train_cpu_seconds": cpu_seconds,
            "eval_seconds": eval_seconds,
            "recommended": recommended, "best": best_cell(cells), "base": cells[0]}


def mean_cells(runs: list[list[Cell]]) -> tuple[list[Cell], dict[tuple[int, float], tuple[float, float]]]:
    """Cells averaged over training runs (same epochs and strengths), and each cell's likeness (min, max)."""
    out, spread = [], {}
    names = ("likeness", "adaptability", "unseen_adaptability", "ordinary")
    for group in zip(*runs, strict=True):
        first = group[0]
        means = [sum(getattr(c, name) for c in group) / len(group) for name in names]
        out.append(Cell(first.epoch, first.strength, *means, first.checkpoint))
        spread[(first.epoch, first.strength)] = (min(c.likeness for c in group), max(c.likeness for c in group))
    return out, spread


def apply_override(cfg: TrainConfig, item: str) -> None:
    """Set one recipe value from 'section.key=value' (the value read as TOML: 16, 1e-3, true, "text")."""
    import tomllib

    key, _, raw = item.partition("=")
    section, _, name = key.strip().partition(".")
    value = tomllib.loads(f"v = {raw.strip()}")["v"]
    if not hasattr(getattr(cfg, section, None), name):
        raise SystemExit(f"--set {item!r}: no setting {key!r}")
    setattr(getattr(cfg, section), name, value)
    cfg.validate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=0, help="override the recipe's epochs (0 = keep)")
    parser.add_argument("--strengths", default="0.5,0.75,1.0,1.25")
    parser.add_argument("--n", type=int, default=0, help="scale the number of prompts (0 = default spec)")
    parser.add_argument("--score-epochs", default="", help="comma-separated epochs to score (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe setting, e.g. --set network.rank=16 (values parsed as TOML)")
    parser.add_argument("--seeds", default="", help="train once per seed (e.g. 42,43,44) and report the means: "
                        "one run is one draw, so compare recipes over several")
    parser.add_argument("--eval-seed", type=int, default=EvalSpec.seed,
                        help="first seed of the sampled prompts; another value scores on prompts no recipe was tuned on")
    parser.add_argument("--world", choices=list(WORLDS), default="demo",
                        help="demo: the toy base and the cross; second: a base and concept the recipe was never tuned on")
    parser.add_argument("--base", type=Path, default=None, help="the base model folder (default: the world's)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--rescore", action="store_true",
                        help="score the checkpoints already in --workdir (per seed: <workdir>/seed-N) without training")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    world = WORLDS[args.world]
    cfg = carry_over(demo_config(), world)
    base = args.base or world.base_dir
    if args.epochs:
        cfg.training.max_train_epochs = args.epochs
    for item in args.set:
        apply_override(cfg, item)
    spec = eval_spec(args.n, args.eval_seed)
    if args.rescore and not args.workdir:
        raise SystemExit("--rescore needs --workdir: the folder of the run whose checkpoints to score")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lorakit-bench-"))
    score_epochs = [int(e) for e in args.score_epochs.split(",") if e]
    strengths = [float(s) for s in args.strengths.split(",")]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if len(seeds) > 1:
        runs = []
        for seed in seeds:
            print(f"--- training seed {seed}", flush=True)
            cfg.training.seed = seed
            runs.append(run(workdir / f"seed-{seed}", cfg, strengths, spec, score_epochs or None, base, world,
                            args.rescore))
        cells, spread = mean_cells([r["cells"] for r in runs])
        recommended = next(c for c in cells if (c.epoch, c.strength) == (runs[0]["recommended"].epoch,
                                                                             runs[0]["recommended"].strength))
        out = {"cells": cells, "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs),
               "train_cpu_seconds": sum(r["train_cpu_seconds"] for r in runs) / len(runs),
               "eval_seconds": sum(r["eval_seconds"] for r in runs), "recommended": recommended,
               "best": best_cell(cells), "base": cells[0], "seeds": seeds,
               "runs": [[asdict(c) for c in r["cells"]] for r in runs]}
        print(f"\nmeans over training seeds {', '.join(map(str, seeds))}; last column: likeness of each run, min-max")
        header, *rows = format_table(cells).splitlines()
        print(header)
        for row, c in zip(rows, cells, strict=True):
            lo, hi = spread[(c.epoch, c.strength)]
            print(f"{row}   {lo:.2f}-{hi:.2f}")
    else:
        if seeds:
            cfg.training.seed = seeds[0]
        out = run(workdir, cfg, strengths, spec, score_epochs or None, base, world, args.rescore)
        print()
        print(format_table(out["cells"]))
    print(f"\ntraining {out['train_seconds']:.0f}s ({out['train_cpu_seconds'] / 60:.1f} CPU-minutes), "
          f"scoring {out['eval_seconds']:.0f}s; "
          f"base model likeness {out['base'].likeness:.2f}")
    b, r = out["best"], out["recommended"]
    print(f"best: epoch {b.epoch} strength {b.strength}; recommended: epoch {r.epoch} strength {r.strength} "
          f"(ordinary prompts {r.ordinary:.2f}, unseen-pair adaptability {r.unseen_adaptability:.2f})")
    if args.json:
        args.json.write_text(json.dumps({**out, "cells": [asdict(c) for c in out["cells"]],
                                         "recommended": asdict(r), "best": asdict(b), "base": asdict(out["base"])},
                                        indent=2))
    print(f"likeness: {r.likeness:.2f}")
    print(f"adaptability: {r.adaptability:.2f}")


if __name__ == "__main__":
    main()
