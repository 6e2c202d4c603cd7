"""Grid speed: 5 checkpoints × 6 strengths, lorakit's grid against a plain diffusers pipeline loop.

    OMP_NUM_THREADS=1 python bench/grid_speed.py                  # 20 steps, Euler a, 64 px tiny SD1
    OMP_NUM_THREADS=1 python bench/grid_speed.py --model toy      # the demo's toy base (data/toy-base, 32 px images)
    OMP_NUM_THREADS=1 python bench/grid_speed.py --steps 4 --seeds 4

Trains a 5-epoch LoRA on 4 random images first (a checkpoint per epoch; not timed), loads the model and warms
up (not timed), then times the grid as lorakit draws it (cells batched, strength 0 drawn once) against the
naive way (one pipeline call per cell, nothing reused) and against what a diffusers user writes by hand: one
``StableDiffusionPipeline``, each checkpoint loaded once with ``load_lora_weights`` as its own adapter, then one
pipeline call per cell with ``set_adapters`` at the cell's strength (``disable_lora`` for strength 0) and the same
seeds. The last line is ``ratio vs diffusers loop: <x.xx>`` (lorakit images/s over the loop's).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from real_size import random_project  # noqa: E402  (bench/, the script's own folder)

from lorakit.config.schema import TrainConfig  # noqa: E402
from lorakit.evaluate.generate import Generator  # noqa: E402
from lorakit.evaluate.grid import make_grid  # noqa: E402
from lorakit.evaluate.grid_spec import build_spec, plan  # noqa: E402
from lorakit.models.loading import quiet_loading  # noqa: E402
from lorakit.models.tiny import save_tiny_pipeline  # noqa: E402
from lorakit.project import Project  # noqa: E402
from lorakit.train.loop import train  # noqa: E402

STRENGTHS = "strength=1,0.8,0.6,0.4,0.2,0"


def make_project(root: Path, model: Path, epochs: int = 5, size: int = 64) -> Project:
    """A project with 4 random images and a LoRA trained for ``epochs`` epochs, one checkpoint each."""
    project = random_project(root, size)
    cfg = TrainConfig()
    cfg.model.base_model = str(model)
    cfg.data.resolution, cfg.data.enable_bucket = size, False
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


def diffusers_loop(model: str, cells: list) -> tuple[int, float, tuple[int, int]]:
    """The same cells drawn with a plain diffusers pipeline loop: (cells, wall s, image size)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe("warm up", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    adapters: dict[str, str] = {}
    t0 = time.perf_counter()
    for c in cells:
        if c.checkpoint is None or c.strength == 0:
            if adapters:
                pipe.disable_lora()
        else:
            if c.checkpoint not in adapters:
                adapters[c.checkpoint] = f"c{len(adapters)}"
                pipe.load_lora_weights(c.checkpoint, adapter_name=adapters[c.checkpoint])
            pipe.enable_lora()
            pipe.set_adapters([adapters[c.checkpoint]], [c.strength])
        image = pipe(c.prompt, negative_prompt=c.negative_prompt or None, num_inference_steps=c.steps,
                     guidance_scale=c.cfg, generator=torch.Generator().manual_seed(c.seed)).images[0]
    return len(cells), time.perf_counter() - t0, image.size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell (a Z axis); >1 shows batching")
    parser.add_argument("--no-naive", action="store_true", help="skip the one-call-per-cell comparison")
    parser.add_argument("--model", choices=["tiny", "toy"], default="tiny",
                        help="tiny: random SD 1.5-shaped model at 64 px; toy: the demo's base (data/toy-base)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "toy":
            model, size = Path(__file__).resolve().parents[1] / "data" / "toy-base", 128
        else:
            model, size = save_tiny_pipeline(Path(tmp) / "tiny-sd1", "sd1"), 64
        project = make_project(Path(tmp) / "proj", model, size=size)
        gen = Generator(str(model))
        gen.generate("warm up", seed=0, steps=2)
        z = f"seed={','.join(str(s) for s in range(1, args.seeds + 1))}" if args.seeds > 1 else ""
        spec = build_spec(project, "checkpoint", STRENGTHS, z, prompt="zkx, thing", steps=args.steps, cfg=7.0,
                          sampler="Euler a")
        n_ckpt = len(spec.x.values)
        cpu0 = time.process_time()
        result = make_grid(project, spec, generator=gen)
        cpu = time.process_time() - cpu0
        print(f"grid: {n_ckpt} checkpoints × 6 strengths × {args.seeds} seed(s), {args.steps} steps, {args.model} model, "
              f"{torch.get_num_threads()} thread")
        print(f"lorakit: {result.summary()}; CPU time {cpu:.1f} s (wall > CPU = the machine is shared)")
        if not args.no_naive:
            cells, seconds, cpu_naive = naive(Generator(str(model)), project, spec)
            print(f"naive:   {cells} cells, one call each: {seconds:.1f} s ({cells / seconds:.2f} images/s); "
                  f"CPU time {cpu_naive:.1f} s")
        cells = [c for z in plan(spec, project) for row in z for c in row]
        with quiet_loading():  # transformers 5 prints a key report for every text-encoder adapter loaded
            n, seconds, image_size = diffusers_loop(str(model), cells)
        print(f"diffusers loop: {n} cells, one pipeline call each: {seconds:.1f} s ({n / seconds:.2f} images/s), "
              f"{image_size[0]}×{image_size[1]} px")
        print(f"grid time: {result.seconds:.1f} s")
        print(f"ratio vs diffusers loop: {result.images / result.seconds / (n / seconds):.2f}")


if __name__ == "__main__":
    main()
