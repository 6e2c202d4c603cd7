"""The demo's recipe and data: the TrainConfig tuned on the toy base, and the demo dataset to copy into a project."""

from __future__ import annotations

import shutil
from pathlib import Path

from lorakit.config.schema import TrainConfig
from lorakit.demo.toyworld import NATIVE_SIZE, TRIGGER
from lorakit.models.loading import DATA_DIR, base_model_from_env
from lorakit.project import Project

DEMO_DATA = DATA_DIR / "demo"

DEMO_RECIPE: dict[str, object] = {
    "network.type": "locon",
    "network.rank": 16,
    "network.alpha": 16.0,
    "network.conv_rank": 16,
    "network.conv_alpha": 16.0,
    "optimizer.optimizer": "AdamW",
    "optimizer.unet_lr": 2e-3,
    "optimizer.text_encoder_lr": 1e-3,
    "optimizer.lr_scheduler": "cosine",
    "data.dataset_dir": "dataset",
    "data.reg_dir": "dataset/reg",
    "data.prior_loss_weight": 1.5,
    "data.resolution": NATIVE_SIZE,
    "data.enable_bucket": False,
    "data.min_bucket_reso": NATIVE_SIZE,
    "data.max_bucket_reso": 64,
    "data.bucket_reso_steps": 8,
    "training.max_train_epochs": 16,
    "training.train_batch_size": 8,
    "training.min_snr_gamma": 5.0,
    "training.seed": 42,
    "saving.output_name": "blicket",
    "saving.save_every_n_epochs": 4,
    "saving.save_precision": "float",
    "sampling.sample_prompts": [
        f"a yellow {TRIGGER} on a green background",
        f"a white {TRIGGER} on a blue background",
        "a red circle on a white background",
    ],
    "sampling.sample_every_n_epochs": 4,
    "sampling.sample_sampler": "euler_a",
    "sampling.sample_steps": 25,
    "sampling.sample_cfg": 4.0,
}


def demo_config() -> TrainConfig:
    """The recommended demo recipe as a TrainConfig (see data/demo/README.md)."""
    cfg = TrainConfig()
    for key, value in DEMO_RECIPE.items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
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


def notebook_setup(project_dir: str | Path, base_model: str = "") -> tuple[Project, TrainConfig, bool]:
    """The preamble of notebooks 02-04: (project, config, from_demo).

    The project is $LORAKIT_PROJECT or ``project_dir`` (created if missing); the config is its lorakit.toml, or the
    demo recipe when there is none yet (``from_demo`` True); the base model is $LORAKIT_BASE_MODEL, else
    ``base_model``, else the config's.
    """
    project = Project.from_env(project_dir)
    from_demo = not project.config_path.is_file()
    cfg = demo_config() if from_demo else project.load_config()
    cfg.model.base_model = base_model_from_env(base_model) or cfg.model.base_model
    return project, cfg, from_demo

