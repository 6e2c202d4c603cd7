"""Optimizers as kohya users name them (with `key=value` args) and the LR schedules, checked on their curves."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError, OptimizerUnavailable
from lorakit.train.optimizers import build_optimizer, build_scheduler, lr_curve

N, LR = 100, 1e-3


def _cfg(scheduler: str = "constant", **opt) -> TrainConfig:
    cfg = TrainConfig()
    cfg.optimizer.lr_scheduler, cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr = scheduler, LR, LR / 2
    for key, value in opt.items():
        setattr(cfg.optimizer, key, value)
    return cfg.validate()


def _groups(device: str = "cpu") -> list[dict]:
    unet = torch.nn.Parameter(torch.randn(8, 8, device=device))
    te = torch.nn.Parameter(torch.randn(8, 8, device=device))
    return [{"params": [unet], "lr": LR}, {"params": [te], "lr": LR / 2}]


def _unet_curve(cfg: TrainConfig) -> list[float]:
    curve = lr_curve(cfg, N)
    assert all(math.isclose(te, u / 2, rel_tol=1e-9, abs_tol=1e-15) for _, u, te in curve), "TE follows the same shape"
    return [u for _, u, _ in curve]


def test_constant():
    assert _unet_curve(_cfg("constant")) == [LR] * N


def test_constant_with_warmup():
    lrs = _unet_curve(_cfg("constant_with_warmup", lr_warmup_steps=10))
    assert lrs[0] == 0 and math.isclose(lrs[5], LR / 2) and lrs[10:] == [LR] * (N - 10)


def test_warmup_ratio_is_a_fraction_of_all_steps():
    lrs = _unet_curve(_cfg("constant_with_warmup", lr_warmup_ratio=0.2))
    assert lrs[19] < LR and lrs[20] == LR


def test_linear():
    lrs = _unet_curve(_cfg("linear", lr_warmup_steps=10))
    assert math.isclose(lrs[10], LR) and math.isclose(lrs[55], LR * 45 / 90) and lrs[-1] < LR / 50


def test_cosine():
    lrs = _unet_curve(_cfg("cosine"))
    assert lrs[0] == LR and math.isclose(lrs[50], LR / 2, rel_tol=1e-6)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False)), "one half cosine: never rises"


def test_cosine_with_restarts_has_cycles():
    lrs = _unet_curve(_cfg("cosine_with_restarts", lr_scheduler_num_cycles=3))
    restarts = [i for i in range(1, N) if lrs[i] > lrs[i - 1]]
    assert len(restarts) == 2 and all(math.isclose(lrs[i], LR, rel_tol=0.05) for i in restarts)


def test_polynomial_power():
    lrs = _unet_curve(_cfg("polynomial", lr_scheduler_power=2.0))
    end = 1e-7  # diffusers' lr_end
    assert math.isclose(lrs[50], (LR - end) * 0.25 + end, rel_tol=1e-6)
    linear = _unet_curve(_cfg("polynomial", lr_scheduler_power=1.0))
    assert lrs[50] < linear[50], "a higher power decays faster"


def test_adafactor_schedule_uses_adafactors_own_lr():
    cfg = _cfg("adafactor", optimizer="Adafactor",
               optimizer_args="scale_parameter=True relative_step=True warmup_init=False")
    groups = _groups()
    opt = build_optimizer(cfg, groups)
    sched = build_scheduler(cfg, opt, N)
    for _ in range(3):
        sum((p**2).sum() for g in groups for p in g["params"]).backward()
        opt.step()
        sched.step()
    lrs = sched.get_last_lr()
    assert all(lr > 0 for lr in lrs) and LR not in lrs, "relative_step: Adafactor picks the lr itself"


def test_adafactor_with_kohya_args_keeps_a_fixed_lr():
    cfg = _cfg("constant", optimizer="Adafactor", optimizer_args="scale_parameter=False relative_step=False "
                                                                 "warmup_init=False")
    opt = build_optimizer(cfg, _groups())
    assert [g["lr"] for g in opt.param_groups] == [LR, LR / 2]
    assert opt.defaults["relative_step"] is False and opt.defaults["scale_parameter"] is False


def test_key_value_args_as_pasted():
    cfg = _cfg(optimizer_args="weight_decay=0.05 betas=0.9,0.99 eps=1e-7")
    opt = build_optimizer(cfg, _groups())
    assert opt.defaults["weight_decay"] == 0.05 and opt.defaults["betas"] == (0.9, 0.99)
    assert opt.defaults["eps"] == 1e-7


def test_adamw_batches_its_update_unless_told_otherwise():
    assert build_optimizer(_cfg(), _groups()).defaults["foreach"] is True
    assert build_optimizer(_cfg(optimizer_args="foreach=False"), _groups()).defaults["foreach"] is False


def test_unknown_arg_names_the_nearest():
    with pytest.raises(ConfigError, match="'weight_decay'"):
        build_optimizer(_cfg(optimizer_args="wieght_decay=0.1"), _groups())


@pytest.mark.parametrize("name,module", [("Prodigy", "prodigyopt"), ("DAdaptAdam", "dadaptation")])
def test_adaptive_optimizers_where_installed(name, module):
    pytest.importorskip(module)
    cfg = _cfg(optimizer=name, unet_lr=1.0, text_encoder_lr=1.0)
    groups = _groups()
    for g in groups:
        g["lr"] = 1.0
    before = groups[0]["params"][0].detach().clone()
    opt = build_optimizer(cfg, groups)
    assert type(opt).__name__ == name
    (groups[0]["params"][0] ** 2).sum().backward()
    opt.step()
    assert not torch.equal(before, groups[0]["params"][0])


@pytest.mark.parametrize("name", ["Prodigy", "DAdaptAdam"])
def test_adaptive_optimizers_need_one_lr(name):
    with pytest.raises(ConfigError, match="text_encoder_lr"):
        build_optimizer(_cfg(optimizer=name, unet_lr=1.0, text_encoder_lr=0.5), _groups())


@pytest.mark.parametrize("name,module", [("Prodigy", "prodigyopt"), ("DAdaptAdam", "dadaptation"),
                                         ("AdamW8bit", "bitsandbytes")])
def test_missing_package_says_how_to_install(monkeypatch, name, module):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == module else real(m, *a))
    with pytest.raises(OptimizerUnavailable, match=f"pip install {module}"):
        build_optimizer(_cfg(optimizer=name), _groups())


def test_adamw8bit_without_a_gpu_is_explained(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: object() if m == "bitsandbytes" else real(m, *a))
    with pytest.raises(OptimizerUnavailable, match="CUDA GPU"):
        build_optimizer(_cfg(optimizer="AdamW8bit"), _groups("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_adamw_is_fused_on_cuda():
    opt = build_optimizer(_cfg(), _groups("cuda"))
    assert opt.defaults["fused"] is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_adamw8bit_steps_on_cuda():
    pytest.importorskip("bitsandbytes")
    groups = _groups("cuda")
    opt = build_optimizer(_cfg(optimizer="AdamW8bit", optimizer_args="min_8bit_size=0"), groups)
    before = groups[0]["params"][0].detach().clone()
    (groups[0]["params"][0] ** 2).sum().backward()
    opt.step()
    assert not torch.equal(before, groups[0]["params"][0])
