"""The whole path on the embedded demo, offline: check, dataset, config, train, grid.

    lorakit demo demo-project        # what the five notebooks do, with their defaults
"""

from __future__ import annotations

from pathlib import Path

from lorakit.config.sample_prompts import parse_sample_prompt
from lorakit.config.schema import TrainConfig
from lorakit.demo.recipe import copy_demo_dataset, demo_config
from lorakit.doctor import run_checks
from lorakit.evaluate.grid import make_grid
from lorakit.evaluate.grid_spec import GridSpec, parse_axis
from lorakit.project import Project
from lorakit.train.loop import train
from lorakit.train.outputs import interrupted_files, interrupted_message, resume_command
from lorakit.train.progress import TqdmCallback


def demo_grid_spec(project: Project, cfg: TrainConfig):
    """Checkpoints × 4 strengths (1.25 overcooks, 0.5 barely acts) on the demo's first sample prompt."""

    prompt = parse_sample_prompt(cfg.sampling.sample_prompts[0]).prompt if cfg.sampling.sample_prompts else "a photo"
    return GridSpec(prompt=prompt, x=parse_axis("checkpoint", project), y=parse_axis("strength=1.25,1.0,0.75,0.5"),
                    steps=cfg.sampling.sample_steps, cfg=cfg.sampling.sample_cfg, seed=1,
                    sampler=cfg.sampling.sample_sampler)


def run_demo(root: str | Path = "demo-project", epochs: int | None = None, verbose: bool = True) -> dict:
    """Run the five steps; returns the paths of the project, the last LoRA and the grid (None, with
    ``interrupted`` True, when training was interrupted: the grid step is skipped)."""

    say = print if verbose else (lambda *a, **k: None)
    project = Project.create(root)
    say(f"[0/4] setup check ({project.root})")
    for row in run_checks("", project.root):
        if row.status in ("warn", "fail"):
            say(f"      {row.status}: {row.check}: {row.value}")
    say("[1/4] dataset: copying the demo images and captions")
    copy_demo_dataset(project)
    say("[2/4] hyperparameters: writing lorakit.toml")
    cfg = demo_config()
    if epochs:
        cfg.training.max_train_epochs = epochs
    cfg.save(project.config_path)
    say("[3/4] training")
    result = train(project, cfg, callbacks=[TqdmCallback()] if verbose else [])
    if result.interrupted:  # stop here: a grid of a half-trained run (or of none) is not what was asked for
        name = cfg.saving.output_name
        say(interrupted_message(project, name, result, resume_command(project.root)))
        say(f"  then the grid:        lorakit grid {project.root}")
        tried = interrupted_files(project.output_dir, name)
        return {"project": project.root, "lora": tried[0] if tried else result.final, "grid": None, "train": result,
                "grid_result": None, "interrupted": True}
    say(f"      {result.steps} steps in {result.seconds:.0f}s, {len(result.checkpoints)} checkpoints")
    say("[4/4] X/Y grid: checkpoints × strengths")
    grid = make_grid(project, demo_grid_spec(project, cfg), base_model=cfg.model.base_model)
    return {"project": project.root, "lora": result.final, "grid": grid.paths[0], "train": result, "grid_result": grid,
            "interrupted": False}
