"""An interrupted run stops cleanly: a state to resume from, a LoRA to try now, one message saying so."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lorakit.evaluate.grid_spec import parse_axis
from lorakit.lora.file import read_lora_metadata
from lorakit.project import checkpoint_index
from lorakit.train.events import TrainResult
from lorakit.train.loop import Callback, train
from lorakit.train.outputs import interrupted_message


class CtrlC(Callback):
    def __init__(self, at: int = 3) -> None:
        self.at = at

    def on_step(self, step, loss, lr):
        if step == self.at:
            raise KeyboardInterrupt


class StopAtOnce(Callback):
    def on_start(self, info):
        raise KeyboardInterrupt


def test_an_interrupt_leaves_a_lora_to_try_and_a_finished_resume_drops_it(tiny_project):
    project, cfg = tiny_project
    cfg.saving.save_every_n_steps = 2
    result = train(project, cfg, callbacks=[CtrlC(3)])
    lora = project.output_dir / "zkx-interrupted.safetensors"
    assert result.interrupted and result.steps == 3 and lora.is_file()
    assert checkpoint_index(lora.stem) is None  # not a numbered checkpoint: never pruned, listed last
    assert [p.name for p in project.checkpoints()] == ["zkx-step00000002.safetensors", lora.name]
    step2 = load_file(project.output_dir / "zkx-step00000002.safetensors")
    tried = load_file(lora)
    assert tried.keys() == step2.keys(), "the same kohya keys as a checkpoint"
    assert any(not torch.equal(tried[k], step2[k]) for k in tried), "the weights of step 3, not step 2"
    meta = read_lora_metadata(lora)
    assert (meta["ss_steps"], meta["ss_epoch"], meta["ss_network_module"]) == ("3", "1", "networks.lora")
    assert lora not in result.checkpoints  # the state's list of checkpoints stays the numbered files
    axis = parse_axis("checkpoint", project)  # the grid (notebook 04, lorakit grid): just another LoRA
    assert axis.values[-1] == str(lora) and axis.labels[-1] == "zkx-interrupted"
    text = interrupted_message(project, "zkx", result, "lorakit train proj --resume")
    assert "step 3 (epoch 1)" in text and str(lora) in text and str(result.state_path) in text
    assert text.splitlines()[-1].endswith("lorakit train proj --resume")

    mine = project.output_dir / "notes.txt"
    mine.write_text("the user's own file")
    resumed = train(project, cfg, resume=True)
    assert resumed.steps == 16 and resumed.final.name == "zkx.safetensors"
    assert not lora.exists(), "superseded by the finished run's final file"
    assert mine.read_text() == "the user's own file"
    assert project.checkpoints()[-1].name == "zkx.safetensors"


def test_an_interrupt_before_the_first_step_writes_no_lora_and_says_so(tiny_project):
    project, cfg = tiny_project
    result = train(project, cfg, callbacks=[StopAtOnce()])
    assert result.interrupted and result.steps == 0
    assert not list(project.output_dir.glob("*.safetensors"))
    text = interrupted_message(project, "zkx", result, "lorakit train proj --resume")
    assert "before the first optimizer step" in text and "LoRA to try" not in text


def test_an_ema_run_writes_the_ema_twin_as_save_weights_asks(tiny_project):
    project, cfg = tiny_project
    cfg.training.ema_decay, cfg.training.ema_every_n_steps = 0.9, 2
    cfg.saving.save_weights = "ema"
    train(project, cfg, callbacks=[CtrlC(3)])
    assert sorted(p.name for p in project.output_dir.glob("*.safetensors")) == ["zkx-interrupted-ema.safetensors"]
    assert [p.name for p in project.checkpoints()] == ["zkx-interrupted-ema.safetensors"]


def test_cli_train_prints_one_message_with_the_resume_command(tiny_project, capsys, monkeypatch):
    from lorakit.cli.main import main
    from lorakit.train import progress

    project, _ = tiny_project
    monkeypatch.setattr(progress, "default_callbacks", lambda project, cfg=None: [CtrlC(3)])
    assert main(["train", str(project.root)]) == 130
    out = capsys.readouterr().out
    assert "Training stopped at step 3" in out
    assert str(project.output_dir / "zkx-interrupted.safetensors") in out
    assert f"lorakit train {project.root} --resume" in out


def test_the_demo_stops_after_an_interrupted_training_without_a_grid(tmp_path, capsys, monkeypatch):
    from lorakit.cli.main import main
    from lorakit.demo import run as demo

    def interrupted(project, cfg, **kw):
        return TrainResult(interrupted=True, steps=2, epochs=1, state_path=project.state_dir / "state.safetensors")

    grids: list[int] = []
    monkeypatch.setattr(demo, "run_checks", lambda *a, **k: [])
    monkeypatch.setattr(demo, "train", interrupted)
    monkeypatch.setattr(demo, "make_grid", lambda *a, **k: grids.append(1) or pytest.fail("no grid after a stop"))
    assert main(["demo", str(tmp_path / "demo")]) == 130
    out = capsys.readouterr().out
    assert grids == [] and "[4/4]" not in out and "train first" not in out
    assert "Training stopped at step 2 (epoch 1)" in out and f"lorakit train {tmp_path / 'demo'} --resume" in out
    result = demo.run_demo(tmp_path / "demo2", verbose=False)
    assert result["interrupted"] and result["grid"] is None and grids == []
