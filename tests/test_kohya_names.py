"""Every sampler and optimizer name in sd-scripts' own lists goes through the kohya import and TrainConfig
validation: honoured, mapped with a note, or refused before training with the nearest supported name."""

from __future__ import annotations

import pytest
import torch

from lorakit.config.kohya import KOHYA_OPTIMIZERS, import_kohya
from lorakit.config.schema import BNB_OPTIMIZERS, OPTIMIZERS, TrainConfig
from lorakit.errors import ConfigError, OptimizerUnavailable
from lorakit.models.samplers import KOHYA_SAMPLERS, SAMPLERS, make_scheduler, sampler_name
from lorakit.train.optimizers import build_optimizer

SD15_SCHEDULER = {  # the scheduler config SD 1.5 ships with (PNDM, scaled-linear betas)
    "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "skip_prk_steps": True, "set_alpha_to_one": False, "steps_offset": 1,
}


@pytest.mark.parametrize("name", KOHYA_SAMPLERS)
def test_every_kohya_sampler_imports_validates_and_builds(name):
    result = import_kohya({"sample_sampler": name, "sample_prompts": f"a cat --ss {name}\n# a comment"})
    cfg = result.config.validate()
    assert not result.unsupported, result.report()
    assert cfg.sampling.sample_sampler == name and cfg.sampling.sample_prompts == [f"a cat --ss {name}"]
    scheduler = make_scheduler(SD15_SCHEDULER, name)
    assert type(scheduler).__name__ == SAMPLERS[sampler_name(name)][0]
    scheduler.set_timesteps(4)  # a real schedule: 4 steps at least, from the top of the noise range down
    assert len(scheduler.timesteps) >= 4 and scheduler.timesteps[0] > scheduler.timesteps[-1]


def test_an_unknown_sampler_is_refused_by_validation_with_the_nearest_name():
    with pytest.raises(ConfigError, match=r"sample_sampler.*Did you mean 'Euler a'"):
        TrainConfig.from_dict({"sampling": {"sample_sampler": "k_euler_aa"}}).validate()
    with pytest.raises(ConfigError, match=r"--ss unknown sampler 'dpm_3'.*Did you mean"):
        TrainConfig.from_dict({"sampling": {"sample_prompts": ["a dog --ss dpm_3"]}}).validate()


def _groups():
    w = torch.nn.Parameter(torch.randn(8, 4))
    return [{"params": [w], "lr": 1.0}]


@pytest.mark.parametrize("name", KOHYA_OPTIMIZERS)
def test_every_kohya_optimizer_is_honoured_mapped_or_refused_before_training(name):
    result = import_kohya({"optimizer": name, "learning_rate": 1.0})
    cfg = result.config.validate()
    chosen = cfg.optimizer.optimizer
    assert chosen in OPTIMIZERS
    flagged = [u for u in result.unsupported if u[0] == "optimizer"]
    if flagged:  # refused: kept AdamW, and the report names the nearest lorakit optimizer
        assert chosen == "AdamW" and "nearest" in flagged[0][2]
        return
    assert chosen.lower() == name.lower() or name in ("DAdaptation", "SGDNesterov", "SGDNesterov8bit")
    if chosen in BNB_OPTIMIZERS:  # bitsandbytes keeps its state on CUDA: refused here with what to choose
        with pytest.raises(OptimizerUnavailable, match="AdamW|Lion"):
            build_optimizer(cfg, _groups())
        return
    opt = build_optimizer(cfg, _groups())
    before = opt.param_groups[0]["params"][0].detach().clone()
    opt.param_groups[0]["params"][0].grad = torch.ones(8, 4)
    opt.step()
    assert not torch.equal(before, opt.param_groups[0]["params"][0]), f"{name}: the step changed nothing"


def test_full_class_paths_and_sd_scripts_aliases():
    assert import_kohya({"optimizer": "prodigyopt.Prodigy"}).config.optimizer.optimizer == "Prodigy"
    assert import_kohya({"optimizer": "bitsandbytes.optim.AdamW8bit"}).config.optimizer.optimizer == "AdamW8bit"
    assert import_kohya({"optimizer": "DAdaptation"}).config.optimizer.optimizer == "DAdaptAdamPreprint"
    assert import_kohya({"optimizer": "AdaFactor"}).config.optimizer.optimizer == "Adafactor"
    odd = import_kohya({"optimizer": "mypkg.MyOptim"})
    assert odd.config.optimizer.optimizer == "AdamW" and odd.unsupported[0][0] == "optimizer"


def test_a_lorakit_config_with_a_wrong_case_optimizer_names_the_right_one():
    with pytest.raises(ConfigError, match="Did you mean 'Lion'"):
        TrainConfig.from_dict({"optimizer": {"optimizer": "lion"}}).validate()
