"""A1111's <lora:name:te:unet:dyn> tags and their te= / unet= / dyn= forms: parsed as A1111 reads them and applied,
text encoder and UNet each at its own strength, in notebook 04's generator, the grid and the ComfyUI handoff."""

from __future__ import annotations

import pytest
import torch
from lora_fakes import expected_delta, write_kohya_lora
from safetensors.torch import load_file

from lorakit.config.schema import check_sample_prompts
from lorakit.errors import ConfigError, GenerateError
from lorakit.evaluate.generate import Generator
from lorakit.evaluate.grid_spec import Cell
from lorakit.evaluate.handoff import comfyui_workflow
from lorakit.lora.patching import layer_delta, limit_rank
from lorakit.lora.prompt_tags import LoraRef, LoraStrength, parse_prompt
from lorakit.models.loading import load_base

FAST = dict(steps=2, cfg=4.0, sampler="Euler")
TE_KEY = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
UNET_KEY = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"


@pytest.mark.parametrize("tag,te,unet,dyn", [
    ("<lora:x>", 1.0, 1.0, None),
    ("<lora:x:0.8>", 0.8, 0.8, None),  # one number: both
    ("<lora:x:0.5:0.8>", 0.5, 0.8, None),  # A1111's order: te, then unet
    ("<lora:x:0.5:0.8:8>", 0.5, 0.8, 8),
    ("<lora:x:unet=0.8:te=0>", 0.0, 0.8, None),  # named, any order
    ("<lora:x:0.5:unet=0.2>", 0.5, 0.2, None),
    ("<lora:x:te=0.3>", 0.3, 0.3, None),  # the UNet follows te when it is not given
    ("<lora:x:1:dyn=4>", 1.0, 1.0, 4),
    ("<lora:x:1:1:0>", 1.0, 1.0, None),  # dyn 0 keeps every rank
    ("<lyco:x:0.7>", 0.7, 0.7, None),
    ("<lora: x :-0.5>", -0.5, -0.5, None),
])
def test_tags_are_read_as_a1111_reads_them(tag, te, unet, dyn):
    text, refs = parse_prompt(f"photo of zkx, {tag} smiling")
    assert text == "photo of zkx, smiling", "the tag leaves no words in the prompt"
    assert refs == [LoraRef("x", te, unet, dyn)]


@pytest.mark.parametrize("tag,says", [
    ("<lora:x:strong>", "not a number"),
    ("<lora:x:1:1:four>", "whole number"),
    ("<lora:x:wieght=0.5>", "te=, unet= or dyn="),
    ("<lora:x:1:1:8:2>", "at most three"),
    ("<lora::0.5>", "names no LoRA file"),
    ("<lora:x:dyn=-2>", "below 0"),
])
def test_a_bad_tag_is_refused_with_what_to_write(tag, says):
    with pytest.raises(GenerateError, match=says):
        parse_prompt(f"a cat {tag}")


def test_a_tag_in_a_training_sample_prompt_is_refused_before_training():
    with pytest.raises(ConfigError, match="not applied to training samples"):
        check_sample_prompts(["zkx cat <lora:other:0.5:1> --n blurry"])
    assert check_sample_prompts(["zkx cat --n blurry"]) == ["zkx cat --n blurry"]


@pytest.fixture(scope="module")
def base(tiny_sd1):
    return load_base(str(tiny_sd1))


@pytest.fixture(scope="module")
def lora(base, tmp_path_factory):
    return write_kohya_lora(tmp_path_factory.mktemp("tags") / "style_a.safetensors", base, rank=4, alpha=2.0,
                            seed=7, dtype=torch.float32)


def _delta(model, suffix: str) -> torch.Tensor:
    """The delta every active adapter adds to one layer, at its set scale."""
    module = next(m for n, m in model.named_modules() if n.endswith(suffix) and hasattr(m, "get_delta_weight"))
    return sum(module.get_delta_weight(a).detach().float() for a in module.active_adapters)


def test_te_and_unet_strengths_reach_their_own_models(base, lora):
    gen = Generator(base)
    gen.generate("zkx thing <lora:style_a:0.25:1.5>", seed=1, lora_dirs=[lora.parent], **FAST)
    torch.testing.assert_close(_delta(base.text_encoders[0], "layers.0.self_attn.q_proj"),
                               0.25 * expected_delta(lora, TE_KEY), rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(_delta(base.unet, "transformer_blocks.0.attn1.to_q"),
                               1.5 * expected_delta(lora, UNET_KEY), rtol=1e-3, atol=1e-5)
    # te=0: the text encoder is the base model's, the UNet still moves
    gen.apply([(lora, LoraStrength(unet=1.0, te=0.0))])
    assert float(_delta(base.text_encoders[0], "layers.0.self_attn.q_proj").abs().max()) == 0.0
    torch.testing.assert_close(_delta(base.unet, "transformer_blocks.0.attn1.to_q"), expected_delta(lora, UNET_KEY),
                               rtol=1e-3, atol=1e-5)
    gen.apply([])


def test_te_zero_draws_a_different_image_from_both_on(base, lora):
    import numpy as np

    gen = Generator(base)
    kw = dict(seed=3, lora_dirs=[lora.parent], **FAST)
    both = np.asarray(gen.generate("zkx thing <lora:style_a:1>", **kw)).astype(int)
    unet_only = np.asarray(gen.generate("zkx thing <lora:style_a:0:1>", **kw)).astype(int)
    same = np.asarray(gen.generate("zkx thing <lora:style_a:te=1:unet=1>", **kw)).astype(int)
    assert np.array_equal(both, same), "the positional and named forms are the same LoRA"
    assert np.abs(both - unet_only).mean() > 0.1, "switching the text encoder's part off changes the image"


def test_dyn_applies_only_the_first_ranks_at_the_files_scale(base, lora):
    state = load_file(str(lora))
    limited = limit_rank(state, 2)
    weight = torch.zeros(state[f"{UNET_KEY}.lora_up.weight"].shape[0], state[f"{UNET_KEY}.lora_down.weight"].shape[1])
    up, down = state[f"{UNET_KEY}.lora_up.weight"], state[f"{UNET_KEY}.lora_down.weight"]
    want = 2.0 / 4 * up[:, :2] @ down[:2]  # alpha / full rank, over the first two ranks
    torch.testing.assert_close(layer_delta(limited, UNET_KEY, weight), want, rtol=1e-5, atol=1e-6)
    assert limit_rank(state, 4)[f"{UNET_KEY}.lora_down.weight"] is state[f"{UNET_KEY}.lora_down.weight"]

    gen = Generator(base)
    layer = gen.patcher.index[UNET_KEY]
    before = layer.weight.detach().clone()
    gen.generate("zkx thing <lora:style_a:1:0.5:2>", seed=1, lora_dirs=[lora.parent], **FAST)
    torch.testing.assert_close(layer.weight.detach() - before, 0.5 * want, rtol=1e-4, atol=1e-5)
    te_layer = gen.patcher.index[TE_KEY]
    assert not torch.equal(te_layer.weight, gen.patcher._saved[TE_KEY]), "the text encoder gets its te=1 part"
    gen.apply([])
    assert torch.equal(layer.weight, before), "switched off: the exact base weights"


def test_comfyui_handoff_maps_te_and_unet_to_clip_and_model(tmp_path):
    cell = Cell(prompt="zkx <lora:style_a:0.4:0.9>", negative_prompt="", seed=1, cfg=7.0, steps=20,
                sampler="Euler a", checkpoint=None, strength=0.0)
    nodes = comfyui_workflow([cell], "base.safetensors", (512, 512), ["cell"])
    loader = next(n for n in nodes.values() if n["class_type"] == "LoraLoader")
    assert loader["inputs"]["strength_model"] == 0.9 and loader["inputs"]["strength_clip"] == 0.4
    text = next(n for n in nodes.values() if n["class_type"] == "CLIPTextEncode")
    assert "<lora" not in text["inputs"]["text"]
