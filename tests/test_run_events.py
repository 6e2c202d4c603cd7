"""What a person watching a run sees and keeps: samples, events, atomic files, Ctrl-C."""

from __future__ import annotations

import pytest
import torch

from lorakit.config.sample_prompts import parse_sample_prompt
from lorakit.files import atomic_write_bytes
from lorakit.lora import file as checkpoint
from lorakit.train.loop import Callback, train
from lorakit.train.progress import smooth, summary
from lorakit.train.state import STATE_FILE, load_state


def test_kohya_sample_prompt_options():
    sp = parse_sample_prompt("photo of fr3dd!e, red hair --n blurry, lowres --w 512 --h 768 --s 28 --l 6.5 --d 42")
    assert sp.prompt == "photo of fr3dd!e, red hair" and sp.negative == "blurry, lowres"
    assert (sp.width, sp.height, sp.steps, sp.cfg, sp.seed) == (512, 768, 28, 6.5, 42)
    assert parse_sample_prompt("just a prompt").steps is None
    with pytest.raises(ValueError, match="--s 'many'"):
        parse_sample_prompt("x --s many")


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_start(self, info):
        self.events.append(("start", info["total_steps"]))

    def on_step(self, step, loss, lr):
        self.events.append(("step", step))

    def on_epoch_end(self, epoch, mean_loss):
        self.events.append(("epoch", epoch))

    def on_checkpoint(self, path):
        self.events.append(("checkpoint", path.name))

    def on_samples(self, epoch, step, paths):
        self.events.append(("samples", epoch, len(paths)))


def test_events_samples_and_step_checkpoints(tiny_project):
    project, cfg = tiny_project
    cfg.sampling.sample_prompts = ["zkx, thing --s 2 --d 5", "zkx --w 32 --h 64 --s 2"]
    cfg.sampling.sample_every_n_epochs = 1
    cfg.saving.save_every_n_steps = 5
    rec = Recorder()
    result = train(project, cfg, callbacks=[rec])
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and rec.events[0][1] == 16
    assert [e for e in rec.events if e[0] == "samples"] == [("samples", 1, 2), ("samples", 2, 2)]
    assert ("checkpoint", "zkx-step00000005.safetensors") in rec.events  # kohya's step names: no clash with epochs
    assert ("checkpoint", "zkx-step00000010.safetensors") in rec.events
    assert ("checkpoint", "zkx-000001.safetensors") in rec.events  # epoch 1
    # in the order training wrote them: step 5, epoch 1 (step 8), steps 10 and 15, then the last
    assert [p.name for p in project.checkpoints()] == [
        "zkx-step00000005.safetensors", "zkx-000001.safetensors", "zkx-step00000010.safetensors",
        "zkx-step00000015.safetensors", "zkx.safetensors"]
    assert rec.events[-1] == ("checkpoint", "zkx.safetensors") or ("checkpoint", "zkx.safetensors") in rec.events
    assert len(result.samples) == 4 and all(p.is_file() for p in result.samples)
    assert (project.samples_dir / "000002").is_dir()
    from PIL import Image

    with Image.open(result.samples[1]) as im:
        assert im.size == (32, 64)  # --w 32 --h 64


class CtrlC(Callback):
    def on_step(self, step, loss, lr):
        if step == 3:
            raise KeyboardInterrupt


def test_keyboard_interrupt_keeps_state(tiny_project):
    project, cfg = tiny_project
    result = train(project, cfg, callbacks=[CtrlC()])
    assert result.interrupted and result.steps == 3
    state = load_state(project.state_dir / STATE_FILE)
    assert state["step"] == 3 and state["batch_in_epoch"] == 3
    resumed = train(project, cfg, resume=True)
    assert resumed.steps == 16 and resumed.final.name == "zkx.safetensors"


def test_a_crash_mid_write_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    target = tmp_path / "out" / "lora.safetensors"
    atomic_write_bytes(target, b"old")

    def broken(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_lora(target, {"a": torch.zeros(2)}, {})
    assert target.read_bytes() == b"old", "the earlier file is untouched"
    assert target.stat().st_mode & 0o644 == 0o644, "readable like any other file, not 0600"
    assert [p.name for p in target.parent.iterdir()] == ["lora.safetensors"], "no temporary file left"


def test_smoothing_and_summary():
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])
    from lorakit.train.loop import TrainResult

    s = summary(TrainResult(steps=3, losses=[3.0, 2.0, 1.0], seconds=1.5))
    assert s["steps"] == 3 and "2.00 steps/s" in s["time"] and "<table" in s._repr_html_()
