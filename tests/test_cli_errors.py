"""Every refusal at the command line is one sentence naming the file or setting, with exit status 2, and leaves the
user's files as they were (broken base models, broken LoRA files, impossible grid settings, bad TOML values)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lorakit.cli.main import main
from lorakit.train.loop import train


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def trained(tiny_project):
    project, cfg = tiny_project
    train(project, cfg)
    return project, cfg


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_one_sentence(err: str, *words: str) -> None:
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def test_a_truncated_base_model_is_named_by_train_grid_and_doctor(trained, tmp_path, capsys):
    project, cfg = trained
    broken = tmp_path / "v1-5-pruned.safetensors"
    broken.write_bytes(project.checkpoints()[-1].read_bytes()[:600])  # a download cut short
    cfg.model.base_model = str(broken)
    cfg.save(project.config_path)
    before = digest(project.root)
    for argv in (["train", str(project.root)], ["grid", str(project.root), "--prompt", "zkx"]):
        code, err = run(argv, capsys)
        assert code == 2
        assert_one_sentence(err, broken.name)
    assert main(["doctor", "--base-model", str(broken)]) == 1
    assert broken.name in capsys.readouterr().out
    after = digest(project.root)
    assert {k: v for k, v in after.items() if not k.startswith("logs")} == {
        k: v for k, v in before.items() if not k.startswith("logs")}, "nothing in the project changed"


def test_a_truncated_lora_file_in_a_grid_is_named(trained, capsys):
    project, _ = trained
    good = project.checkpoints()[-1]
    cut = project.output_dir / "zkx-000009.safetensors"
    cut.write_bytes(good.read_bytes()[:3000])
    code, err = run(["grid", str(project.root), "--prompt", "zkx", "--y", "strength=1", "--steps", "2"], capsys)
    assert code == 2
    assert_one_sentence(err, cut.name, "truncated")


@pytest.mark.parametrize("flags,word", [(["--steps", "0"], "steps = 0"), (["--x", "steps=5,0"], "steps = 0"),
                                        (["--cfg", "-1"], "cfg = -1"), (["--seed", "-3"], "seed = -3")])
def test_impossible_grid_settings_are_refused_before_drawing(trained, capsys, flags, word):
    project, _ = trained
    before = digest(project.root)
    code, err = run(["grid", str(project.root), "--prompt", "zkx", *flags], capsys)
    assert code == 2
    assert_one_sentence(err, word)
    assert digest(project.root) == before, "no grid written"


def test_a_wrong_type_in_the_toml_is_one_sentence(trained, capsys):
    project, _ = trained
    text = project.config_path.read_text()
    project.config_path.write_text(text.replace("base_model = ", "base_model = 5 #", 1))
    code, err = run(["train", str(project.root)], capsys)
    assert code == 2
    assert_one_sentence(err, "model.base_model")
