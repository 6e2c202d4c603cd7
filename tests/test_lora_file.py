"""The written LoRA file: kohya keys, real alpha, metadata, and diffusers applies every tensor of it exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lorakit.evaluate.generate import Generator
from lorakit.lora.file import read_lora_metadata
from lorakit.lora.network import ADAPTER, Network, te_key, unet_key
from lorakit.models.loading import load_base
from lorakit.train.loop import train
from lorakit.train.state import STATE_FILE, load_state


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sd1):
    from conftest import write_images
    from lorakit.config.schema import TrainConfig
    from lorakit.project import Project

    project = Project.create(tmp_path_factory.mktemp("lora") / "proj")
    write_images(project.dataset_dir / "2_zkx", 4)
    cfg = TrainConfig()
    cfg.model.base_model = str(tiny_sd1)
    cfg.data.resolution = 64
    cfg.data.min_bucket_reso, cfg.data.max_bucket_reso, cfg.data.bucket_reso_steps = 32, 128, 32
    cfg.network.type, cfg.network.rank, cfg.network.alpha = "locon", 4, 2.0
    cfg.network.conv_rank, cfg.network.conv_alpha = 2, 1.0
    cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr = 1e-2, 1e-3
    cfg.training.max_train_epochs = 2
    cfg.saving.output_name, cfg.saving.save_precision = "zkx", "float"
    cfg.saving.training_comment = "test run"
    result = train(project, cfg)
    return project, cfg, result


def test_checkpoints_are_named_like_kohya(trained):
    project, _, result = trained
    names = [p.name for p in result.checkpoints]
    assert names == ["zkx-000001.safetensors", "zkx.safetensors"]
    assert all(p.is_file() for p in result.checkpoints)
    assert not list(project.output_dir.glob(".*.tmp")), "no temporary files left behind"


def test_keys_are_kohya_format(trained):
    _, _, result = trained
    sd = load_file(result.final)
    groups = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in sd}
    assert all(g.startswith(("lora_unet_", "lora_te_")) for g in groups)
    for g in groups:
        assert {f"{g}.lora_down.weight", f"{g}.lora_up.weight", f"{g}.alpha"} <= set(sd)
    te = [g for g in groups if g.startswith("lora_te_")]
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in te, "classic text-encoder key names"
    assert not any("lora_te1_" in g or g.startswith("lora_te_encoder_") for g in groups)
    assert any("_resnets_0_conv1" in g for g in groups), "locon adds the ResNet convs"


def test_alpha_is_the_trained_alpha_not_the_rank(trained):
    _, _, result = trained
    sd = load_file(result.final)
    attn = sd["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.alpha"]
    conv = sd["lora_unet_down_blocks_0_resnets_0_conv1.alpha"]
    assert attn.dtype == torch.float32 and attn.item() == 2.0
    assert conv.item() == 1.0
    assert sd["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].shape[0] == 2  # conv rank


def test_metadata(trained):
    _, cfg, result = trained
    meta = read_lora_metadata(result.final)
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2.0"
    assert meta["ss_network_module"] == "networks.lora"
    assert '"conv_dim": "2"' in meta["ss_network_args"]
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_v2"] == "False"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert meta["ss_epoch"] == "2" and int(meta["ss_steps"]) == result.steps
    assert meta["ss_output_name"] == "zkx" and meta["ss_training_comment"] == "test run"
    assert '"zkx, thing 0": 1' not in meta["ss_tag_frequency"] and '"zkx": 4' in meta["ss_tag_frequency"]
    assert meta["ss_num_train_images"] == "8"  # 4 images x 2 repeats
    first = read_lora_metadata(result.checkpoints[0])
    assert first["ss_epoch"] == "1" and first["ss_session_id"] == meta["ss_session_id"]


def test_diffusers_applies_every_tensor_exactly(trained, tiny_sd1):
    """Load the file with diffusers; each adapted layer's delta equals the trained network's delta."""
    project, cfg, result = trained
    base = load_base(str(tiny_sd1))
    # the trained adapter, from the saved training state
    net = Network.attach(base, cfg)
    state = load_state(project.state_dir / STATE_FILE)
    net.load_trainable_state_dict(state["network"])
    trained_delta = {}
    for prefix, model in net.parts.items():
        for name, module in model.named_modules():
            if hasattr(module, "get_delta_weight") and ADAPTER in getattr(module, "lora_A", {}):
                key = unet_key(base, name) if prefix == "lora_unet" else te_key(prefix, name)
                trained_delta[key] = module.get_delta_weight(ADAPTER).detach().clone()
    net.detach()

    gen = Generator(base)
    adapter = gen._adapter_for(result.final)
    sd = load_file(result.final)
    file_groups = {k.rsplit(".", 1)[0] for k in sd if k.endswith(".alpha")}
    loaded = {}
    for prefix, model in [("lora_unet", base.unet), ("lora_te", base.text_encoders[0])]:
        for name, module in model.named_modules():
            if hasattr(module, "get_delta_weight") and adapter in getattr(module, "lora_A", {}):
                key = unet_key(base, name) if prefix == "lora_unet" else te_key(prefix, name)
                loaded[key] = module.get_delta_weight(adapter).detach()
    assert set(loaded) == file_groups, "every key in the file became a layer, and no layer is unexplained"
    assert set(trained_delta) == file_groups
    for key in file_groups:
        up, down = sd[f"{key}.lora_up.weight"], sd[f"{key}.lora_down.weight"]
        scale = sd[f"{key}.alpha"].item() / down.shape[0]
        if down.dim() == 4:
            expected = scale * torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
        else:
            expected = scale * up @ down
        torch.testing.assert_close(loaded[key], expected, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(loaded[key], trained_delta[key], rtol=1e-5, atol=1e-7)


def test_strength_zero_is_the_base_image_and_strength_changes_it(trained, tiny_sd1):
    _, _, result = trained
    gen = Generator(str(tiny_sd1))
    kw = dict(seed=3, steps=4, cfg=5.0, sampler="Euler")
    base_img = np.asarray(gen.generate("zkx, thing", **kw))
    zero = np.asarray(gen.generate("zkx, thing", loras=[(result.final, 0.0)], **kw))
    again = np.asarray(gen.generate("zkx, thing", **kw))
    half = np.asarray(gen.generate("zkx, thing", loras=[(result.final, 0.5)], **kw)).astype(int)
    full = np.asarray(gen.generate("zkx, thing", loras=[(result.final, 1.0)], **kw)).astype(int)
    assert np.array_equal(base_img, zero) and np.array_equal(base_img, again)
    d_half = np.abs(half - base_img).mean()
    d_full = np.abs(full - base_img).mean()
    assert d_half > 0 and d_full > d_half


def test_prompt_tag_applies_the_lora(trained, tiny_sd1):
    project, _, result = trained
    gen = Generator(str(tiny_sd1))
    kw = dict(seed=3, steps=4, cfg=5.0, sampler="Euler")
    tagged = np.asarray(gen.generate("zkx, thing <lora:zkx:1>", lora_dirs=[project.output_dir], **kw))
    explicit = np.asarray(gen.generate("zkx, thing", loras=[(result.final, 1.0)], **kw))
    assert np.array_equal(tagged, explicit)
