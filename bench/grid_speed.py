"""Grid speed: 5 checkpoints × 6 strengths on the tiny model (the figure in issue 7's closing note).

    OMP_NUM_THREADS=1 python bench/grid_speed.py                  # 20 steps, Euler a, 64 px tiny SD1
    OMP_NUM_THREADS=1 python bench/grid_speed.py --steps 4 --seeds 4

Trains a 5-epoch LoRA on 4 random images first (a checkpoint per epoch; not timed), loads the model and warms
up (not timed), then times the grid as lorakit draws it (cells batched, strength 0 drawn once) against the
naive way (one pipeline call per cell, nothing reused).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.config.schema import TrainConfig  # noqa: E402
from lorakit.evaluate.generate import Generator  # noqa: E402
from lorakit.evaluate.grid import make_grid  # noqa: E402
from lorakit.evaluate.grid_spec import build_spec, plan  # noqa: E402
from lorakit.models.tiny import save_tiny_pipeline  # noqa: E402
from lorakit.project import Project  # noqa: E402
from lorakit.train.loop import train  # noqa: E402

STRENGTHS = "strength=1,0.8,0.6,0.4,0.2,0"


def make_project(root: Path, model: Path, epochs: int = 5) -> Project:
    """A project with 4 random images and a LoRA trained for ``epochs`` epochs, one checkpoint each."""
    project = Project.create(root)
    folder = project.dataset_dir / "1_zkx"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("zkx, thing", encoding="utf-8")
    cfg = TrainConfig()
    cfg.model.base_model = str(model)
    cfg.data.resolution, cfg.data.enable_bucket = 64, False
    cfg.network.rank, cfg.network.alpha = 4, 4.0
    cfg.training.max_train_epochs, cfg.training.train_batch_size = epochs, 2
    cfg.saving.output_name, cfg.saving.save_every_n_epochs = "zkx", 1
    cfg.sampling.sample_every_n_epochs = 0
    cfg.save(project.config_path)
    train(project, cfg)
    return project


def naive(gen: Generator, project: Project, spec) -> tuple[int, float, float]:
    """One pipeline call per cell, identical cells drawn again: what a plain loop does; (cells, wall s, CPU s)."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    cells = [c for z in plan(spec, project) for row in z for c in row]
    for c in cells:
        gen.generate(c.prompt, seed=c.seed, loras=[(c.checkpoint, c.strength)], steps=c.steps, cfg=c.cfg,
                     sampler=c.sampler, negative_prompt=c.negative_prompt)
    return len(cells), time.perf_counter() - t0, time.process_time() - cpu0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell (a Z axis); >1 shows batching")
    parser.add_argument("--no-naive", action="store_true", help="skip the one-call-per-cell comparison")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_pipeline(Path(tmp) / "tiny-sd1", "sd1")
        project = make_project(Path(tmp) / "proj", model)
        gen = Generator(str(model))
        gen.generate("warm up", seed=0, steps=2)
        z = f"seed={','.join(str(s) for s in range(1, args.seeds + 1))}" if args.seeds > 1 else ""
        spec = build_spec(project, "checkpoint", STRENGTHS, z, prompt="zkx, thing", steps=args.steps, cfg=7.0,
                          sampler="Euler a")
        n_ckpt = len(spec.x.values)
        cpu0 = time.process_time()
        result = make_grid(project, spec, generator=gen)
        cpu = time.process_time() - cpu0
        print(f"grid: {n_ckpt} checkpoints × 6 strengths × {args.seeds} seed(s), {args.steps} steps, 64 px tiny SD1, "
              f"{torch.get_num_threads()} thread")
        print(f"lorakit: {result.summary()}; CPU time {cpu:.1f} s (wall > CPU = the machine is shared)")
        if not args.no_naive:
            cells, seconds, cpu_naive = naive(Generator(str(model)), project, spec)
            print(f"naive:   {cells} cells, one call each: {seconds:.1f} s ({cells / seconds:.2f} images/s); "
                  f"CPU time {cpu_naive:.1f} s")
        print(f"grid time: {result.seconds:.1f} s")


if __name__ == "__main__":
    main()
