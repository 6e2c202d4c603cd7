"""LoHa, LoKr and DoRA files are previewed by adding their deltas to the weights: the delta applied is the trained one
times the strength, switching them off gives back the base model's weights exactly, and they mix with LoRA files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_networks import _config, _perturb, adapted_layers, applied_delta, dora_delta, lycoris_delta

from lorakit.errors import GenerateError, PatchError
from lorakit.evaluate.generate import Generator
from lorakit.lora.network import ADAPTER, Network, detach_all
from lorakit.lora.patching import WeightPatcher, layer_delta, needs_patching
from lorakit.models.loading import load_base


def _write(base, kind: str, path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A 'trained' file of this kind, and the delta each of its layers had in training (by file key)."""
    net = Network.attach(base, _config(kind))
    _perturb(net, seed)
    trained = {k: applied_delta(m, ADAPTER) for k, m in adapted_layers(base, ADAPTER).items()}
    save_file(net.kohya_state_dict(torch.float32), str(path))
    net.detach()
    return trained


@pytest.mark.parametrize("family,kind", [("sd1", "loha"), ("sd1", "lokr"), ("sd1", "dora"), ("sdxl", "loha")])
def test_generator_applies_the_trained_delta_times_the_strength(tiny_sd1, tiny_sdxl, tmp_path, family, kind):
    base = load_base(str(tiny_sd1 if family == "sd1" else tiny_sdxl))
    detach_all(base)
    path = tmp_path / f"{kind}.safetensors"
    trained = _write(base, kind, path)
    assert needs_patching(load_file(str(path)))
    gen = Generator(base)
    index = gen.patcher.index
    before = {k: index[k].weight.detach().clone() for k in trained}
    for strength in (1.0, 0.5):
        gen.apply([(path, strength)])
        for key, delta in trained.items():
            applied = index[key].weight.detach() - before[key]
            expected = delta * strength  # DoRA too: the strength scales its whole change, as in A1111
            torch.testing.assert_close(applied, expected, rtol=1e-4, atol=1e-5, msg=f"{kind} {key} x{strength}")
    gen.apply([])
    assert all(torch.equal(index[k].weight, before[k]) for k in trained), "switched off: the exact base weights"
    assert not gen.patcher.patched


@pytest.mark.parametrize("kind", ["loha", "lokr", "dora"])
def test_library_deltas_match_the_readers_formulas(tiny_sd1, tmp_path, kind):
    base = load_base(str(tiny_sd1))
    detach_all(base)
    path = tmp_path / f"{kind}.safetensors"
    trained = _write(base, kind, path, seed=3)
    sd = load_file(str(path))
    index = WeightPatcher(base).index
    for key, delta in trained.items():
        weight = index[key].weight.detach()
        ours = layer_delta(sd, key, weight)
        ref = dora_delta(sd, key, weight) if kind == "dora" else lycoris_delta(sd, key, delta.shape)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5, msg=key)


def test_patch_files_mix_with_lora_files_and_switch_off_exactly(tiny_sd1, tmp_path):
    base = load_base(str(tiny_sd1))
    detach_all(base)
    loha, lora = tmp_path / "a_loha.safetensors", tmp_path / "b_lora.safetensors"
    _write(base, "loha", loha, seed=1)
    _write(base, "lora", lora, seed=2)
    gen = Generator(base)
    kw = dict(seed=5, steps=4, cfg=3.0, width=64, height=64)
    pix = lambda img: np.asarray(img, dtype=np.int16)  # noqa: E731
    plain = pix(gen.generate("a thing", **kw))
    only_loha = pix(gen.generate("a thing", loras=[(loha, 1.0)], **kw))
    both = pix(gen.generate("a thing", loras=[(loha, 1.0), (lora, 1.0)], **kw))
    only_lora = pix(gen.generate("a thing", loras=[(lora, 1.0)], **kw))
    assert np.abs(only_loha - plain).max() > 0 and np.abs(both - only_loha).max() > 0
    assert np.abs(both - only_lora).max() > 0
    assert np.array_equal(pix(gen.generate("a thing", loras=[(loha, 0.0)], **kw)), plain), "strength 0 = base"
    assert np.array_equal(pix(gen.generate("a thing", **kw)), plain), "after the LoHa, the base model's pixels"
    again = pix(gen.generate("a thing", loras=[(loha, 1.0)], **kw))
    assert np.array_equal(again, only_loha) and gen.loads == 2, "read once, applied again from memory"
    assert {str(p.resolve()) for p in (loha, lora)} <= set(gen.loaded())
    detach_all(base)  # what the trainer does before it attaches its own network: weights back to the base's
    assert not gen.patcher.patched


def test_a_file_for_another_model_is_refused_with_the_reason(tiny_sd1, tiny_sdxl, tmp_path):
    xl = load_base(str(tiny_sdxl))
    detach_all(xl)
    path = tmp_path / "xl_loha.safetensors"
    _write(xl, "loha", path)
    base = load_base(str(tiny_sd1))
    detach_all(base)
    with pytest.raises(GenerateError, match="another model"):
        Generator(base).apply([(path, 1.0)])
    sd = {"lora_unet_nowhere.hada_w1_a": torch.zeros(2, 2)}
    with pytest.raises(PatchError, match="does not have"):
        WeightPatcher(base).check(sd, "odd.safetensors")
