"""The suggested batch size: its three limits (steps, GPU memory, measured speed), the learning rate that follows
it, the speed probe that measures it, and how notebook 02 and `lorakit config` show it."""

from __future__ import annotations

import json

import pytest
import torch

from lorakit.config.schema import TrainConfig
from lorakit.train.batch_size import (
    MIN_STEPS,
    SPEED_MARGIN,
    BatchChoice,
    largest_fitting_batch,
    suggest_batch,
)
from lorakit.train.steps import (
    PROBE,
    DatasetCount,
    known_speed,
    measured_batch_speeds,
    record_speed,
    suggest_schedule,
    suggest_settings,
)


def _tiny(model) -> TrainConfig:
    return TrainConfig().replace({"model.base_model": str(model), "data.resolution": 64, "data.enable_bucket": False,
                                  "network.rank": 4})


# ---- the rule ----------------------------------------------------------------------------------------------
def test_without_measured_speeds_the_batch_is_kept_within_the_limits():
    kept = suggest_batch(images=20, seen=3600, current=2)
    assert kept.batch_size == 2 and kept.lr_scale == 1.0
    assert "no speeds measured at two batch sizes" in kept.text() and "GPU memory not checked" in kept.text()
    # a batch that would leave fewer than MIN_STEPS updates comes down to the largest one that keeps them
    lowered = suggest_batch(images=20, seen=3600, current=32)
    assert lowered.batch_size == 12 and MIN_STEPS <= 3600 // 12 and MIN_STEPS > 3600 // 16
    assert f"at least {MIN_STEPS} steps (3600 samples in the run ÷ 12 = 300)" in lowered.text()
    # never more than the dataset holds: a batch with one image twice learns nothing from the copy
    assert suggest_batch(images=3, seen=100_000, current=8).batch_size == 3
    with pytest.raises(ValueError, match="no training images"):
        suggest_batch(images=0, seen=10)


def test_measured_speeds_choose_the_smallest_batch_near_the_fastest():
    # images/s: batch 1 → 2.0, 2 → 3.8, 4 → 4.8, 8 → 4.9: batch 4 is within 10% of batch 8 and keeps twice the steps
    speeds = {1: 2.0, 2: 1.9, 4: 1.2, 8: 0.6125}
    choice = suggest_batch(images=40, seen=4000, current=1, speeds=speeds)
    assert choice.batch_size == 4 and SPEED_MARGIN * 4.9 <= 4.8
    assert "batch 4 is within 10% of the fastest (batch 8)" in choice.text()
    # a CPU where a larger batch only costs more: batch 1 stays
    flat = suggest_batch(images=40, seen=4000, current=1, speeds={1: 4.0, 2: 1.9, 4: 0.95})
    assert flat.batch_size == 1 and "batch 1 is the fastest" in flat.text()
    # the fastest measured batch is out of the limits: the best allowed one is taken
    capped = suggest_batch(images=40, seen=1200, current=1, speeds=speeds)  # 1200 / 300 → at most 4
    assert capped.batch_size == 4 and "batch 8" not in capped.text().split("measured")[1]


def test_the_gpu_memory_caps_the_batch_whatever_the_speed():
    speeds = {1: 2.0, 2: 1.9, 4: 1.8, 8: 1.7}  # ever faster in images/s
    choice = suggest_batch(images=40, seen=8000, current=1, speeds=speeds, max_fitting=2, memory_source="a 6 GB card")
    assert choice.batch_size == 2 and "at most 2 fits the GPU (a 6 GB card)" in choice.text()
    none = suggest_batch(images=40, seen=8000, current=4, max_fitting=0, memory_source="a 4 GB card")
    assert none.batch_size == 1 and "even batch 1 does not fit" in none.text()


@pytest.mark.parametrize(("optimizer", "scale"), [("AdamW", 2.0), ("AdamW8bit", 2.0), ("SGD", 4.0), ("Prodigy", 1.0)])
def test_the_learning_rate_follows_the_batch(optimizer, scale):
    cfg = TrainConfig().replace({"optimizer.optimizer": optimizer, "optimizer.unet_lr": 1e-4,
                                 "optimizer.text_encoder_lr": 5e-5})
    choice = BatchChoice(4, 1, optimizer)
    assert choice.lr_scale == pytest.approx(scale)
    changes = choice.settings(cfg)
    assert changes["training.train_batch_size"] == 4
    if scale == 1.0:
        assert "optimizer.unet_lr" not in changes
    else:
        assert changes["optimizer.unet_lr"] == pytest.approx(1e-4 * scale)
        assert changes["optimizer.text_encoder_lr"] == pytest.approx(5e-5 * scale)
        assert f"UNet 0.0001 → {1e-4 * scale:g}" in choice.text(cfg)
    frozen_te = TrainConfig().replace({"optimizer.text_encoder_lr": 0.0})
    assert "optimizer.text_encoder_lr" not in BatchChoice(4, 1).settings(frozen_te)  # 0 stays 0: not trained


def test_the_largest_fitting_batch_bisects_the_candidates():
    calls = []

    def estimate(cfg):  # 1 GB plus 0.5 GB per image
        calls.append(cfg.training.train_batch_size)
        return int((1 + 0.5 * cfg.training.train_batch_size) * 2**30)

    assert largest_fitting_batch(TrainConfig(), int(4.2 * 2**30), estimate) == 6  # 4.0 GB; batch 8 needs 5
    assert len(calls) <= 4  # log2 of the ten candidates
    assert largest_fitting_batch(TrainConfig(), int(1.2 * 2**30), estimate) == 0
    assert largest_fitting_batch(TrainConfig(), 100 * 2**30, estimate) == 32


def test_the_meta_device_estimate_gives_the_batch_a_card_holds(tiny_sd1):
    from lorakit.train.memory import estimate_memory

    cfg = _tiny(tiny_sd1)
    at4 = estimate_memory(cfg.replace({"training.train_batch_size": 4})).total
    at6 = estimate_memory(cfg.replace({"training.train_batch_size": 6})).total
    assert at6 > at4  # memory grows with the batch: what the bisection relies on
    assert largest_fitting_batch(cfg, at4) == 4
    assert largest_fitting_batch(cfg, at6 - 1) == 4


# ---- speeds: the probe's kept apart from the runs' --------------------------------------------------------
def test_probe_speeds_are_kept_apart_and_a_run_wins(tmp_path):
    path = tmp_path / "speed.json"
    for b, sps in {1: 4.0, 2: 3.0, 4: 2.0}.items():
        record_speed(sps, family="sd1", resolution=512, batch_size=b, source=PROBE, path=path)
    assert measured_batch_speeds(family="sd1", resolution=512, path=path) == {1: 4.0, 2: 3.0, 4: 2.0}
    assert known_speed(family="sd1", resolution=512, batch_size=2, path=path) == 3.0  # no run yet: the probe's
    record_speed(2.5, family="sd1", resolution=512, batch_size=2, path=path)  # a training run's own figure
    assert known_speed(family="sd1", resolution=512, batch_size=2, path=path) == 2.5
    # the probe's batch 4, calibrated by the setting both measured (the run does 2.5 / 3.0 of the probe's steps/s)
    assert known_speed(family="sd1", resolution=512, batch_size=4, path=path) == pytest.approx(2.0 * 2.5 / 3.0)
    assert known_speed(family="sd1", resolution=512, batch_size=8, path=path) == pytest.approx(2.5 * 2 / 8)  # scaled
    # the batch rule compares one method with itself: the probe's set, not a mix with the run's figure
    assert measured_batch_speeds(family="sd1", resolution=512, path=path)[2] == 3.0
    assert measured_batch_speeds(family="sd1", resolution=768, path=path) == {}
    assert any(k.endswith(f"|{PROBE}") for k in json.loads(path.read_text()))


def test_the_probe_times_real_steps_and_leaves_the_cached_base_clean(tiny_sd1, tmp_path):
    from lorakit.models.loading import load_base
    from lorakit.train.speed_probe import measure_batch_speeds

    cfg = _tiny(tiny_sd1)
    base = load_base(str(tiny_sd1))
    assert load_base(cfg.model.base_model, family=cfg.model.family, prediction_type=cfg.model.prediction_type) is base
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    path = tmp_path / "speed.json"
    probe = measure_batch_speeds(cfg, (1, 2), steps=2, min_seconds=0, path=path)
    assert set(probe.steps_per_second) == {1, 2} and all(v > 0 for v in probe.steps_per_second.values())
    assert probe.images_per_second[2] == pytest.approx(2 * probe.steps_per_second[2])
    assert probe.out_of_memory == [] and probe.max_fitting is None
    assert measured_batch_speeds(family=cfg.model.family, resolution=64, path=path) == probe.steps_per_second
    after = base.unet.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)  # adapter gone
    assert "batch 1:" in probe.text() and "images/s" in probe.text()


def test_the_probe_stops_at_the_first_batch_out_of_memory(tiny_sd1, tmp_path, monkeypatch):
    from lorakit.train import memory
    from lorakit.train.speed_probe import measure_batch_speeds

    real_step = memory._step
    tried = []

    def step(base, cfg, *args, **kwargs):
        tried.append(cfg.training.train_batch_size)
        if cfg.training.train_batch_size >= 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_step(base, cfg, *args, **kwargs)

    monkeypatch.setattr(memory, "_step", step)
    cfg = _tiny(tiny_sd1)
    probe = measure_batch_speeds(cfg, (1, 2, 4, 8), steps=1, min_seconds=0, path=tmp_path / "speed.json")
    assert probe.out_of_memory == [4] and 8 not in tried and probe.max_fitting == 2
    assert "batch 4: out of GPU memory" in probe.text()


def test_bad_probe_arguments_say_what_to_give(tiny_sd1):
    from lorakit.train.speed_probe import measure_batch_speeds

    with pytest.raises(ValueError, match="batch sizes >= 1"):
        measure_batch_speeds(TrainConfig(), (0, 2))


# ---- the whole suggestion -------------------------------------------------------------------------------------
def test_suggest_settings_fits_the_schedule_to_the_chosen_batch(tmp_path):
    path = tmp_path / "speed.json"
    cfg = TrainConfig().replace({"training.train_batch_size": 1, "optimizer.unet_lr": 1e-4,
                                 "optimizer.text_encoder_lr": 5e-5})
    for b, sps in {1: 2.0, 2: 1.9, 4: 1.6}.items():  # images/s 2.0, 3.8, 6.4: batch 4
        record_speed(sps, family=cfg.model.family, resolution=cfg.data.resolution, batch_size=b, source=PROBE,
                     path=path)
    count = DatasetCount([("10_zkx", 20, 10)])
    s = suggest_settings(cfg, count, "character", path=path, vram_bytes=None)
    assert s.batch is not None and s.batch_size == s.batch.batch_size == 4
    whole = suggest_schedule(20, "character", 4)
    assert (s.repeats, s.epochs, s.steps) == (whole.repeats, whole.epochs, whole.steps)
    assert s.seconds == pytest.approx(s.steps / 1.6)  # at the speed measured for batch 4
    changes = s.settings(cfg)
    assert changes["training.train_batch_size"] == 4 and changes["optimizer.unet_lr"] == pytest.approx(2e-4)
    assert "Batch 4 (now 1)" in s.text(cfg) and "× 2.00" in s.text(cfg)
    # a time budget is then fitted at that batch's speed
    short = suggest_settings(cfg, count, "character", minutes=2, path=path)
    assert short.batch_size == 4 and short.steps <= whole.steps and "Cut to fit 2 minutes" in short.note


def test_suggest_settings_checks_a_named_card(tiny_sd1, tmp_path):
    from lorakit.train.memory import estimate_memory

    cfg = _tiny(tiny_sd1).replace({"training.train_batch_size": 8})
    count = DatasetCount([("10_zkx", 40, 10)], reg_images=0)
    holds2 = estimate_memory(cfg.replace({"training.train_batch_size": 2})).total
    s = suggest_settings(cfg, count, "style", vram_bytes=holds2, path=tmp_path / "none.json")
    assert s.batch_size == 2 and "fits the GPU (the estimate for a" in s.text(cfg)


def test_config_speed_and_steps_at_the_command_line(tiny_project, capsys):
    from lorakit.cli.main import main

    project, cfg = tiny_project
    assert main(["config", "speed", str(project.root), "--batches", "1,2", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "batch 1:" in out and "batch 2:" in out and "recorded" in out
    assert set(measured_batch_speeds(family=cfg.model.family, resolution=cfg.data.resolution)) == {1, 2}
    assert main(["config", "steps", str(project.root), "--vram", "0.0001"]) == 0
    out = capsys.readouterr().out
    assert "Suggested for 4 images" in out and "even batch 1 does not fit the GPU (the estimate for a" in out
    assert main(["config", "speed", str(project.root), "--batches", "one,two"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --batches 'one,two': give batch sizes as numbers") and "Traceback" not in err


def test_a_failed_memory_estimate_leaves_the_suggestion_and_says_so(tmp_path, monkeypatch):
    from lorakit.errors import ConfigError
    from lorakit.train import batch_size

    def fail(*args, **kwargs):
        raise ConfigError("optimizer 'Lion' needs lion-pytorch: pip install lion-pytorch")

    monkeypatch.setattr(batch_size, "largest_fitting_batch", fail)
    s = suggest_settings(TrainConfig(), DatasetCount([("10_zkx", 20, 10)]), vram_bytes=8 * 2**30,
                         path=tmp_path / "speed.json")
    assert s.batch_size == 1 and "GPU memory not checked: the estimate failed (optimizer 'Lion' needs" in s.text()


def test_a_time_budget_that_cuts_the_run_takes_the_fastest_batch(tmp_path):
    path = tmp_path / "speed.json"
    cfg = TrainConfig()
    for b, sps in {1: 2.0, 2: 1.9, 4: 1.0}.items():  # images/s 2.0, 3.8, 4.0
        record_speed(sps, family=cfg.model.family, resolution=cfg.data.resolution, batch_size=b, source=PROBE,
                     path=path)
    count = DatasetCount([("10_zkx", 20, 10)])
    assert suggest_settings(cfg, count, path=path).batch_size == 2  # within 10% of batch 4, twice the steps
    cut = suggest_settings(cfg, count, minutes=3, path=path)
    assert cut.note.startswith("Cut to fit 3 minutes") and cut.batch_size == 4
    assert "the time budget cuts the run" in cut.text()
    at2 = suggest_schedule(20, "character", 2, steps_per_second=1.9, minutes=3)
    assert cut.seen > at2.seen  # each image seen more often in the same minutes


def test_a_run_recorded_without_a_resolution_still_calibrates_the_probe(tmp_path):
    path = tmp_path / "speed.json"
    record_speed(2.0, family="sd1", resolution=0, batch_size=1, path=path)  # record_speed's defaults
    record_speed(4.0, family="sd1", resolution=0, batch_size=1, source=PROBE, path=path)
    record_speed(3.0, family="sd1", resolution=512, batch_size=2, source=PROBE, path=path)
    assert known_speed(family="sd1", resolution=512, batch_size=2, path=path) == pytest.approx(3.0 * 2.0 / 4.0)
