"""Generation: A1111 samplers, several LoRAs at once, kohya files from other trainers, no base-model reloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lora_fakes import expected_delta, write_kohya_lora

from lorakit.errors import GenerateError
from lorakit.evaluate.generate import Generator
from lorakit.lora.prompt_tags import parse_prompt
from lorakit.models.loading import load_base
from lorakit.models.samplers import SAMPLERS, make_scheduler, sampler_name

FAST = dict(steps=2, cfg=4.0, sampler="Euler")


@pytest.fixture(scope="module")
def base(tiny_sd1):
    return load_base(str(tiny_sd1))


@pytest.fixture(scope="module")
def files(base, tmp_path_factory):
    """Two kohya files with UNet + text-encoder keys (fp16, as A1111 users share them) and one UNet-only file."""
    d = tmp_path_factory.mktemp("loras")
    return {
        "a": write_kohya_lora(d / "style_a.safetensors", base, seed=1),
        "b": write_kohya_lora(d / "style_b.safetensors", base, seed=2, rank=4, alpha=4.0),
        "unet_only": write_kohya_lora(d / "unet_only.safetensors", base, seed=3, text_encoder=False,
                                      dtype=torch.float32),
    }


def _pixels(img) -> np.ndarray:
    return np.asarray(img).astype(np.int16)


def _delta(model, suffix: str, adapter: str) -> torch.Tensor:
    module = next(m for n, m in model.named_modules() if n.endswith(suffix) and hasattr(m, "get_delta_weight"))
    return module.get_delta_weight(adapter).detach().float()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_a1111_sampler_runs(base, name):
    gen = Generator(base)
    img = gen.generate("zkx, thing", seed=5, steps=2, cfg=4.0, sampler=name)
    a = _pixels(img)
    assert img.size == (64, 64) and a.std() > 1, f"{name} drew a flat image"
    assert type(gen.pipe.scheduler).__name__ == SAMPLERS[name][0]


def test_sampler_names_and_errors(base):
    assert sampler_name("euler_a") == "Euler a" and sampler_name("dpm++_2m_karras") == "DPM++ 2M Karras"
    assert sampler_name("ddim") == "DDIM" and sampler_name("unipc") == "UniPC"
    with pytest.raises(GenerateError) as err:
        sampler_name("Eulr a")
    assert "Did you mean 'Euler a'" in str(err.value) and "LMS" in str(err.value) and "UniPC" in str(err.value)
    karras = make_scheduler(base.pipe.scheduler.config, "DPM++ 2M Karras")
    assert karras.config.use_karras_sigmas
    plain = make_scheduler(karras.config, "Euler")
    assert not plain.config.use_karras_sigmas, "Karras sigmas must not leak into the next sampler"
    assert not make_scheduler(base.pipe.scheduler.config, "DDIM").config.clip_sample, "latents are not clipped"


def test_parse_prompt_with_several_tags():
    text, refs = parse_prompt("a <lora:style_a:0.5> red circle, <lora:style_b> on blue")
    assert text == "a red circle, on blue"
    assert [(r.name, r.weight) for r in refs] == [("style_a", 0.5), ("style_b", 1.0)]


def test_kohya_files_from_other_trainers_load_exactly(base, files):
    gen = Generator(base)
    gen.apply([(files["a"], 1.0)])
    adapter = gen._adapters[str(files["a"].resolve())]
    te_key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    torch.testing.assert_close(_delta(base.text_encoders[0], "layers.0.self_attn.q_proj", adapter),
                               expected_delta(files["a"], te_key), rtol=1e-3, atol=1e-5)
    unet_key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    torch.testing.assert_close(_delta(base.unet, "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", adapter),
                               expected_delta(files["a"], unet_key), rtol=1e-3, atol=1e-5)
    base_img = _pixels(gen.generate("zkx, thing", seed=3, **FAST))
    only = _pixels(gen.generate("zkx, thing", seed=3, loras=[(files["unet_only"], 1.0)], **FAST))
    assert np.abs(only - base_img).mean() > 0.5, "a UNet-only file changes the image"


def test_several_loras_at_once(base, files):
    gen = Generator(base)
    kw = dict(seed=4, **FAST)
    a = _pixels(gen.generate("zkx, thing", loras=[(files["a"], 1.0)], **kw))
    b = _pixels(gen.generate("zkx, thing", loras=[(files["b"], 1.0)], **kw))
    both = _pixels(gen.generate("zkx, thing", loras=[(files["a"], 0.5), (files["b"], 1.0)], **kw))
    assert sorted(gen.pipe.get_active_adapters()) == sorted(gen._adapters[str(f.resolve())] for f in (files["a"], files["b"]))
    key, suffix = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k", "attn2.to_k"
    got = sum(_delta(base.unet, suffix, gen._adapters[str(f.resolve())]) for f in (files["a"], files["b"]))
    want = 0.5 * expected_delta(files["a"], key) + expected_delta(files["b"], key)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)
    assert np.abs(both - a).mean() > 0.5 and np.abs(both - b).mean() > 0.5


def test_switching_checkpoints_never_reloads_the_base_model(base, files, monkeypatch, tiny_sd1):
    import diffusers

    def forbidden(*args, **kwargs):
        raise AssertionError("the base model was loaded again")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", forbidden)
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_pretrained", forbidden)
    gen = Generator(str(tiny_sd1))  # the process cache answers
    pipe, unet = gen.pipe, gen.pipe.unet
    first = _pixels(gen.generate("zkx, thing", seed=2, loras=[(files["a"], 1.0)], **FAST))
    gen.generate("zkx, thing", seed=2, loras=[(files["b"], 0.8)], **FAST)
    again = _pixels(gen.generate("zkx, thing", seed=2, loras=[(files["a"], 1.0)], **FAST))
    assert gen.pipe is pipe and gen.pipe.unet is unet and Generator(str(tiny_sd1)).pipe is pipe
    assert gen.loads <= 2, "each LoRA file is read once"
    assert np.array_equal(first, again)


def test_least_recently_used_adapter_is_evicted(base, files):
    gen = Generator(base, max_adapters=1)
    first = _pixels(gen.generate("zkx, thing", seed=6, loras=[(files["a"], 1.0)], **FAST))
    gen.generate("zkx, thing", seed=6, loras=[(files["b"], 1.0)], **FAST)
    assert gen.loaded() == [str(files["b"].resolve())]
    assert len(base.unet.peft_config) == 1
    again = _pixels(gen.generate("zkx, thing", seed=6, loras=[(files["a"], 1.0)], **FAST))
    assert np.array_equal(first, again), "a reloaded file gives the same image"


def test_same_settings_same_pixels_and_strength_zero_is_base(base, files):
    gen = Generator(base)
    kw = dict(seed=9, steps=2, cfg=5.0, sampler="Euler a", negative_prompt="blurry")
    one = _pixels(gen.generate("zkx, thing", loras=[(files["a"], 0.7)], **kw))
    gen.generate("other words", seed=1, loras=[(files["b"], 1.0)], **FAST)  # anything in between
    two = _pixels(Generator(base).generate("zkx, thing", loras=[(files["a"], 0.7)], **kw))
    assert np.array_equal(one, two)
    plain = _pixels(gen.generate("zkx, thing", **kw))
    zero = _pixels(gen.generate("zkx, thing", loras=[(files["a"], 0.0)], **kw))
    assert np.array_equal(plain, zero)


def test_missing_lora_tag_names_the_available_files(base, files):
    gen = Generator(base)
    with pytest.raises(GenerateError, match="style_a"):
        gen.generate("zkx <lora:nope:1>", lora_dirs=[files["a"].parent], **FAST)


def test_lora_for_another_base_model_is_refused_cleanly(base, files, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(files["unet_only"]))
    key = next(k for k in sd if k.endswith("attn2_to_k.lora_down.weight"))
    sd[key] = torch.zeros(sd[key].shape[0], sd[key].shape[1] * 2)  # a text encoder twice as wide: another model
    other = tmp_path / "for_sdxl.safetensors"
    save_file(sd, str(other), metadata={"ss_sd_model_name": "sd_xl_base_1.0", "ss_base_model_version": "sdxl_base_v1-0"})
    gen = Generator(base)
    with pytest.raises(GenerateError, match=r"for_sdxl.safetensors does not fit .*sd_xl_base_1.0"):
        gen.generate("zkx", seed=1, loras=[(other, 1.0)], **FAST)
    assert not any("for_sdxl" in name for name in getattr(base.unet, "peft_config", {}))
    ok = _pixels(gen.generate("zkx", seed=1, loras=[(files["a"], 1.0)], **FAST))
    assert ok.std() > 1


def test_zero_terminal_snr_models_get_samplers_that_work():
    """The toy base model's schedule (v-prediction, zero terminal SNR, trailing): Karras spacing would put most
    steps at t = 999 and overrun diffusers' index at 25 steps; LMS/Heun ignore the rescaled betas."""
    from diffusers import EulerAncestralDiscreteScheduler

    config = EulerAncestralDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                             prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                             timestep_spacing="trailing").config
    with pytest.warns(UserWarning, match="Karras sigmas do not suit"):
        karras = make_scheduler(config, "DPM++ 2M Karras")
    karras.set_timesteps(25)
    assert not karras.config.use_karras_sigmas and len(set(karras.timesteps.tolist())) == 25
    assert karras.config.rescale_betas_zero_snr and karras.config.prediction_type == "v_prediction"
    with pytest.warns(UserWarning, match="ignores the model's zero-terminal-SNR"):
        make_scheduler(config, "LMS")


@pytest.mark.parametrize("bars_on", [True, False])
def test_loading_quietly_gives_back_the_users_logging_settings(base, files, bars_on):
    from diffusers.utils import logging as d_logging
    from transformers.utils import logging as t_logging

    gen = Generator(base)
    before = (d_logging.get_verbosity(), t_logging.get_verbosity())
    for module in (d_logging, t_logging):
        module.enable_progress_bar() if bars_on else module.disable_progress_bar()
    try:
        gen.generate_batch(["a zkx"], seeds=[1], loras=[(files["a"], 1.0)], steps=2)  # loads a LoRA quietly
        assert (d_logging.get_verbosity(), t_logging.get_verbosity()) == before
        assert d_logging.is_progress_bar_enabled() is bars_on
        assert t_logging.is_progress_bar_enabled() is bars_on
    finally:
        d_logging.enable_progress_bar()
        t_logging.enable_progress_bar()


def test_quiet_model_loading_leaves_disabled_progress_bars_disabled():
    from diffusers.utils import logging as d_logging
    from transformers.utils import logging as t_logging

    from lorakit.models.loading import quiet_loading

    d_logging.disable_progress_bar()
    t_logging.disable_progress_bar()
    try:
        with quiet_loading():
            pass
        assert not d_logging.is_progress_bar_enabled() and not t_logging.is_progress_bar_enabled()
    finally:
        d_logging.enable_progress_bar()
        t_logging.enable_progress_bar()
