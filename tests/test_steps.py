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
    suggest_schedule,
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


@pytest.mark.parametrize("kind", ["character", "style"])
def test_the_suggestion_lands_in_the_guides_range_for_10_to_50_images(kind):
    """Fewer images get more repeats; the images seen stay inside the guides' range; about ten checkpoints."""
    from lorakit.train.steps import GUIDANCE

    low, high = GUIDANCE[kind]
    rows = [suggest_schedule(n, kind) for n in (10, 12, 25, 37, 50)]
    for s in rows:
        assert low <= s.images * s.seen <= high * 1.05, s.text()
        assert s.epochs >= 4 and s.steps == s.images * s.repeats * s.epochs
        assert s.settings() == {"data.repeats": s.repeats, "training.max_train_epochs": s.epochs,
                                "saving.save_every_n_epochs": 1}
    assert [s.repeats for s in rows] == sorted((s.repeats for s in rows), reverse=True)
    assert rows[0].repeats > rows[-1].repeats and rows[0].seen > rows[-1].seen


def test_the_suggestion_fits_a_time_budget_and_counts_batches_and_regularization():
    whole = suggest_schedule(20, "character", steps_per_second=1.0)
    assert whole.seconds == whole.steps and not whole.note
    cut = suggest_schedule(20, "character", steps_per_second=1.0, minutes=20)
    assert cut.seconds <= 1200 and cut.epochs < whole.epochs and cut.repeats == whole.repeats
    assert "Cut to fit 20 minutes" in cut.note
    short = suggest_schedule(20, "character", steps_per_second=1.0, minutes=5)
    assert short.epochs == 4 and short.repeats < whole.repeats and short.seconds <= 300, "four checkpoints at least"
    tiny = suggest_schedule(20, "character", steps_per_second=0.01, minutes=1)
    assert (tiny.epochs, tiny.repeats) == (4, 1) and "Even 4 epochs of one repeat take" in tiny.note
    batched = suggest_schedule(20, "character", batch_size=4, reg=True)
    assert batched.seen == whole.seen and batched.steps == -(-20 * whole.repeats * 2 // 4) * whole.epochs
    with pytest.raises(ValueError, match="no training images"):
        suggest_schedule(0)


def test_a_recipe_states_its_effective_learning_rate_and_images_seen():
    from lorakit.config.presets import apply_preset, describe_presets, describe_recipe

    line = describe_recipe(apply_preset("sd21-adafactor"))
    assert "UNet 0.0004 × alpha/rank 1/256 = 1.6e-06" in line
    assert "seen 75 times (repeats 15 × 5 epochs)" in describe_recipe(apply_preset("character"))
    assert describe_presets().count("effective learning rate") == 3
    no_te = TrainConfig().replace({"optimizer.text_encoder_lr": 0.0})
    assert "text encoder not trained" in describe_recipe(no_te)


def test_config_steps_prints_the_recipe_and_the_suggestion(tmp_path, capsys, monkeypatch):
    from lorakit.cli.main import main
    from lorakit.project import Project

    monkeypatch.setenv("LORAKIT_SPEED_FILE", str(tmp_path / "speed.json"))
    project = Project.create(tmp_path / "p")
    _folder(project.dataset_dir / "10_zkx", 12)
    TrainConfig().save(project.config_path)
    assert main(["config", "steps", str(project.root), "--kind", "style", "--minutes", "30"]) == 0
    out = capsys.readouterr().out
    assert "effective learning rate: UNet" in out
    assert f"Suggested for 12 images (style): repeats {suggest_schedule(12, 'style').repeats}" in out
