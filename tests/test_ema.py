"""EMA of the LoRA weights: the update rule, the -ema files, their order, pruning, and an exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError
from lorakit.train.ema import LoraEMA, ema_path
from lorakit.train.loop import train
from lorakit.train.state import STATE_FILE, load_state


def test_update_math_decay_and_every_n():
    """diffusers' rule: the n-th update uses d = min(decay, (1 + k) / (10 + k)) with k = n - 1 (the first copies)."""
    w = torch.nn.Parameter(torch.zeros(3))
    ema = LoraEMA([w], decay=0.5, every=2)
    expected = w.detach().clone()
    n = 0
    for step in range(1, 9):
        with torch.no_grad():
            w.add_(float(step))  # the optimizer moved the weight
        done = ema.update(step)
        assert done == (step % 2 == 0)
        if done:
            n += 1
            k = n - 1
            d = 0.0 if k == 0 else min(0.5, (1 + k) / (10 + k))
            expected = d * expected + (1 - d) * w.detach()
        assert torch.allclose(ema.model.shadow_params[0], expected)
    assert ema.updates == 4
    raw = w.detach().clone()
    with ema.applied():
        assert torch.equal(w.detach(), ema.model.shadow_params[0])
    assert torch.equal(w.detach(), raw)  # the trained weights are back, bit for bit


def test_ema_on_cpu_gives_the_same_average():
    a, b = torch.nn.Parameter(torch.randn(4, 2)), torch.nn.Parameter(torch.randn(4, 2))
    on, off = LoraEMA([a], 0.9, on_cpu=True), LoraEMA([b], 0.9)
    with torch.no_grad():
        b.copy_(a)
    on.model.shadow_params[0].copy_(a)
    off.model.shadow_params[0].copy_(a)
    for step in range(1, 5):
        with torch.no_grad():
            a.mul_(1.5)
            b.mul_(1.5)
        on.update(step)
        off.update(step)
    assert on.model.shadow_params[0].device.type == "cpu"
    assert torch.equal(on.model.shadow_params[0], off.model.shadow_params[0])


@pytest.mark.gpu
def test_ema_on_cpu_with_weights_on_the_gpu():
    w = torch.nn.Parameter(torch.randn(8, device="cuda"))
    ema, ref = LoraEMA([w], 0.9, on_cpu=True), LoraEMA([w], 0.9)
    for step in range(1, 6):
        with torch.no_grad():
            w.add_(1.0)
        ema.update(step)
        ref.update(step)
    assert ema.model.shadow_params[0].device.type == "cpu"
    assert torch.allclose(ema.model.shadow_params[0], ref.model.shadow_params[0].cpu())
    with ema.applied():
        assert w.device.type == "cuda" and torch.allclose(w.detach().cpu(), ema.model.shadow_params[0])


def test_settings_that_make_no_sense_are_refused():
    with pytest.raises(ConfigError, match="ema_decay must be 0"):
        TrainConfig().replace({"training.ema_decay": 1.0})
    with pytest.raises(ConfigError, match="needs an EMA"):
        TrainConfig().replace({"saving.save_weights": "ema"})
    with pytest.raises(ConfigError, match="average for nothing"):
        TrainConfig().replace({"training.ema_decay": 0.99, "saving.save_weights": "raw"})
    with pytest.raises(ConfigError, match="save_weights"):
        TrainConfig().replace({"training.ema_decay": 0.99, "saving.save_weights": "emma"})
    assert ema_path(Path("o/lora-step00000500.safetensors")).name == "lora-step00000500-ema.safetensors"


def _ema_cfg(cfg, weights="both"):
    cfg.training.ema_decay, cfg.training.ema_every_n_steps = 0.9, 2
    cfg.saving.save_weights = weights
    return cfg


def test_checkpoints_hold_the_weights_save_weights_names(tiny_project):
    project, cfg = tiny_project
    cfg.validation.enabled = True  # each file's validation loss is measured with the weights it holds
    result = train(project, _ema_cfg(cfg))
    loss = {r["checkpoint"]: r["loss"] for r in result.validation}
    assert loss["zkx-ema.safetensors"] != loss["zkx.safetensors"]
    names = [p.name for p in project.checkpoints()]
    assert names == ["zkx-000001.safetensors", "zkx-000001-ema.safetensors", "zkx.safetensors", "zkx-ema.safetensors"]
    raw, ema = load_file(project.output_dir / "zkx.safetensors"), load_file(project.output_dir / "zkx-ema.safetensors")
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)
    state = load_state(project.state_dir / STATE_FILE)
    assert state["ema"]["optimization_step"] == result.steps // 2  # every 2 of the 8 steps
    result = train(project, _ema_cfg(cfg, "ema"))
    assert [p.name for p in project.checkpoints()] == ["zkx-000001-ema.safetensors", "zkx-ema.safetensors"]
    assert all(torch.equal(ema[k], v) for k, v in load_file(result.final).items())  # same run, same EMA


def test_save_last_k_prunes_the_ema_file_with_its_raw_one(tiny_project):
    project, cfg = tiny_project
    cfg.training.max_train_epochs, cfg.saving.save_last_k = 3, 1
    train(project, _ema_cfg(cfg))
    assert [p.name for p in project.checkpoints()] == ["zkx-000002.safetensors", "zkx-000002-ema.safetensors",
                                                       "zkx.safetensors", "zkx-ema.safetensors"]


def test_resume_restores_the_ema_exactly(tiny_project, tmp_path):
    project, cfg = tiny_project
    _ema_cfg(cfg)
    cfg.training.max_train_epochs = 3
    full = train(project, cfg)
    reference = load_file(full.final)
    assert full.final.name == "zkx-ema.safetensors"
    part = train(project, cfg, stop_after_steps=11)  # mid-epoch, between two EMA updates
    saved = load_state(project.state_dir / STATE_FILE)["ema"]
    assert part.interrupted and saved["optimization_step"] == 5
    resumed = train(project, cfg, resume=True)
    again = load_file(resumed.final)
    assert reference.keys() == again.keys() and all(torch.equal(reference[k], again[k]) for k in reference)
