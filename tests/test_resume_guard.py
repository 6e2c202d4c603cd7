"""--resume continues only the run its state was saved by: a changed rank, batch size, dataset or base model is
refused with one sentence, before any long work and with no file touched; --init-from starts a new run from a
LoRA file's weights (kohya's network_weights)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorakit.cli.main import main
from lorakit.config.kohya import import_kohya
from lorakit.config.sd_scripts import import_sd_scripts_toml
from lorakit.errors import ConfigError, ResumeError
from lorakit.lora.network import Network, detach_all
from lorakit.lora.warm_start import check_init_file, load_init_weights
from lorakit.models.loading import load_base
from lorakit.train.fingerprint import changes, run_fingerprint
from lorakit.train.loop import Callback, train
from lorakit.train.state import json_path


class CtrlC(Callback):
    def on_step(self, step, loss, lr):
        if step == 2:
            raise KeyboardInterrupt


def _files(project) -> dict[str, bytes]:
    return {str(p.relative_to(project.root)): p.read_bytes() for p in sorted(project.root.rglob("*"))
            if p.is_file() and "cache" not in p.parts and p.name != ".lock"}


@pytest.fixture()
def interrupted(tiny_project):
    project, cfg = tiny_project
    result = train(project, cfg, callbacks=[CtrlC()])
    assert result.interrupted and result.steps == 2
    return project, cfg


@pytest.mark.parametrize("change,says", [
    (lambda cfg: setattr(cfg.network, "rank", 8), "network.rank 4 -> 8"),
    (lambda cfg: setattr(cfg.training, "train_batch_size", 2), "training.train_batch_size 1 -> 2"),
    (lambda cfg: setattr(cfg.training, "seed", 7), "training.seed 42 -> 7"),
])
def test_a_changed_setting_is_refused_with_what_changed(interrupted, change, says):
    project, cfg = interrupted
    before = _files(project)
    change(cfg)
    with pytest.raises(ResumeError) as err:
        train(project, cfg, resume=True)
    msg = str(err.value)
    assert says in msg and "without --resume" in msg and "size mismatch" not in msg
    assert _files(project) == before, "nothing written, moved or deleted"


def test_a_changed_dataset_is_refused_and_names_the_files(interrupted):
    project, cfg = interrupted
    folder = project.dataset_dir / "2_zkx"
    (folder / "img01.txt").write_text("zkx, another caption", encoding="utf-8")
    shutil.copy(folder / "img02.png", folder / "img09.png")
    (folder / "img03.png").write_bytes((folder / "img00.png").read_bytes())
    with pytest.raises(ResumeError) as err:
        train(project, cfg, resume=True)
    msg = str(err.value)
    assert "1 image added (img09.png)" in msg and "1 image changed (img03.png)" in msg
    assert "1 caption changed (img01.png)" in msg


def test_a_changed_base_model_is_refused(interrupted, tmp_path, tiny_sd1):
    project, cfg = interrupted
    other = tmp_path / "another-model"
    shutil.copytree(tiny_sd1, other)
    cfg.model.base_model = str(other)
    with pytest.raises(ResumeError, match="the base model"):
        train(project, cfg, resume=True)


def test_what_may_change_on_resume_still_resumes(interrupted):
    project, cfg = interrupted
    cfg.optimizer.unet_lr = 5e-4  # tuning a rate or sample prompts is how a run is nursed along
    cfg.sampling.sample_prompts = ["zkx, thing"]
    resumed = train(project, cfg, resume=True)
    assert resumed.steps == 16 and resumed.final.name == "zkx.safetensors"


def test_a_state_from_before_fingerprints_resumes_with_a_note(interrupted):
    project, cfg = interrupted
    meta_path = json_path(project.state_dir / "state.safetensors")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert set(meta["state"]["fingerprint"]) == {"settings", "dataset", "base"}
    assert len(meta["state"]["fingerprint"]["dataset"]) == 4
    del meta["state"]["fingerprint"]
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    seen = []

    class Notes(Callback):
        def on_start(self, info):
            seen.extend(info.get("notes", []))

    resumed = train(project, cfg, resume=True, callbacks=[Notes()])
    assert resumed.steps == 16
    assert any("predates resume checks" in n for n in seen), seen


def test_changes_are_one_phrase_each(tiny_project):
    project, cfg = tiny_project
    now = run_fingerprint(project, cfg)
    assert changes(now, now) == []
    cfg.network.alpha = 8.0
    assert changes(now, run_fingerprint(project, cfg)) == ["network.alpha 2.0 -> 8.0"]


# ---- the warm start ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tiny_sd1):
    return load_base(str(tiny_sd1))


def _delta(sd: dict, key: str) -> torch.Tensor:
    up, down = sd[f"{key}.lora_up.weight"].float(), sd[f"{key}.lora_down.weight"].float()
    return sd[f"{key}.alpha"].float() / down.shape[0] * up.flatten(1) @ down.flatten(1)


def _trained_file(base, cfg, path, seed=0):
    net = Network.attach(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    for model in net.parts.values():
        for p in model.parameters():
            if p.requires_grad:
                p.data += 0.05 * torch.randn(p.shape, generator=gen)
    save_file(net.kohya_state_dict(torch.float32), str(path))
    net.detach()
    return load_file(str(path))


@pytest.mark.parametrize("kind,alpha", [("lora", 2.0), ("lora", 8.0), ("dora", 2.0), ("loha", 2.0)])
def test_a_warm_start_begins_at_the_files_delta(base, tiny_project, tmp_path, kind, alpha):
    _, cfg = tiny_project
    cfg.network.type = kind
    path = tmp_path / f"{kind}.safetensors"
    sd = _trained_file(base, cfg, path)
    cfg.network.alpha = alpha  # another alpha: the up factors are rescaled, the delta stays the file's
    check_init_file(path, cfg)
    net = Network.attach(base, cfg)
    note = load_init_weights(net, path)
    out = net.kohya_state_dict(torch.float32)
    detach_all(base)
    assert set(out) == set(sd) and f"{len({k.split('.')[0] for k in sd})} layers loaded" in note
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    if kind == "loha":
        for name in ("hada_w1_b", "hada_w2_a", "hada_w2_b"):
            assert torch.equal(out[f"{key}.{name}"], sd[f"{key}.{name}"])
    else:
        torch.testing.assert_close(_delta(out, key), _delta(sd, key), rtol=1e-5, atol=1e-7)
        if kind == "dora":
            assert torch.equal(out[f"{key}.dora_scale"], sd[f"{key}.dora_scale"])


def test_a_file_that_does_not_fit_is_refused_before_training(base, tiny_project, tmp_path, tiny_sdxl):
    _, cfg = tiny_project
    path = tmp_path / "r4.safetensors"
    _trained_file(base, cfg, path)
    with pytest.raises(ConfigError, match="no file at"):
        check_init_file(tmp_path / "missing.safetensors", cfg)
    cfg.network.rank = 8
    with pytest.raises(ConfigError, match="set network.rank = 4"):
        check_init_file(path, cfg)
    cfg.network.rank, cfg.network.type = 4, "loha"
    with pytest.raises(ConfigError, match="is a lora file and network.type is 'loha'"):
        check_init_file(path, cfg)
    cfg.network.type = "lora"
    xl = load_base(str(tiny_sdxl))
    xl_path = tmp_path / "xl.safetensors"
    _trained_file(xl, cfg, xl_path)
    net = Network.attach(base, cfg)
    try:
        with pytest.raises(ConfigError, match="trained for another model"):
            load_init_weights(net, xl_path)
    finally:
        detach_all(base)


def test_cli_init_from_trains_a_new_run_from_the_file(tiny_project, capsys):
    project, cfg = tiny_project
    first = train(project, cfg)
    start = project.root / "start.safetensors"
    shutil.copy(first.final, start)
    assert main(["train", str(project.root), "--init-from", str(start), "--max-steps", "2"]) == 0
    assert "zkx.safetensors" in capsys.readouterr().out


def test_resume_and_init_from_together_is_a_usage_error(tiny_project, capsys):
    project, _ = tiny_project
    with pytest.raises(SystemExit) as err:
        main(["train", str(project.root), "--resume", "--init-from", "x.safetensors"])
    assert err.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_kohya_network_weights_become_init_from(tmp_path):
    gui = import_kohya({"lora_network_weights": "/loras/start.safetensors", "LoRA_type": "Standard"})
    assert gui.config.network.init_from == "/loras/start.safetensors"
    toml = tmp_path / "cfg.toml"
    toml.write_text('network_weights = "/loras/start.safetensors"\nnetwork_module = "networks.lora"\n',
                    encoding="utf-8")
    assert import_sd_scripts_toml(toml).config.network.init_from == "/loras/start.safetensors"


def test_a_flat_validation_folder_is_part_of_the_fingerprint(tiny_project):
    from conftest import write_images

    project, cfg = tiny_project
    write_images(project.root / "validation", 2, seed=5)  # images directly in the folder, as validation reads
    cfg.validation.enabled, cfg.validation.dir = True, "validation"
    names = set(run_fingerprint(project, cfg)["dataset"])
    assert {"validation/img00.png", "validation/img01.png"} <= names and len(names) == 6


def test_notebook_03_offers_the_projects_loras_to_start_from(tiny_project, tmp_path):
    from lorakit.ui.train import TrainForm

    project, cfg = tiny_project
    files = [project.output_dir / "zkx-000001.safetensors", project.output_dir / "zkx.safetensors"]
    form = TrainForm(cfg, can_resume=True, loras=files)
    assert [v for _, v in form.start_from.options] == ["", *map(str, files)]
    assert form.value().network.init_from == "", "from zero unless a file is picked"
    form.start_from.value = str(files[0])
    assert form.value().network.init_from == str(files[0])
    form.resume.value = True
    with pytest.raises(ConfigError, match="not both"):
        form.value()
