"""The guard rails around a run: one run per project, a diverging loss stops it, an early interrupt is kept,
nothing is written outside the project unless asked, and the CLI turns every error into one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import lorakit.train.loop as loop_mod
from lorakit.cli.main import main
from lorakit.errors import LorakitError, TrainingError
from lorakit.train.events import Callback
from lorakit.train.loop import train
from lorakit.train.progress import SpeedRecorder
from lorakit.train.state import STATE_FILE, load_state


def test_a_second_run_on_the_same_project_is_refused_before_it_moves_anything(tiny_project):
    project, cfg = tiny_project
    first = train(project, cfg)
    before = sorted(p.name for p in project.output_dir.rglob("*"))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process on this machine holds the lock, as a run in another notebook would
        project.lock_path.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename,
                                                 "started": "today"}))
        with pytest.raises(TrainingError, match=f"pid {sleeper.pid}.*delete .*lock"):
            train(project, cfg)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in project.output_dir.rglob("*")) == before, "nothing moved aside or written"
    assert first.final.is_file()
    # the holder is gone: its stale lock is taken over with a warning, and the run releases it at the end
    with pytest.warns(UserWarning, match="taking over the lock"):
        train(project, cfg)
    assert not project.lock_path.exists()


def test_the_lock_is_released_when_a_run_fails(tiny_project):
    project, cfg = tiny_project
    cfg.data.dataset_dir = "no-such-folder"
    with pytest.raises(LorakitError):
        train(project, cfg)
    assert not project.lock_path.exists()


def test_a_non_finite_loss_stops_the_run_and_saves_nothing_over_a_good_lora(tiny_project, monkeypatch):
    project, cfg = tiny_project
    good = train(project, cfg).final
    good_bytes = good.read_bytes()
    calls = {"n": 0}
    real = loop_mod.training_target

    def nan_at_step_3(*args):
        calls["n"] += 1
        target = real(*args)
        return target * float("nan") if calls["n"] >= 3 else target

    monkeypatch.setattr(loop_mod, "training_target", nan_at_step_3)
    with pytest.raises(TrainingError, match=r"step 3: the loss is nan.*optimizer\.unet_lr \(now 0\.001\)"):
        train(project, cfg)
    assert not (project.output_dir / good.name).exists() or (project.output_dir / good.name).read_bytes() != b""
    moved = list((project.output_dir / "previous").rglob(good.name))
    assert [p.read_bytes() for p in moved] == [good_bytes], "the earlier good LoRA is kept, unchanged"
    assert not (project.output_dir / good.name).exists(), "no LoRA of the diverged run was written"


def test_an_interrupt_before_the_first_batch_keeps_a_state_to_resume_from(tiny_project):
    project, cfg = tiny_project

    class StopAtOnce(Callback):
        def on_start(self, info):
            raise KeyboardInterrupt

    result = train(project, cfg, callbacks=[StopAtOnce()])
    assert result.interrupted and result.steps == 0
    state = load_state(project.state_dir / STATE_FILE)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (0, 0, 0)
    resumed = train(project, cfg, resume=True)
    assert resumed.steps == 16 and resumed.final.is_file()


def test_training_writes_nothing_outside_the_project_unless_asked(tiny_project, tmp_path, monkeypatch):
    project, cfg = tiny_project
    speed = tmp_path / "elsewhere" / "speed.json"
    monkeypatch.setenv("LORAKIT_SPEED_FILE", str(speed))
    train(project, cfg)
    assert not speed.exists(), "the trainer itself records no speed"
    train(project, cfg, callbacks=[SpeedRecorder(cfg)])
    recorded = json.loads(speed.read_text())
    assert len(recorded) == 1 and next(iter(recorded.values())) > 0


def test_the_cli_prints_one_line_for_a_missing_optimizer_package(tiny_project, capsys):
    project, cfg = tiny_project
    if torch.cuda.is_available():
        pytest.skip("AdamW8bit may be installed with CUDA; the CPU path is what this checks")
    cfg.optimizer.optimizer = "AdamW8bit"
    cfg.save(project.config_path)
    assert main(["train", str(project.root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bitsandbytes" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(LorakitError):  # --debug: the real exception, with its traceback
        main(["--debug", "train", str(project.root)])
