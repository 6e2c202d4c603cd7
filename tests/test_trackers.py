"""training.log_with: accelerate's trackers get loss, learning rates, validation loss and samples; refusals."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from lorakit.config.kohya import import_kohya
from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError
from lorakit.train import trackers
from lorakit.train.loop import train

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed (pip install 'lorakit[logging]')")
def test_tensorboard_gets_loss_and_lr_of_every_step_validation_and_samples(tiny_project):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    project, cfg = tiny_project
    cfg.training.max_train_epochs = 1  # 8 steps: 4 images x 2 repeats
    cfg.training.log_with = "tensorboard"
    cfg.validation.enabled = True
    cfg.sampling.sample_prompts = ["zkx, thing"]
    cfg.sampling.sample_every_n_epochs, cfg.sampling.sample_steps = 1, 2
    result = train(project, cfg)
    run_dir = project.logs_dir / project.root.name  # accelerate's: <project_dir>/<project name>
    assert list(run_dir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = acc.Tags()
    steps = list(range(1, result.steps + 1))
    assert [e.step for e in acc.Scalars("loss")] == steps
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx(result.losses, rel=1e-6)
    rows = [json.loads(line) for line in (project.logs_dir / "loss.jsonl").read_text().splitlines()]
    unet, te = acc.Scalars("lr/unet"), acc.Scalars("lr/text_encoder")
    assert [e.step for e in unet] == [e.step for e in te] == steps
    assert [e.value for e in unet] == pytest.approx([r["lr"] for r in rows], rel=1e-6)  # the schedule, per step
    assert [e.value for e in te] == pytest.approx([v.value / 2 for v in unet], rel=1e-6)  # 5e-4 vs 1e-3
    logged = acc.Scalars("validation/loss")
    assert len(result.validation) >= 2 and [e.step for e in logged] == [r["step"] for r in result.validation]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in result.validation], rel=1e-6)
    assert "samples/0" in tags["images"] and acc.Images("samples/0")[0].step == result.steps


def test_an_unknown_tracker_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match='not one of "", tensorboard, wandb, trackio. Did you mean .tensorboard.'):
        TrainConfig().replace({"training.log_with": "tensorbord"})


def test_a_missing_tracker_package_is_refused_before_training_with_the_pip_command(tiny_project, monkeypatch):
    project, cfg = tiny_project
    cfg.training.log_with = "wandb"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r'needs the wandb package: pip install "lorakit\[logging\]"'):
        train(project, cfg)
    assert not list(project.output_dir.glob("*.safetensors")) and not (project.logs_dir / "loss.jsonl").exists()


def test_wandb_is_offline_unless_the_user_chose(monkeypatch, tmp_path):
    for key in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(trackers, "check_tracker", lambda name: None)
    assert trackers.accelerator_args("wandb", tmp_path) == {"log_with": "wandb", "project_dir": str(tmp_path)}
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    trackers.accelerator_args("wandb", tmp_path)
    assert os.environ["WANDB_MODE"] == "online"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x")
    trackers.accelerator_args("wandb", tmp_path)
    assert "WANDB_MODE" not in os.environ
    assert trackers.accelerator_args("", tmp_path) == {}


def test_flat_config_takes_every_setting_as_a_plain_value():
    flat = trackers.flat_config(TrainConfig().to_dict())
    assert flat["training/log_with"] == "" and flat["network/rank"] == 16
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())


def test_kohya_use_wandb_and_log_with_map_to_training_log_with():
    assert import_kohya({"use_wandb": True}).config.training.log_with == "wandb"
    assert import_kohya({"use_wandb": "false"}).config.training.log_with == ""
    imported = import_kohya({"log_with": "tensorboard"})
    assert imported.config.training.log_with == "tensorboard"
    assert ("log_with", "training.log_with", "tensorboard") in imported.mapped
    cfg = TrainConfig().replace({"training.log_with": "trackio"})
    from lorakit.config.kohya import export_kohya

    assert import_kohya(export_kohya(cfg)).config.training.log_with == "trackio"  # via the 'lorakit' block


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed (pip install 'lorakit[logging]')")
def test_an_interrupted_run_still_ends_its_trackers(tiny_project, monkeypatch):
    from accelerate import Accelerator

    project, cfg = tiny_project
    cfg.training.log_with = "tensorboard"
    ended: list[int] = []
    real = Accelerator.end_training
    monkeypatch.setattr(Accelerator, "end_training", lambda self: ended.append(1) or real(self))
    result = train(project, cfg, stop_after_steps=3)
    assert result.interrupted and ended == [1]
