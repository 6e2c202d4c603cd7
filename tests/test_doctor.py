"""The setup check reads a base model's header and configs, never its weights, and says OK only when training
can start from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lorakit.doctor import check_base_model
from lorakit.models.loading import load_base
from lorakit.models.single_file import save_single_file
from lorakit.models.tiny import build_tiny_pipeline


@pytest.fixture(scope="module")
def clip_sd1(tmp_path_factory):
    """A tiny SD1 single file with CLIP's vocabulary, and config folders with and without its tokenizer."""
    tmp = tmp_path_factory.mktemp("doctor")
    pipe = build_tiny_pipeline("sd1", seed=0, clip_vocab=True)
    pipe.save_pretrained(tmp / "full")
    shutil.copytree(tmp / "full", tmp / "configs", ignore=shutil.ignore_patterns("tokenizer*", "*.safetensors"))
    return save_single_file(pipe, tmp / "sd1.safetensors", "sd1"), tmp


def _no_weights_loaded(monkeypatch):
    """Fail if anything reads tensor data (safetensors' loaders) or builds a pipeline."""
    import diffusers
    import safetensors.torch

    def refuse(*a, **k):
        raise AssertionError("the check loaded weights")

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_single_file", refuse)
    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", refuse)


def test_ok_single_file_reads_the_header_and_then_loads(clip_sd1, monkeypatch):
    path, tmp = clip_sd1
    with monkeypatch.context() as m:
        _no_weights_loaded(m)
        row = check_base_model(str(path), tmp / "configs")
    assert row.status == "ok", row.advice
    assert row.value.startswith("sd1 (epsilon), fp32") and "shipped clip-l, 49408 tokens" in row.value
    assert "Not checked" in row.advice
    base = load_base(str(path), single_file_config=tmp / "configs")  # OK means it loads and tokenizes
    assert base.family.tokenize(base, ["photo of fr3dd!e"])[0][0, :3].tolist() == [49406, 1125, 539]


def test_a_single_file_whose_tokenizer_is_broken_fails_with_what_to_do(clip_sd1, tmp_path):
    path, tmp = clip_sd1
    broken = tmp_path / "config"
    shutil.copytree(tmp / "full", broken, ignore=shutil.ignore_patterns("*.safetensors"))
    for f in (broken / "tokenizer").iterdir():
        if f.name != "tokenizer_config.json":
            f.unlink()
    row = check_base_model(str(path), broken)
    assert row.status == "fail" and "2 tokens" in row.advice and "single_file_config" in row.advice


def test_a_single_file_without_a_fitting_tokenizer_fails(tiny_sd1, tmp_path):
    """The toy vocabulary: no tokenizer ships for it, and the standard SD1 architecture does not fit either."""
    path = save_single_file(load_base(str(tiny_sd1)).pipe, tmp_path / "toy.safetensors", "sd1")
    row = check_base_model(str(path))
    assert row.status == "fail"
    assert "not CLIP's 49408" in row.advice and "not the standard sd1 architecture" in row.advice


def test_a_truncated_file_fails(clip_sd1, tmp_path):
    path, _ = clip_sd1
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    row = check_base_model(str(cut))
    assert row.status == "fail" and "truncated" in row.advice


def test_a_file_without_a_vae_fails(clip_sd1, tmp_path):
    from safetensors.torch import load_file, save_file

    path, tmp = clip_sd1
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("first_stage_model.")}
    save_file(state, str(tmp_path / "novae.safetensors"))
    row = check_base_model(str(tmp_path / "novae.safetensors"), tmp / "configs")
    assert row.status == "fail" and "has no vae" in row.advice


def test_a_diffusers_folder_is_read_from_its_configs(clip_sd1, tmp_path, monkeypatch):
    _, tmp = clip_sd1
    with monkeypatch.context() as m:
        _no_weights_loaded(m)
        row = check_base_model(str(tmp / "full"))
    assert row.status == "ok" and row.value.startswith("sd1 (epsilon), fp32"), row.advice
    folder = tmp_path / "m"
    shutil.copytree(tmp / "full", folder)
    shutil.rmtree(folder / "tokenizer")
    row = check_base_model(str(folder))
    assert row.status == "fail" and "tokenizer" in row.advice and "there is none" in row.advice


def test_bf16_load_makes_no_fp32_copy(clip_sd1):
    """Loading for training asks for the device's precision on the first read: every weight arrives in bf16."""
    path, tmp = clip_sd1
    base = load_base(str(path), dtype=torch.bfloat16, device="cpu", single_file_config=tmp / "configs")
    for part in (base.unet, base.vae, base.text_encoders[0]):
        assert {p.dtype for p in part.parameters()} == {torch.bfloat16}


def test_the_grid_generates_in_the_devices_precision(monkeypatch):
    from lorakit.evaluate.generate import device_dtype

    assert device_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device_dtype("cuda:0") == torch.float16


def test_the_check_and_training_name_the_same_family(tiny_sd1, tiny_sd2v, tiny_sdxl):
    """A diffusers folder's family is read by the family registry's rule in both: the demo's toy base (one CLIP
    encoder, v-prediction) is sd2-v for the check, the memory estimate and training alike."""
    from lorakit.models.inspection import inspect_folder
    from lorakit.models.loading import DEMO_MODEL_DIR, load_base

    for folder in (tiny_sd1, tiny_sd2v, tiny_sdxl, DEMO_MODEL_DIR):
        assert inspect_folder(Path(folder)).family == load_base(str(folder)).family.name, folder
    assert inspect_folder(Path(DEMO_MODEL_DIR)).family == "sd2-v"
