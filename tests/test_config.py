"""TrainConfig: exact TOML round trip, teaching errors, unknown-key hints, warm-up, and `lorakit config`."""

from __future__ import annotations

import contextlib
import random
import sys
from dataclasses import fields

import pytest

from lorakit.cli.main import main
from lorakit.config.presets import PRESETS, apply_preset
from lorakit.config.schema import (
    SECTIONS,
    TrainConfig,
    advice,
    default_of,
    field_keys,
    format_float,
    iter_fields,
)
from lorakit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TRICKY_FLOATS = [1e-4, 5e-5, 4e-4, 0.1 + 0.2, 1 / 3, 1e-7, 2.5e-6, 123456.789, 16.0, 0.3, 1e-12, 0.05]


def _random_config(rng: random.Random) -> TrainConfig:
    """A valid config with many settings changed to awkward values (floats that print badly, odd strings)."""
    cfg = TrainConfig()
    for key, f in field_keys():
        if rng.random() < 0.5:
            continue
        default = default_of(f)
        if isinstance(default, bool):
            value = not default
        elif f.metadata.get("choices"):
            value = rng.choice(f.metadata["choices"])
        elif isinstance(default, int):
            value = default + rng.randint(0, 3)
        elif isinstance(default, float):
            value = rng.choice(TRICKY_FLOATS)
        elif isinstance(default, list):
            value = [f'a "quoted" prompt --w {rng.randint(1, 9)}', "ünïcode, tags\\with\\backslashes"]
        else:
            value = default
        with contextlib.suppress(ConfigError):  # a value that does not fit with the others: keep the previous one
            cfg = cfg.replace({key: value})
    return cfg


def _configs() -> list[TrainConfig]:
    rng = random.Random(1234)
    return [TrainConfig(), *(apply_preset(name) for name in PRESETS), *(_random_config(rng) for _ in range(25))]


def test_random_configs_really_differ_from_the_default():
    changed = [sum(c.get(k) != TrainConfig().get(k) for k, _ in field_keys()) for c in _configs()[4:]]
    assert min(changed) >= 5, changed


@pytest.mark.parametrize("cfg", _configs())
def test_toml_round_trip_is_exact(cfg):
    text = cfg.to_toml()
    back = TrainConfig.from_toml(text)
    assert back == cfg
    assert back.to_toml() == text  # the text is stable too: saving twice never changes the file


def test_float_formatting_reads_back_exactly():
    rng = random.Random(7)
    values = TRICKY_FLOATS + [rng.uniform(-1e6, 1e6) for _ in range(200)] + [10 ** rng.uniform(-30, 30)
                                                                              for _ in range(200)]
    for x in values + [float("inf"), 0.0, -0.0, 1e16, 1e22]:
        assert tomllib.loads(f"x = {format_float(x)}")["x"] == x, x
    assert format_float(5e-5) == "5e-5"
    assert format_float(1e-4) == "0.0001"
    assert format_float(16) == "16.0"
    assert format_float(1.5e-07) == "1.5e-7"


def test_toml_explains_every_setting_above_it():
    lines = TrainConfig().to_toml().splitlines()
    for section, name, _, f in iter_fields():
        i = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
        block = []
        j = i - 1
        while lines[j].startswith("# "):
            block.insert(0, lines[j][2:])
            j -= 1
        assert " ".join(block).startswith(f.metadata["help"][:40]), (section, name)


def test_every_field_has_help_and_valid_choices():
    for section, name, value, f in iter_fields():
        assert len(f.metadata.get("help", "")) > 15, f"{section}.{name} needs a help text"
        if f.metadata.get("choices"):
            assert value in f.metadata["choices"]


@pytest.mark.parametrize(
    "toml, hint",
    [
        ("[network]\nrnak = 8\n", "Did you mean 'network.rank'?"),
        ("[netwrok]\nrank = 8\n", "Did you mean 'network'?"),
        ("[model]\nrank = 8\n", "Did you mean 'network.rank'?"),
        ("[optimizer]\nunet_learning_rate = 1e-4\n", "Did you mean 'optimizer.unet_lr'?"),
    ],
)
def test_unknown_keys_name_the_nearest(toml, hint):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_toml(toml)
    assert hint in str(e.value)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"optimizer.unet_lr": 0.0}, "the kohya default is 1e-4"),
        ({"optimizer.lr_scheduler": "cosin"}, "Did you mean 'cosine'?"),
        ({"optimizer.lr_scheduler": "constant", "optimizer.lr_warmup_steps": 100}, "constant_with_warmup"),
        ({"optimizer.lr_warmup_steps": 10, "optimizer.lr_warmup_ratio": 0.1}, "not both"),
        ({"optimizer.lr_warmup_ratio": 5.0}, "fraction of all steps"),
        ({"optimizer.optimizer": "Adafactor", "optimizer.optimizer_args": "relative_step=True"}, "'adafactor'"),
        ({"optimizer.optimizer_args": "weight_decay"}, "is not key=value"),
        ({"model.family": "sd2-v", "model.prediction_type": "epsilon"}, "v-prediction model"),
        ({"data.resolution": 2048}, "outside the buckets"),
        ({"data.resolution": 500}, "multiple of 8"),
        ({"network.train_unet": False, "optimizer.text_encoder_lr": 0.0}, "Nothing to train"),
        ({"network.rank": 0}, "16 is a common start"),
        ({"saving.output_name": "a/b"}, "plain file name"),
        ({"training.max_train_epochs": 0}, "Set training.max_train_epochs"),
    ],
)
def test_validation_errors_say_what_to_do(values, message):
    with pytest.raises(ConfigError, match=None) as e:
        TrainConfig().replace(values)
    assert message in str(e.value)


def test_types_are_checked_when_loading():
    with pytest.raises(ConfigError, match="whole number"):
        TrainConfig.from_toml('[network]\nrank = "8"\n')
    with pytest.raises(ConfigError, match="true or false"):
        TrainConfig.from_toml("[data]\nflip_aug = 1\n")
    assert TrainConfig.from_toml("[network]\nalpha = 8\n").network.alpha == 8.0  # an int is a fine float


def test_warmup_ratio_reaches_the_scheduler():
    from lorakit.train.optimizers import lr_curve

    cfg = TrainConfig().replace({"optimizer.lr_scheduler": "constant_with_warmup", "optimizer.lr_warmup_ratio": 0.1})
    assert cfg.warmup_steps(200) == 20
    curve = lr_curve(cfg, 200)
    assert curve[10][1] == pytest.approx(cfg.optimizer.unet_lr / 2)
    assert curve[20][1] == pytest.approx(cfg.optimizer.unet_lr)
    assert curve[10][2] == pytest.approx(cfg.optimizer.text_encoder_lr / 2)


def test_replace_returns_a_new_validated_config():
    cfg = TrainConfig()
    new = cfg.replace({"network.rank": 32, "sampling.sample_prompts": "a\n\nb"})
    assert (new.network.rank, new.sampling.sample_prompts, cfg.network.rank) == (32, ["a", "b"], 16)
    with pytest.raises(ConfigError, match="Did you mean 'network.alpha'"):
        cfg.replace({"network.alpah": 1})


def test_advice_flags_allowed_but_surprising_settings():
    notes = advice(apply_preset("sd21-adafactor"))
    assert any("1/256" in n for n in notes)
    assert advice(TrainConfig().replace({"sampling.sample_prompts": ["a photo"]})) == []


def test_save_and_load(tmp_path):
    cfg = apply_preset("style")
    path = cfg.save(tmp_path / "sub" / "lorakit.toml")
    assert TrainConfig.load(path) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["lorakit.toml"]  # no temporary file left behind
    with pytest.raises(ConfigError, match="Run notebook 02"):
        TrainConfig.load(tmp_path / "missing.toml")


def test_sections_cover_every_dataclass():
    assert sum(len(fields(cls)) for cls in SECTIONS.values()) == len(field_keys()) >= 60


# ---- the command line -----------------------------------------------------------------------------------------


def test_cli_check(tmp_path, capsys):
    good = apply_preset("sd21-adafactor").save(tmp_path / "good.toml")
    assert main(["config", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[optimizer]\nunet_lr = 0.0\n", encoding="utf-8")
    assert main(["config", "check", str(bad)]) == 2
    assert "kohya default is 1e-4" in capsys.readouterr().err


def test_cli_show_lists_every_setting(capsys):
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    for key, f in field_keys():
        assert f"{key} = " in out
        assert f.metadata["help"] in out


def test_cli_init_with_preset_refuses_to_overwrite(tmp_path, capsys):
    project = tmp_path / "proj"
    assert main(["config", "init", str(project), "--preset", "character"]) == 0
    assert TrainConfig.load(project / "lorakit.toml") == apply_preset("character")
    assert main(["config", "init", str(project)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["config", "init", str(project), "--force"]) == 0
    assert TrainConfig.load(project / "lorakit.toml") == TrainConfig()


def test_cli_show_markdown_is_one_table_row_per_setting(capsys):
    assert main(["config", "show", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("| `")]) == len(field_keys())
    assert [line for line in lines if line.startswith("## ")] == [f"## [{s}]" for s in SECTIONS]


@pytest.mark.parametrize("scheduler", ["constant", "constant_with_warmup", "linear", "cosine",
                                       "cosine_with_restarts", "polynomial"])
def test_lr_preview_equals_stepping_the_training_scheduler(scheduler):
    import torch

    from lorakit.train.optimizers import build_scheduler, lr_curve

    cfg = TrainConfig().replace({"optimizer.lr_scheduler": scheduler, "optimizer.lr_scheduler_num_cycles": 3,
                                 "optimizer.lr_scheduler_power": 2.0,
                                 "optimizer.lr_warmup_steps": 0 if scheduler == "constant" else 7})
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    groups = [{"params": [params[0]], "lr": 1e-4}, {"params": [params[1]], "lr": 5e-5}]
    opt = torch.optim.SGD(groups, lr=1e-4)  # as build_optimizer: the default lr is the UNet's (polynomial reads it)
    sched = build_scheduler(cfg, opt, 60)
    stepped = []
    for _ in range(60):
        stepped += sched.get_last_lr()
        opt.step()
        sched.step()
    preview = lr_curve(cfg, 60)
    assert [lr for _, u, t in preview for lr in (u, t)] == pytest.approx(stepped, rel=1e-12, abs=1e-18)
    assert [s for s, _, _ in lr_curve(cfg, 60, every=20)] == [0, 20, 40]
