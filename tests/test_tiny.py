"""Tiny pipelines: offline, deterministic from a seed, small, with a tokenizer that spells any trigger word."""

from __future__ import annotations

import hashlib

import pytest

from lorakit.models.tiny import build_tiny_pipeline, make_tokenizer, save_tiny_pipeline


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.safetensors"))}


def test_same_seed_same_weights(tmp_path):
    a = save_tiny_pipeline(tmp_path / "a", "sd1", seed=3)
    b = save_tiny_pipeline(tmp_path / "b", "sd1", seed=3)
    c = save_tiny_pipeline(tmp_path / "c", "sd1", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_under_10_mb_and_a_diffusers_folder(tiny_sd1):
    size = sum(p.stat().st_size for p in tiny_sd1.rglob("*") if p.is_file())
    assert size < 10_000_000
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_sd1 / part).is_dir(), part
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd1, local_files_only=True)
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"


@pytest.mark.parametrize("word", ["fr3dd!e", "anantn", "ünï", "photo of fr3dd!e, red hair"])
def test_tokenizer_spells_any_trigger(word):
    tok = make_tokenizer()
    ids = tok(word).input_ids
    assert tok.unk_token_id not in ids[1:-1] or tok.unk_token_id == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == word.lower().replace(" ", "")


def test_tokenizer_words_are_single_tokens():
    tok = make_tokenizer(["circle", "blicket"])
    assert len(tok("circle").input_ids) == 3 and len(tok("blicket").input_ids) == 3
    assert len(tok("blickets").input_ids) > 3


def test_words_sharing_letter_pairs_all_stay_single_tokens():
    words = ["plus", "purple", "pur", "lullaby", "all", "ball", "llama", "aaa", "a"]
    tok = make_tokenizer(words)
    for w in words:
        assert len(tok(w).input_ids) == 3, (w, tok.tokenize(w))
    assert tok.decode(tok("purple plus ball").input_ids, skip_special_tokens=True) == "purple plus ball"


def test_families_build():
    for family in ("sd1", "sd2-v", "sdxl"):
        pipe = build_tiny_pipeline(family)
        assert pipe.unet is not None
    assert build_tiny_pipeline("sd2-v").scheduler.config.prediction_type == "v_prediction"
    with pytest.raises(ValueError, match="tiny pipelines exist"):
        build_tiny_pipeline("sd3")
