"""kohya_ss GUI settings: the pasted fixture imports with a full report; export maps back to the same config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.cli.main import main
from lorakit.config.kohya import export_kohya, export_kohya_text, import_kohya, parse_kohya_text
from lorakit.config.presets import PRESETS, apply_preset
from lorakit.config.schema import TrainConfig
from lorakit.demo.recipe import demo_config
from lorakit.errors import ConfigError

FIXTURE = Path(__file__).resolve().parent / "data" / "kohya_ss_settings_as_pasted.txt"  # copied from shared/fixtures


def fixture_text() -> str:
    """The kohya_ss config a user pasted from a web page (typographic quotes, numbers as strings)."""
    if not FIXTURE.is_file():
        pytest.fail(f"test fixture missing: {FIXTURE} (tests/data/ is part of the repository)")
    return FIXTURE.read_text(encoding="utf-8")


def test_fixture_is_really_typographic():
    text = fixture_text()
    assert "“" in text and "”" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_fixture_imports_the_recipe():
    cfg = import_kohya(fixture_text()).config
    assert cfg.optimizer.unet_lr == 4e-4
    assert cfg.optimizer.text_encoder_lr == 4e-4
    assert (cfg.network.type, cfg.network.rank, cfg.network.alpha) == ("lora", 256, 1.0)
    assert cfg.training.max_train_epochs == 20
    assert cfg.saving.save_every_n_epochs == 2
    assert cfg.optimizer.optimizer == "Adafactor"
    assert cfg.optimizer.optimizer_args == "scale_parameter=False relative_step=False warmup_init=False"
    assert cfg.optimizer.lr_scheduler == "constant"
    assert (cfg.model.family, cfg.model.prediction_type) == ("sd2-v", "v_prediction")
    assert cfg.model.base_model == "stabilityai/stable-diffusion-2-1"
    assert (cfg.training.mixed_precision, cfg.saving.save_precision) == ("bf16", "bf16")
    assert cfg.training.seed == 58008  # written "58008" in the file
    assert cfg.data.resolution == 512  # written "512,512"
    assert (cfg.data.min_bucket_reso, cfg.data.max_bucket_reso, cfg.data.enable_bucket) == (256, 2048, True)
    assert cfg.training.gradient_checkpointing and cfg.data.cache_latents and cfg.data.cache_latents_to_disk
    assert cfg.training.train_batch_size == 1 and cfg.data.keep_tokens == 0  # keep_tokens was "0"
    assert cfg.sampling.sample_prompts == ["fredd!e"]
    assert cfg.training.multires_noise_iterations == 0  # noise_offset_type "Original": kohya_ss drops it
    assert cfg.saving.output_name == "lora"  # "" means unset: lorakit's default


def test_fixture_report_accounts_for_every_key_once():
    result = import_kohya(fixture_text())
    raw = parse_kohya_text(fixture_text())
    entries = [m[0] for m in result.mapped] + [i[0] for i in result.ignored] + [u[0] for u in result.unsupported]
    assert sorted(entries) == sorted(raw)
    assert [u[0] for u in result.unsupported] == ["scale_weight_norms"]
    ignored = {k: why for k, _, why in result.ignored}
    assert "Original" in ignored["multires_noise_iterations"]
    assert "LyCORIS" in ignored["use_cp"]
    assert "secret" in ignored["wandb_api_key"]
    text = result.report()
    assert "scale_weight_norms" in text and "network_dim" in text and "Ignored (" in text


@pytest.mark.parametrize(
    "text",
    [
        '{"network_dim": "32", "seed": "7",}',  # trailing comma, numbers as strings
        "Here is my config:\n```json\n{“network_dim”: 32, “seed”: 7}\n```\nhave fun!",  # fences, smart quotes
        "{‘network_dim’: 32, ‘seed’: 7}",  # single typographic quotes
        "{'network_dim': 32, 'seed': 7, 'flip_aug': false}",  # Python-style
        '\ufeff{"network_dim":\u00a032, "seed": 7\u200b}',  # BOM, no-break space, zero-width space
    ],
)
def test_tolerant_parsing(text):
    cfg = import_kohya(text).config
    assert (cfg.network.rank, cfg.training.seed) == (32, 7)


def test_broken_json_names_the_line():
    with pytest.raises(ConfigError, match="line 3"):
        parse_kohya_text('{\n"a": 1,\n"b" 2\n}')
    with pytest.raises(ConfigError, match="No kohya_ss settings"):
        parse_kohya_text("nothing here")
    with pytest.raises(ConfigError, match="neither a file"):
        import_kohya("missing/settings.json")


def test_empty_string_means_default_and_bad_numbers_are_errors():
    result = import_kohya({"lr_scheduler_power": "", "network_dim": 8})
    assert result.config.optimizer.lr_scheduler_power == 1.0
    assert any(k == "lr_scheduler_power" and "default" in why for k, _, why in result.ignored)
    with pytest.raises(ConfigError, match="network_dim"):
        import_kohya({"network_dim": "many"})


@pytest.mark.parametrize(
    "raw, expect",
    [
        ({"learning_rate": 2e-4, "unet_lr": 0, "text_encoder_lr": 0}, (2e-4, 2e-4, True)),
        ({"learning_rate": 1e-4, "unet_lr": 3e-4, "text_encoder_lr": 0}, (3e-4, 0.0, True)),
        ({"learning_rate": 0, "unet_lr": 0, "text_encoder_lr": 5e-5}, (1e-4, 5e-5, False)),
    ],
)
def test_learning_rates_follow_kohya_ss(raw, expect):
    cfg = import_kohya(raw).config
    assert (cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr, cfg.network.train_unet) == expect


def test_network_types_and_conv_layers():
    cfg = import_kohya({"LoRA_type": "LyCORIS/LoHa", "conv_dim": "4", "conv_alpha": 2}).config
    assert (cfg.network.type, cfg.network.conv_rank, cfg.network.conv_alpha) == ("loha", 4, 2.0)
    assert import_kohya({"LoRA_type": "LyCORIS/LoCon", "dora_wd": True}).config.network.type == "dora"
    result = import_kohya({"LoRA_type": "LyCORIS/GLoRA", "use_tucker": True})
    assert result.config.network.type == "lora"
    assert {u[0] for u in result.unsupported} == {"LoRA_type", "use_tucker"}


def test_noise_warmup_optimizer_and_resolution_rules():
    cfg = import_kohya({"noise_offset_type": "Multires", "noise_offset": 0.1, "multires_noise_iterations": 6,
                        "multires_noise_discount": 0.3}).config
    assert (cfg.training.noise_offset, cfg.training.multires_noise_iterations) == (0.0, 6)
    assert import_kohya({"lr_scheduler": "cosine", "lr_warmup": 10}).config.optimizer.lr_warmup_ratio == 0.1
    constant = import_kohya({"lr_scheduler": "constant", "lr_warmup": 10})
    assert constant.config.optimizer.lr_warmup_ratio == 0.0 and "ignores warm-up" in constant.report()
    sgd = import_kohya({"optimizer": "SGDNesterov", "optimizer_args": "weight_decay=0.01"}).config.optimizer
    assert (sgd.optimizer, sgd.optimizer_args) == ("SGD", "momentum=0.9 nesterov=True weight_decay=0.01")
    lion = import_kohya({"optimizer": "Lion", "optimizer_args": "betas=0.9,0.99"}).config.optimizer
    assert (lion.optimizer, lion.optimizer_args) == ("Lion", "betas=0.9,0.99")
    free = import_kohya({"optimizer": "AdamWScheduleFree", "optimizer_args": "warmup_steps=10"})
    assert free.config.optimizer.optimizer == "AdamW" and free.unsupported[0][0] == "optimizer"
    assert "'AdamW'" in free.unsupported[0][2] and free.config.optimizer.optimizer_args == ""
    wide = import_kohya({"max_resolution": "768,512", "max_bucket_reso": 1024})
    assert wide.config.data.resolution == 624 and wide.unsupported[0][0] == "max_resolution"
    assert import_kohya({"epoch": 3, "max_train_epochs": "7"}).config.training.max_train_epochs == 7
    assert import_kohya({"unknown_new_flag": 1}).unsupported[0][0] == "unknown_new_flag"
    loss = import_kohya({"debiased_estimation_loss": True, "min_timestep": "200", "max_timestep": 800,
                         "ip_noise_gamma": 0.1})
    t = loss.config.training
    assert (t.debiased_estimation_loss, t.min_timestep, t.max_timestep, t.ip_noise_gamma) == (True, 200, 800, 0.1)
    assert not loss.unsupported
    with pytest.raises(ConfigError, match="min_timestep"):
        import_kohya({"min_timestep": 900, "max_timestep": 100})


def _export_cases() -> list[TrainConfig]:
    odd = TrainConfig().replace({
        "network.type": "locon", "network.conv_rank": 8, "network.conv_alpha": 4.0, "training.noise_offset": 0.05,
        "training.multires_noise_iterations": 6, "optimizer.lr_scheduler": "cosine_with_restarts",
        "optimizer.lr_scheduler_num_cycles": 3, "optimizer.lr_warmup_ratio": 0.123, "training.torch_compile": True,
        "sampling.sample_prompts": ["a --w 512", "b"], "data.dataset_dir": "imgs", "network.train_unet": False,
        "model.allow_pickle": True, "sampling.sample_cfg": 4.5, "training.debiased_estimation_loss": True,
        "training.min_timestep": 100, "training.max_timestep": 900, "training.ip_noise_gamma": 0.1,
    })
    return [TrainConfig(), demo_config(), odd, import_kohya(fixture_text()).config,
            *(apply_preset(n) for n in PRESETS)]


@pytest.mark.parametrize("cfg", _export_cases())
def test_export_then_import_gives_the_same_config(cfg):
    assert import_kohya(export_kohya_text(cfg)).config == cfg


def test_export_is_plain_kohya_when_kohya_can_express_it():
    data = export_kohya(import_kohya(fixture_text()).config)
    assert "lorakit" not in data  # every setting of the fixture's recipe has a kohya_ss key
    assert (data["LoRA_type"], data["network_dim"], data["network_alpha"]) == ("Standard", 256, 1.0)
    assert (data["v2"], data["v_parameterization"], data["sdxl"]) == (True, True, False)
    assert data["max_resolution"] == "512,512" and data["optimizer"] == "Adafactor"
    extra = export_kohya(TrainConfig().replace({"training.torch_compile": True}))["lorakit"]
    assert extra["training.torch_compile"] is True


def test_cli_import_and_export(tmp_path, capsys):
    src = tmp_path / "pasted.txt"
    src.write_text(fixture_text(), encoding="utf-8")
    out = tmp_path / "lorakit.toml"
    assert main(["config", "import-kohya", str(src), "-o", str(out)]) == 0
    assert "scale_weight_norms" in capsys.readouterr().out
    assert TrainConfig.load(out) == import_kohya(fixture_text()).config
    assert main(["config", "import-kohya", str(src), "-o", str(out)]) == 2  # no silent overwrite
    kohya = tmp_path / "kohya.json"
    assert main(["config", "export-kohya", str(out), "-o", str(kohya)]) == 0
    assert json.loads(kohya.read_text(encoding="utf-8"))["network_dim"] == 256
    assert import_kohya(kohya).config == TrainConfig.load(out)


def test_every_key_is_reported_once_even_when_empty():
    from lorakit.config.kohya import DIRECT, IGNORED, LYCORIS_OPTIONS, NEUTRAL, SPECIAL

    raw = {k: "" for k in [*DIRECT, *SPECIAL, *NEUTRAL, *IGNORED, *LYCORIS_OPTIONS] if k != "lorakit"}
    result = import_kohya(raw)
    entries = [m[0] for m in result.mapped] + [i[0] for i in result.ignored] + [u[0] for u in result.unsupported]
    assert sorted(entries) == sorted(raw)
    assert result.config == import_kohya({}).config
