"""Single-file checkpoints load offline, exactly, with the family read from the file's layout."""

from __future__ import annotations

import re
import warnings
from types import SimpleNamespace

import pytest
import torch

from lorakit.errors import ModelError
from lorakit.models.loading import load_base
from lorakit.models.single_file import (
    architecture_configs,
    base_weights,
    checkpoint_keys,
    detect_checkpoint_family,
    save_single_file,
    to_original_state_dict,
)


def _same_weights(a, b) -> None:
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        pa, pb = getattr(a.pipe, name, None), getattr(b.pipe, name, None)
        assert (pa is None) == (pb is None), name
        if pa is None:
            continue
        sa, sb = base_weights(pa), base_weights(pb)  # a cached base may carry another test's adapters
        assert set(sa) == set(sb), name
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k}"


@pytest.fixture(scope="module")
def folders(tiny_sd1, tiny_sd2v, tiny_sdxl):
    return {"sd1": tiny_sd1, "sd2-v": tiny_sd2v, "sdxl": tiny_sdxl}


@pytest.mark.parametrize("family", ["sd1", "sd2-v", "sdxl"])
def test_single_file_round_trip_is_exact(folders, tmp_path, family):
    folder = folders[family]
    ref = load_base(str(folder))
    path = save_single_file(ref.pipe, tmp_path / "model.safetensors", family)
    assert detect_checkpoint_family(checkpoint_keys(path)) == ("sd2" if family == "sd2-v" else family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_base(str(path), single_file_config=folder)
    if family == "sd2-v":  # a v-model is not marked in the file: the assumption is said out loud
        assert any("v-prediction" in str(w.message) for w in caught)
    assert loaded.family.name == family and loaded.prediction_type == ref.prediction_type
    _same_weights(ref, loaded)
    ids = loaded.family.tokenize(loaded, ["a red circle"])
    with torch.no_grad():
        h_ref, p_ref = ref.family.encode(ref, ids)
        h, p = loaded.family.encode(loaded, ids)
    # equal weights; the attention kernel transformers picks may differ between the two loaders (≈1e-7)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
    if family == "sdxl":
        torch.testing.assert_close(p, p_ref, rtol=1e-5, atol=1e-6)


def test_yaml_beside_an_sd2_file_marks_it_v(folders, tmp_path):
    ref = load_base(str(folders["sd2-v"]))
    path = save_single_file(ref.pipe, tmp_path / "sd21.safetensors", "sd2-v")
    path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no guess, so no warning
        loaded = load_base(str(path), single_file_config=folders["sd2-v"])
    assert loaded.family.name == "sd2-v"


def test_pickled_checkpoint_needs_allow_pickle(folders, tmp_path):
    ref = load_base(str(folders["sd1"]))
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": to_original_state_dict(ref.pipe, "sd1")}, path)
    with pytest.raises(ModelError, match="allow_pickle"):
        load_base(str(path))
    loaded = load_base(str(path), allow_pickle=True, single_file_config=folders["sd1"])
    _same_weights(ref, loaded)


TE1 = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
WRONG_BASES = {  # a file a user might give as base model: its tensors (name -> shape), and the words naming it
    "lora": ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 8),
              "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": (8, 4)}, "a LoRA"),
    "lycoris": ({"lycoris_down_0.hada_w1_a": (8, 2), "lycoris_down_0.hada_w1_b": (2, 8)}, "a LoRA"),
    "embedding": ({"emb_params": (2, 768)}, "textual-inversion embedding"),
    "vae": ({"encoder.down.0.block.0.conv1.weight": (8, 8, 3, 3), "decoder.up.0.block.0.conv1.weight": (8, 8, 3, 3)},
            "a VAE"),
    "diffusers unet": ({"conv_in.weight": (8, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": (8, 8, 3, 3)},
                       "UNet in diffusers layout"),
    "inpainting": ({CONV_IN: (8, 9, 3, 3), TE1: (49408, 8), "first_stage_model.decoder.conv_in.weight": (8, 4, 3, 3)},
                   "inpainting model (its UNet takes 9 input channels"),
    "refiner": ({CONV_IN: (8, 4, 3, 3), "conditioner.embedders.0.model.token_embedding.weight": (49408, 8)},
                "SDXL refiner"),
    "unet only": ({CONV_IN: (8, 4, 3, 3)}, "UNet-only file"),
    "sd3": ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (24, 8),
             "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": (49408, 8)},
            "Stable Diffusion 3"),
    "flux": ({"double_blocks.0.img_attn.qkv.weight": (24, 8)}, "Flux"),
    "unknown": ({CONV_IN: (8, 4, 3, 3), "cond_stage_model.weird_encoder.weight": (8, 8)}, "unknown architecture"),
    "nothing known": ({"some.weight": (2, 2)}, "no Stable Diffusion UNet"),
}


@pytest.mark.parametrize("case", sorted(WRONG_BASES))
def test_a_file_that_is_not_a_base_model_is_named_with_what_it_is(case, tmp_path, capsys):
    """Training's loader, `lorakit doctor` and the LoRA tools each refuse it in one sentence naming the file and
    what it holds; nothing is written beside it."""
    from safetensors.torch import save_file

    from lorakit.cli.main import main
    from lorakit.errors import LoraToolError
    from lorakit.lora.tools.checkpoint import CheckpointLayout
    from lorakit.models.inspection import inspect_base_model

    tensors, words = WRONG_BASES[case]
    path = tmp_path / "my_model.safetensors"
    save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ModelError, match=re.escape(words)) as err:
        load_base(str(path))
    assert str(err.value).startswith("my_model.safetensors: ") and "give" in str(err.value).lower()
    report = inspect_base_model(path)
    assert any(words in p and "my_model.safetensors" in p for p in report.problems)
    with pytest.raises(LoraToolError, match=re.escape(words)):
        CheckpointLayout.of(path)
    assert main(["doctor", "--base-model", str(path)]) != 0
    assert words in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_without_a_config_nothing_is_downloaded(folders, tmp_path, monkeypatch):
    """Offline and without a local tokenizer, the error says what to do; it never reaches for the network."""
    import huggingface_hub

    ref = load_base(str(folders["sd1"]))
    path = save_single_file(ref.pipe, tmp_path / "m.safetensors", "sd1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("network access"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="tokenizer|could not be loaded"):
        load_base(str(path))


@pytest.mark.parametrize("family,diffusers_type", [("sd1", "v1"), ("sd2-v", "v2"), ("sdxl", "xl_base")])
def test_shipped_architecture_configs_match_real_checkpoints(family, diffusers_type):
    """The shipped configs, built on the meta device, give exactly the key layout and shapes diffusers expects."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfgs = architecture_configs(family)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(cfgs["unet"])
        vae = AutoencoderKL.from_config(cfgs["vae"])
        te = CLIPTextModel(CLIPTextConfig(**cfgs["text_encoder"]))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfgs["text_encoder_2"])) if family == "sdxl" else None
    sd = to_original_state_dict(SimpleNamespace(unet=unet, vae=vae, text_encoder=te, text_encoder_2=te2), family)
    assert sfu.infer_diffusers_model_type(sd) == diffusers_type, "diffusers recognises the real layout"
    assert detect_checkpoint_family(set(sd)) == ("sd2" if family == "sd2-v" else family)
    for model, converted in ((unet, sfu.convert_ldm_unet_checkpoint(sd, cfgs["unet"])),
                             (vae, sfu.convert_ldm_vae_checkpoint(sd, cfgs["vae"]))):
        ref = model.state_dict()
        assert set(converted) == set(ref)
        assert all(converted[k].shape == ref[k].shape for k in ref)
    n_params = sum(p.numel() for p in unet.parameters())
    assert {"sd1": 859_520_964, "sd2-v": 865_910_724, "sdxl": 2_567_463_684}[family] == n_params


@pytest.mark.parametrize("family", ["sd1", "sd2-v", "sdxl"])
def test_tiny_pipelines_save_and_load_exactly(folders, family):
    """A saved tiny pipeline loads back bit for bit (SDXL's second encoder included) and builds the same each time."""
    from lorakit.models.tiny import build_tiny_pipeline

    built = SimpleNamespace(pipe=build_tiny_pipeline(family, seed=0))
    _same_weights(built, load_base(str(folders[family])))


def test_a_config_folder_without_tokenizers_and_a_small_vocabulary_says_so(folders, tmp_path):
    """The shipped CLIP tokenizer fits only CLIP's 49,408 embeddings: for a tiny model the error names the sizes."""
    import shutil

    ref = load_base(str(folders["sdxl"]))
    config = tmp_path / "config"
    shutil.copytree(folders["sdxl"], config, ignore=shutil.ignore_patterns("tokenizer*", "*.safetensors"))
    path = save_single_file(ref.pipe, tmp_path / "xl.safetensors", "sdxl")
    n = ref.pipe.text_encoder.config.vocab_size
    with pytest.raises(ModelError, match=f"{n} token embeddings, not CLIP's 49408.*single_file_config"):
        load_base(str(path), single_file_config=config)


def test_a_pipeline_with_loras_applied_saves_its_own_weights(tiny_sd1, tmp_path):
    from lora_fakes import write_kohya_lora

    from lorakit.evaluate.generate import Generator
    from lorakit.models.single_file import to_original_state_dict

    base = load_base(str(tiny_sd1))
    clean = {k: v.clone() for k, v in to_original_state_dict(base.pipe, "sd1").items()}
    lora = write_kohya_lora(tmp_path / "a.safetensors", base, seed=3, scale=0.3)
    gen = Generator(base)
    gen.apply([(lora, 1.0)])  # peft now wraps the attention layers of the shared, cached pipeline
    assert any(".base_layer." in k for k in base.unet.state_dict())
    saved = to_original_state_dict(base.pipe, "sd1")
    assert set(saved) == set(clean) and all(torch.equal(saved[k], clean[k]) for k in clean)
