"""Steps calculator and measured speed: the numbers the trainer will use, the table, the guidance."""

from __future__ import annotations

import json

import pytest

from lorakit.config.schema import TrainConfig
from lorakit.train.steps import (
    DatasetCount,
    count_dataset,
    count_project,
    format_duration,
    known_speed,
    plan_steps,
    record_config_speed,
    record_speed,
    steps_guidance,
)


def _folder(path, n, ext=".png"):
    path.mkdir(parents=True)
    for i in range(n):
        (path / f"{i:03d}{ext}").write_bytes(b"")
        (path / f"{i:03d}.txt").write_text("caption", encoding="utf-8")


def test_count_dataset_reads_the_kohya_layout(tmp_path):
    _folder(tmp_path / "dataset" / "15_fr3dd", 25)
    _folder(tmp_path / "dataset" / "3_extra", 4, ".JPG")
    _folder(tmp_path / "dataset" / "notes", 5)  # not <repeats>_<token>: skipped, as the trainer does
    _folder(tmp_path / "dataset" / "reg" / "1_woman", 30)
    count = count_dataset(tmp_path / "dataset", reg_dir=tmp_path / "dataset" / "reg")
    assert (count.images, count.repeated, count.reg_images) == (29, 25 * 15 + 4 * 3, 30)
    assert count_dataset(tmp_path / "dataset", repeats=2).repeated == 58  # data.repeats overrides the names
    cfg = TrainConfig().replace({"data.reg_dir": "dataset/reg"})
    assert count_project(cfg, tmp_path).reg_images == 30


def test_plan_counts_like_the_trainer():
    cfg = TrainConfig().replace({"training.train_batch_size": 2, "optimizer.gradient_accumulation_steps": 2,
                                 "training.max_train_epochs": 4, "saving.save_every_n_epochs": 3,
                                 "sampling.sample_prompts": ["a"], "sampling.sample_every_n_epochs": 2})
    plan = plan_steps(cfg, DatasetCount([("10_x", 10, 10)], reg_images=5), steps_per_second=2.0)
    assert plan.samples_per_epoch == 200  # regularization images double an epoch, as in kohya
    assert plan.steps_per_epoch == 50 and plan.total_steps == 200
    assert [r.steps for r in plan.rows] == [50, 100, 150, 200]
    assert [r.checkpoint for r in plan.rows] == [False, False, True, True]  # every 3rd, and the last
    assert [r.sample for r in plan.rows] == [False, True, False, True]
    assert plan.rows[-1].seconds == 100.0 and plan.seconds == 100.0
    assert "200 steps in all" in plan.summary() and "1m40s" in plan.table()


def test_max_train_steps_caps_the_plan():
    cfg = TrainConfig().replace({"training.max_train_steps": 120, "training.max_train_epochs": 10})
    plan = plan_steps(cfg, DatasetCount([("10_x", 5, 10)]), steps_per_second=None)
    assert (plan.total_steps, len(plan.rows), plan.rows[-1].steps) == (120, 3, 120)


def test_guidance_suggests_epochs():
    assert "too few" in steps_guidance(750, 150, "character") and "12 epochs" in steps_guidance(750, 150, "character")
    assert "too many" in steps_guidance(9000, 900, "style")
    assert "No training images" in steps_guidance(0, 0, "character")


def test_speed_is_remembered_per_setting(tmp_path, monkeypatch):
    path = tmp_path / "speed.json"
    assert known_speed(family="sd1", resolution=512, path=path) is None
    record_speed(2.0, family="sd1", resolution=512, batch_size=1, path=path)
    assert known_speed(family="sd1", resolution=512, batch_size=1, path=path) == 2.0
    assert known_speed(family="sd1", resolution=1024, batch_size=1, path=path) == pytest.approx(0.5)  # 4x pixels
    assert known_speed(family="sdxl", resolution=512, path=path) is None  # another model: no guess
    assert len(json.loads(path.read_text(encoding="utf-8"))) == 1
    with pytest.raises(ValueError):
        record_speed(0.0, path=path)
    monkeypatch.setenv("LORAKIT_SPEED_FILE", str(path))
    cfg = TrainConfig().replace({"model.family": "sd1"})
    assert plan_steps(cfg, DatasetCount([("1_x", 10, 1)])).steps_per_second == 2.0


def test_format_duration():
    assert [format_duration(s) for s in (None, 42, 600, 3 * 3600 + 300)] == ["", "42s", "10m00s", "3h05m"]


def test_a_speed_recorded_for_a_config_is_found_by_its_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_SPEED_FILE", str(tmp_path / "speed.json"))
    cfg = TrainConfig().replace({"data.resolution": 768, "training.train_batch_size": 2})
    record_config_speed(cfg, 1.25)
    assert plan_steps(cfg, DatasetCount([("5_x", 10, 5)])).steps_per_second == 1.25
    assert plan_steps(TrainConfig(), DatasetCount([("5_x", 10, 5)])).steps_per_second != 1.25
