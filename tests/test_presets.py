"""Presets: each is valid and explained, matches its published recipe, and keeps the project's own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.config.kohya import import_kohya
from lorakit.config.presets import PRESETS, PROJECT_KEYS, apply_preset, describe_presets
from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError
from lorakit.train.steps import DatasetCount, plan_steps

FIXTURE = Path(__file__).resolve().parent / "data" / "kohya_ss_settings_as_pasted.txt"  # copied from shared/fixtures


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_is_valid_and_says_when_to_use_it(name):
    preset = PRESETS[name]
    cfg = apply_preset(name)
    assert cfg == cfg.validate()
    assert len(preset.when) > 80 and preset.title
    assert all(cfg.get(k) == v for k, v in preset.values.items())
    assert not set(preset.values) & set(PROJECT_KEYS)  # a preset never touches the project's settings
    assert name in describe_presets()


def test_character_preset_is_the_published_recipe():
    cfg = apply_preset("character")
    assert (cfg.training.train_batch_size, cfg.data.repeats, cfg.training.max_train_epochs) == (1, 15, 5)
    assert (cfg.optimizer.text_encoder_lr, cfg.optimizer.unet_lr) == (5e-5, 1e-4)
    assert (cfg.optimizer.lr_scheduler, cfg.optimizer.optimizer) == ("polynomial", "AdamW8bit")
    assert (cfg.network.rank, cfg.network.alpha, cfg.data.resolution) == (128, 128.0, 512)
    plan = plan_steps(cfg, DatasetCount([("15_fr3dd!e", 25, 15)]), kind="character")
    assert plan.total_steps == 1875 and "inside" in plan.guidance


def test_style_preset_trains_longer_than_a_character():
    count = DatasetCount([("10_style", 100, 10)])
    style = plan_steps(apply_preset("style"), count, kind="style")
    assert 3000 <= style.total_steps <= 6000, style.total_steps
    assert "inside" in style.guidance


def test_sd21_preset_equals_the_shared_kohya_config():
    if not FIXTURE.is_file():
        pytest.fail(f"test fixture missing: {FIXTURE} (tests/data/ is part of the repository)")
    imported = import_kohya(FIXTURE.read_text(encoding="utf-8")).config
    preset = PRESETS["sd21-adafactor"]
    differ = {k: (v, imported.get(k)) for k, v in preset.values.items() if imported.get(k) != v}
    assert differ == {}


def test_preset_keeps_the_project_settings_and_resets_the_rest():
    mine = TrainConfig().replace({"model.base_model": "/models/my.safetensors", "saving.output_name": "fr3dd",
                                  "sampling.sample_prompts": ["photo of fr3dd"], "data.dataset_dir": "imgs",
                                  "training.noise_offset": 0.1})
    cfg = apply_preset("sd21-adafactor", mine)
    assert (cfg.model.base_model, cfg.saving.output_name, cfg.data.dataset_dir) == ("/models/my.safetensors",
                                                                                    "fr3dd", "imgs")
    assert cfg.sampling.sample_prompts == ["photo of fr3dd"]
    assert cfg.training.noise_offset == 0.0  # a recipe setting: back to the default, not carried over
    assert cfg.network.rank == 256


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(ConfigError, match="Did you mean 'character'"):
        apply_preset("charcter")
