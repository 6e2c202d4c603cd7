"""The whole path on the embedded demo, offline: check, dataset, config, train, grid.

    lorakit demo demo-project        # what the five notebooks do, with their defaults
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lorakit.config import TrainConfig
from lorakit.models import DATA_DIR
from lorakit.project import Project

DEMO_DATA = DATA_DIR / "demo"


def demo_config() -> TrainConfig:
    """The demo's recipe (tuned for the toy base model); a small default when the toy world is absent."""
    try:
        from lorakit.toyworld import demo_config as toy_config

        cfg = toy_config()
    except ImportError:
        cfg = TrainConfig()
        cfg.data.resolution, cfg.data.enable_bucket = 64, False
    cfg.data.dataset_dir = "dataset"
    cfg.data.reg_dir = "dataset/reg" if (DEMO_DATA / "reg").is_dir() else ""
    return cfg.validate()


def copy_demo_dataset(project: Project) -> list[Path]:
    """Copy data/demo's images and captions into the project (existing files are kept, never overwritten)."""
    copied = []
    for src_root, dst_root in ((DEMO_DATA / "dataset", project.dataset_dir), (DEMO_DATA / "reg", project.reg_dir)):
        if not src_root.is_dir():
            continue
        for src in sorted(src_root.rglob("*")):
            dst = dst_root / src.relative_to(src_root)
            if src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
                copied.append(dst)
    return copied


def demo_grid_spec(project: Project, cfg: TrainConfig):
    """Checkpoints × 4 strengths (1.25 overcooks, 0.5 barely acts) on the demo's first sample prompt."""
    from lorakit.grid import GridSpec, parse_axis

    prompt = cfg.sampling.sample_prompts[0].split(" --")[0] if cfg.sampling.sample_prompts else "a photo"
    return GridSpec(prompt=prompt, x=parse_axis("checkpoint", project), y=parse_axis("strength=1.25,1.0,0.75,0.5"),
                    steps=cfg.sampling.sample_steps, cfg=cfg.sampling.sample_cfg, seed=1,
                    sampler=cfg.sampling.sample_sampler)


def run_demo(root: str | Path = "demo-project", epochs: int | None = None, verbose: bool = True) -> dict:
    """Run the five steps; returns the paths of the project, the last LoRA and the grid."""
    from lorakit.doctor import run_checks
    from lorakit.grid import make_grid
    from lorakit.progress import TqdmCallback
    from lorakit.train import train

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
    say(f"      {result.steps} steps in {result.seconds:.0f}s, {len(result.checkpoints)} checkpoints")
    say("[4/4] X/Y grid: checkpoints × strengths")
    grid = make_grid(project, demo_grid_spec(project, cfg), base_model=cfg.model.base_model)
    return {"project": project.root, "lora": result.final, "grid": grid.paths[0], "train": result, "grid_result": grid}
