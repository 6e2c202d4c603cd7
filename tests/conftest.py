"""Shared fixtures: tiny models and datasets made on the spot, one torch thread, no network."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)  # on 2 cores one thread is 2-4x faster for tiny models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_sd1(tmp_path_factory) -> Path:
    from lorakit.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd1", "sd1", seed=0)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from lorakit.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sdxl", "sdxl", seed=0)


@pytest.fixture(scope="session")
def tiny_sd2v(tmp_path_factory) -> Path:
    from lorakit.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd2v", "sd2-v", seed=0)


def write_images(folder: Path, n: int, size=(64, 64), seed: int = 0, caption: str = "zkx, thing") -> list[Path]:
    """n random images with captions in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img{i:02d}.png"
        Image.fromarray(arr).save(path)
        path.with_suffix(".txt").write_text(f"{caption} {i}", encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture()
def tiny_project(tmp_path, tiny_sd1):
    """A project with 4 images in dataset/2_zkx and a config for the tiny SD1 model (2 epochs)."""
    from lorakit.config.schema import TrainConfig
    from lorakit.project import Project

    project = Project.create(tmp_path / "proj")
    write_images(project.dataset_dir / "2_zkx", 4)
    cfg = TrainConfig()
    cfg.model.base_model = str(tiny_sd1)
    cfg.data.resolution = 64
    cfg.data.min_bucket_reso, cfg.data.max_bucket_reso, cfg.data.bucket_reso_steps = 32, 128, 32
    cfg.network.rank, cfg.network.alpha = 4, 2.0  # alpha != rank: the scale must come out right
    cfg.training.max_train_epochs = 2
    cfg.optimizer.unet_lr = 1e-3
    cfg.optimizer.text_encoder_lr = 5e-4
    cfg.saving.output_name = "zkx"
    cfg.saving.save_precision = "float"
    cfg.sampling.sample_every_n_epochs = 0
    cfg.save(project.config_path)
    return project, cfg


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu need CUDA: skipped (with the reason) on CPU-only machines; the CPU path has its own tests."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _own_speed_file(tmp_path_factory, monkeypatch):
    """Each test has its own file of measured speeds: runs in one test never change another's suggestions, and no
    test writes the user's ~/.cache/lorakit/speed.json."""
    monkeypatch.setenv("LORAKIT_SPEED_FILE", str(tmp_path_factory.mktemp("speeds") / "speed.json"))


@pytest.fixture(autouse=True, scope="module")
def _fresh_model_cache():
    """Each test module starts with lorakit's model cache empty: a Generator leaves its LoRA adapters on the cached
    pipeline it shares (by design, to reuse them), which another module's exact-weight checks must not see."""
    from lorakit.models.loading import clear_cache

    clear_cache()
    yield
    clear_cache()
