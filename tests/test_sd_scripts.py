"""sd-scripts' --config_file TOML imports through the kohya report: tables flattened, argparse names mapped,
the prompt file read, bad input refused before anything is written."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lorakit.config.schema import TrainConfig
from lorakit.config.sd_scripts import import_sd_scripts_toml
from lorakit.errors import ConfigError

DATA = Path(__file__).parent / "data"


@pytest.fixture
def config_dir(tmp_path):
    for name in ("sd_scripts_config.toml", "prompts.txt"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


def test_a_real_layout_config_imports_with_its_prompt_file(config_dir):
    result = import_sd_scripts_toml(config_dir / "sd_scripts_config.toml")
    cfg = result.config.validate()
    assert (cfg.network.type, cfg.network.rank, cfg.network.alpha, cfg.network.conv_rank) == ("locon", 16, 8.0, 4)
    assert (cfg.optimizer.optimizer, cfg.optimizer.optimizer_args) == ("Lion", "weight_decay=0.01 betas=0.9,0.99")
    assert (cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr) == (1e-4, 5e-5)
    assert (cfg.data.resolution, cfg.training.max_train_epochs, cfg.training.sdpa) == (512, 6, True)
    assert cfg.sampling.sample_prompts == ["fr3dd1e, a portrait --n blurry --w 512 --h 512 --d 1 --ss euler_a",
                                           "fr3dd1e at the beach --l 6 --s 20"]  # the '#' line is a comment
    assert cfg.sampling.sample_sampler == "k_dpm_2_a" and cfg.sampling.sample_at_start
    ignored = {k for k, *_ in result.ignored}
    assert {"dataset_config", "output_dir", "highvram"} <= ignored
    assert not result.unsupported, result.report()
    assert cfg.data.max_token_length == 225 and ("max_token_length", "data.max_token_length", 225) in [
        tuple(m[:3]) for m in result.mapped]  # kohya's windows of 75, honoured


def test_learning_rate_fills_the_part_not_named_and_only_flags_turn_a_part_off():
    both = import_sd_scripts_toml('learning_rate = 2e-4\nunet_lr = 1e-4\n').config.optimizer
    assert (both.unet_lr, both.text_encoder_lr) == (1e-4, 2e-4)  # sd-scripts: the text encoder trains at lr
    only = import_sd_scripts_toml('learning_rate = 3e-4\nnetwork_train_unet_only = true\n').config.optimizer
    assert (only.unet_lr, only.text_encoder_lr) == (3e-4, 0.0)
    te = import_sd_scripts_toml('learning_rate = 3e-4\nnetwork_train_text_encoder_only = true\n').config
    assert not te.network.train_unet and te.optimizer.text_encoder_lr == 3e-4


def test_lycoris_module_and_unknown_modules():
    loha = import_sd_scripts_toml('network_module = "lycoris.kohya"\nnetwork_args = ["algo=loha", "conv_dim=8"]\n')
    assert loha.config.network.type == "loha" and loha.config.network.conv_rank == 8
    other = import_sd_scripts_toml('network_module = "networks.oft"\n')
    assert other.config.network.type == "lora" and other.unsupported[0][0] == "LoRA_type"


@pytest.mark.parametrize("text, match", [
    ("network_dim = ", "sd-scripts config: .*fix the TOML"),  # broken TOML
    ("my_config.toml", "is not a file"),
    ('sample_prompts = "prompts.json"\n', "only .txt prompt files"),
    ('sample_prompts = "missing.txt"\n', "no such file"),
    ('network_args = ["conv_dim"]\n', "not key=value"),
    ('sample_sampler = "k_dpm_3"\n', "Did you mean"),
])
def test_bad_input_is_refused_with_what_to_do(text, match):
    with pytest.raises(ConfigError, match=match):
        import_sd_scripts_toml(text)


def test_cli_imports_a_toml_and_leaves_it_unchanged(config_dir):
    src = config_dir / "sd_scripts_config.toml"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = config_dir / "lorakit.toml"
    run = subprocess.run([sys.executable, "-m", "lorakit", "config", "import-kohya", str(src), "-o", str(out)],
                         capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""}, cwd=config_dir)
    assert run.returncode == 0, run.stderr
    assert "max_token_length" in run.stdout and TrainConfig.load(out).optimizer.optimizer == "Lion"
    assert TrainConfig.load(out).data.max_token_length == 225
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    again = subprocess.run([sys.executable, "-m", "lorakit", "config", "import-kohya", str(src), "-o", str(out)],
                           capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert again.returncode != 0 and "--force" in again.stderr + again.stdout
