"""Each family trains on CPU and its file loads back with diffusers; text-encoder options; a fixed seed repeats."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import lorakit.train.loop as train_mod
import lorakit.train.prepare as prepare_mod
from conftest import write_images
from lorakit.config.schema import TrainConfig
from lorakit.lora.file import read_lora_metadata
from lorakit.lora.network import Network, detach_all, te_key, unet_key
from lorakit.models.loading import Family, load_base
from lorakit.project import Project
from lorakit.train.loop import Callback, train


def _project(tmp_path, model, steps: int = 3, **changes) -> tuple[Project, TrainConfig]:
    project = Project.create(tmp_path / "proj")
    write_images(project.dataset_dir / "1_zkx", 3)
    cfg = TrainConfig()
    cfg.model.base_model = str(model)
    cfg.data.resolution, cfg.data.cache_latents_to_disk = 64, False
    cfg.data.min_bucket_reso, cfg.data.max_bucket_reso, cfg.data.bucket_reso_steps = 32, 128, 32
    cfg.network.rank, cfg.network.alpha = 4, 2.0
    cfg.training.max_train_epochs, cfg.training.max_train_steps = 10, steps
    cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr = 1e-2, 1e-3
    cfg.saving.output_name, cfg.saving.save_precision, cfg.saving.save_every_n_epochs = "zkx", "float", 0
    cfg.sampling.sample_every_n_epochs = 0
    for key, value in changes.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return project, cfg.validate()


@pytest.fixture(scope="module")
def models(tiny_sd1, tiny_sd2v, tiny_sdxl):
    return {"sd1": tiny_sd1, "sd2-v": tiny_sd2v, "sdxl": tiny_sdxl}


def test_family_is_detected_and_shown(models):
    for name, path in models.items():
        base = load_base(str(path))
        assert base.family.name == name and name in base.describe()
    assert load_base(str(models["sd2-v"])).prediction_type == "v_prediction"


def test_mismatches_warn(models):
    with pytest.warns(UserWarning, match="v-model"):
        load_base(str(models["sd2-v"]), prediction_type="epsilon")
    with pytest.warns(UserWarning, match="looks like sd1"):
        load_base(str(models["sd1"]), family="sdxl")


EXPECTED = {  # family: (ss_base_model_version, ss_v2, ss_v_parameterization, modelspec.architecture)
    "sd1": ("sd_v1", "False", "False", "stable-diffusion-v1/lora"),
    "sd2-v": ("sd_v2", "True", "True", "stable-diffusion-v2-768-v/lora"),
    "sdxl": ("sdxl_base_v1-0", "False", "False", "stable-diffusion-xl-v1-base/lora"),
}


@pytest.mark.parametrize("family", ["sd1", "sd2-v", "sdxl"])
def test_each_family_trains_and_its_file_loads_in_diffusers(models, tmp_path, monkeypatch, family):
    project, cfg = _project(tmp_path, models[family])
    seen = {"targets": set(), "added": []}
    real_target = train_mod.training_target

    def spy_target(sched, latents, noise, t, prediction_type):
        seen["targets"].add(prediction_type)
        return real_target(sched, latents, noise, t, prediction_type)

    monkeypatch.setattr(train_mod, "training_target", spy_target)
    base = load_base(str(models[family]))
    real_forward = base.unet.forward
    monkeypatch.setattr(base.unet, "forward", lambda *a, **k: (seen["added"].append(k.get("added_cond_kwargs")),
                                                               real_forward(*a, **k))[1])
    result = train(project, cfg)
    monkeypatch.undo()
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    assert seen["targets"] == {"v_prediction" if family == "sd2-v" else "epsilon"}
    if family == "sdxl":  # pooled text embedding and size/crop ids reach the UNet
        added = seen["added"][0]
        assert added["text_embeds"].shape == (1, 32) and added["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]]
    else:
        assert seen["added"][0] is None
    meta = read_lora_metadata(result.final)
    got = (meta["ss_base_model_version"], meta["ss_v2"], meta["ss_v_parameterization"], meta["modelspec.architecture"])
    assert got == EXPECTED[family]

    sd = load_file(result.final)
    groups = {k.rsplit(".", 1)[0] for k in sd if k.endswith(".alpha")}
    # folder + weight_name: diffusers before 0.40 refuses a bare file path offline (the floors run)
    base.pipe.load_lora_weights(str(result.final.parent), weight_name=result.final.name, adapter_name="check")
    try:
        parts = [("lora_unet", base.unet)] + list(zip(base.family.te_prefixes(), base.text_encoders, strict=True))
        applied = {}
        for prefix, model in parts:
            for name, module in model.named_modules():
                if "check" in getattr(module, "lora_A", {}):
                    key = unet_key(base, name) if prefix == "lora_unet" else te_key(prefix, name)
                    applied[key] = module.get_delta_weight("check")
        assert set(applied) == groups, "every tensor of the file was applied, by the pipeline's own loader"
        assert any(k.startswith("lora_te") for k in groups)
        for key in groups:
            up, down = sd[f"{key}.lora_up.weight"], sd[f"{key}.lora_down.weight"]
            expected = (up.flatten(1) @ down.flatten(1)).reshape(applied[key].shape) * sd[f"{key}.alpha"] / 4
            torch.testing.assert_close(applied[key], expected, rtol=1e-5, atol=1e-7)
    finally:
        detach_all(base)


class _Snapshots(Callback):
    def __init__(self, holder):
        self.holder, self.te, self.unet = holder, [], []

    def on_step(self, step, loss, lr):
        net = self.holder[0]
        self.te.append(torch.cat([p.detach().flatten().clone() for p in net.parameters("lora_te")]))
        self.unet.append(torch.cat([p.detach().flatten().clone() for p in net.parameters("lora_unet")]))


def test_text_encoder_stops_after_n_steps_with_its_own_lr(models, tmp_path, monkeypatch):
    project, cfg = _project(tmp_path, models["sd1"], steps=4, optimizer__stop_text_encoder_training=2)
    holder, lrs = [], []
    real_attach, real_opt = Network.attach, prepare_mod.build_optimizer
    monkeypatch.setattr(Network, "attach", classmethod(lambda cls, b, c: holder.append(real_attach(b, c)) or holder[0]))
    monkeypatch.setattr(prepare_mod, "build_optimizer", lambda c, g: lrs.extend(x["lr"] for x in g) or real_opt(c, g))
    snaps = _Snapshots(holder)
    train(project, cfg, callbacks=[snaps])
    assert lrs == [1e-2, 1e-3], "UNet and text encoder each get their own learning rate"
    te, unet = snaps.te, snaps.unet
    assert not torch.equal(te[0], te[1]), "the text encoder trains during the first 2 steps"
    assert torch.equal(te[1], te[2]) and torch.equal(te[2], te[3]), "and not after"
    assert not torch.equal(unet[2], unet[3]), "the UNet keeps training"


def test_frozen_text_encoder_writes_no_te_keys(models, tmp_path):
    project, cfg = _project(tmp_path, models["sd1"], steps=2, optimizer__text_encoder_lr=0.0)
    result = train(project, cfg)
    assert not any(k.startswith("lora_te") for k in load_file(result.final))


def test_clip_skip_uses_an_earlier_layer(models, tmp_path, monkeypatch):
    base = load_base(str(models["sd1"]))
    ids = base.family.tokenize(base, ["zkx, thing"])
    with torch.no_grad():
        last, _ = base.family.encode(base, ids, clip_skip=1)
        skip2, _ = base.family.encode(base, ids, clip_skip=2)
        te = base.text_encoders[0]
        hidden = te(ids[0], output_hidden_states=True).hidden_states[-2]
        expected = (te.text_model if hasattr(te, "text_model") else te).final_layer_norm(hidden)
    assert not torch.allclose(last, skip2)
    torch.testing.assert_close(skip2, expected)
    used = []
    real = Family.encode
    monkeypatch.setattr(Family, "encode", lambda self, b, i, clip_skip=1: used.append(clip_skip) or real(self, b, i,
                                                                                                       clip_skip))
    project, cfg = _project(tmp_path, models["sd1"], steps=1, model__clip_skip=2)
    train(project, cfg)
    assert used and set(used) == {2}


def test_same_seed_same_lora_tensors(models, tmp_path):
    files = []
    for run in ("a", "b"):
        project, cfg = _project(tmp_path / run, models["sd1"], steps=3, training__noise_offset=0.05,
                                training__min_snr_gamma=5.0, training__multires_noise_iterations=4)
        files.append(load_file(train(project, cfg).final))
    assert files[0].keys() == files[1].keys()
    assert all(torch.equal(files[0][k], files[1][k]) for k in files[0]), "bit-identical tensors on CPU"
    project, cfg = _project(tmp_path / "c", models["sd1"], steps=3, training__seed=7, training__noise_offset=0.05,
                            training__min_snr_gamma=5.0)
    other = load_file(train(project, cfg).final)
    assert any(not torch.equal(files[0][k], other[k]) for k in other), "another seed, another LoRA"


def test_timestep_range_input_perturbation_and_debiased_loss(models, tmp_path, monkeypatch):
    drawn = []
    real = train_mod.sample_timesteps
    monkeypatch.setattr(train_mod, "sample_timesteps", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    plain = load_file(train(*_project(tmp_path / "plain", models["sd1"], steps=3)).final)
    drawn.clear()
    options = dict(training__min_timestep=500, training__max_timestep=900, training__ip_noise_gamma=0.1,
                   training__debiased_estimation_loss=True)
    result = train(*_project(tmp_path / "opts", models["sd1"], steps=3, **options))
    t = torch.cat(drawn)
    assert len(t) >= 3 and t.min() >= 500 and t.max() < 900
    tuned = load_file(result.final)
    assert any(not torch.equal(plain[k], tuned[k]) for k in plain)
    meta = read_lora_metadata(result.final)
    assert meta["ss_debiased_estimation"] == "True" and meta["ss_ip_noise_gamma"] == "0.1"
    for flag in ("training__ip_noise_gamma", "training__debiased_estimation_loss"):  # each one alone matters too
        one = {"training__min_timestep": 500, "training__max_timestep": 900, flag: options[flag]}
        base = load_file(train(*_project(tmp_path / f"{flag}-off", models["sd1"], steps=2, training__min_timestep=500,
                                         training__max_timestep=900)).final)
        alone = load_file(train(*_project(tmp_path / flag, models["sd1"], steps=2, **one)).final)
        assert any(not torch.equal(base[k], alone[k]) for k in base), flag
