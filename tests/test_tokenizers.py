"""The CLIP tokenizers ship with lorakit: a lone checkpoint loads with an empty HF cache and no network, and its
token ids are OpenCLIP's own; a broken tokenizer is refused, never used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from offline import BLOCK_SOCKETS

from lorakit.errors import ModelError
from lorakit.models.tokenizers import check_tokenizer, clip_tokenizer

_LONG_UNIT = [320, 1070, 1538, 20198, 781, 320, 736, 7117, 525, 320, 1746, 3999]
# Golden ids from an independent implementation: open_clip 3.3.0's pure-Python SimpleTokenizer (open_clip/
# tokenizer.py with ftfy 6.3.1 and regex from PyPI, `SimpleTokenizer()(prompt, context_length=77)`), the tokenizer
# SD2 and SDXL were trained with; padding stripped (OpenCLIP pads with 0, CLIP-L with 49407).
GOLDEN = {
    "fr3dd!e": [49406, 5512, 274, 3766, 256, 324, 49407],
    "photo of fr3dd!e, red hair": [49406, 1125, 539, 5512, 274, 3766, 256, 324, 267, 736, 2225, 49407],
    "A Photo Of A CAT, (masterpiece:1.2), [blurry]; 8k uhd!!!":
        [49406, 320, 1125, 539, 320, 2368, 267, 263, 12066, 281, 272, 269, 273, 2361, 314, 21977, 60, 282, 279, 330,
         84, 4414, 995, 49407],
    "café naïve — “quoted” 東京 🙂 Ünïcödé":
        [49406, 15304, 1097, 35689, 563, 2005, 257, 27706, 257, 48338, 21078, 361, 14860, 6522, 77, 35689, 66, 7255,
         67, 4166, 49407],
    "zkx, thing 3": [49406, 89, 46442, 267, 946, 274, 49407],
    "<lora:my_lora:0.8> photo of sks dog":
        [49406, 283, 2179, 320, 281, 607, 318, 2179, 320, 281, 271, 269, 279, 285, 1125, 539, 48136, 1929, 49407],
    "it's  the   dog's  toy": [49406, 585, 568, 518, 1929, 568, 5988, 49407],
    # 144 tokens, truncated to 77 (start, 75, end) as OpenCLIP does
    " ".join(["a very long prompt about a red circle on a blue square"] * 12): [49406, *(_LONG_UNIT * 7)[:75], 49407],
}
PAD = {"clip-l": 49407, "open-clip": 0}  # open-clip pads with "!", id 0


def padded(ids: list[int], kind: str) -> list[int]:
    return ids + [PAD[kind]] * (77 - len(ids))


@pytest.mark.parametrize("kind", ["clip-l", "open-clip"])
def test_shipped_tokenizer_gives_open_clips_ids(kind):
    tok = clip_tokenizer(kind)
    assert len(tok) == 49408 and tok.model_max_length == 77 and tok.pad_token_id == PAD[kind]
    for prompt, ids in GOLDEN.items():
        got = tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        assert got == padded(ids, kind), prompt
    check_tokenizer(tok, vocab_size=49408, max_length=77, name="tokenizer")


LOAD_OFFLINE = BLOCK_SOCKETS + textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    from lorakit.models.loading import load_base
    from lorakit.models.single_file import save_single_file
    from lorakit.models.tiny import build_tiny_pipeline
    tmp, prompts, out = Path(sys.argv[1]), json.loads(sys.argv[2]), {}
    for family in ("sd1", "sd2-v", "sdxl"):
        pipe = build_tiny_pipeline(family, seed=0, clip_vocab=True)
        config = tmp / family  # the tiny architecture's configs, without its tokenizers
        pipe.save_pretrained(config)
        for sub in config.glob("tokenizer*"):
            shutil.rmtree(sub)
        path = save_single_file(pipe, tmp / f"{family}.safetensors", family)
        base = load_base(str(path), family=family, single_file_config=config)
        out[family] = {"ids": [t.tolist() for t in base.family.tokenize(base, prompts)],
                       "pad": [tok.pad_token for tok in base.tokenizers]}
    print("IDS " + json.dumps(out))
""")


def test_lone_single_files_load_with_an_empty_hf_cache_and_no_network(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "LORAKIT_"))}
    env |= {"OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
            "LORAKIT_CACHE": str(tmp_path / "cache")}
    (tmp_path / "hf").mkdir()
    prompts = list(GOLDEN)
    run = subprocess.run([sys.executable, "-c", LOAD_OFFLINE, str(tmp_path), json.dumps(prompts)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert not any((tmp_path / "hf").iterdir()), "nothing is written to (or fetched into) the HF cache"
    got = json.loads(run.stdout.split("IDS ", 1)[1])
    kinds = {"sd1": ["clip-l"], "sd2-v": ["open-clip"], "sdxl": ["clip-l", "open-clip"]}
    for family, encoders in kinds.items():
        assert got[family]["pad"] == [{"clip-l": "<|endoftext|>", "open-clip": "!"}[k] for k in encoders]
        for kind, ids in zip(encoders, got[family]["ids"], strict=True):
            assert ids == [padded(GOLDEN[p], kind) for p in prompts], (family, kind)


@pytest.fixture(scope="module")
def clip_sd1(tmp_path_factory):
    """A tiny SD1 single file whose text encoder has CLIP's vocabulary, and its config folder (with tokenizer/)."""
    from lorakit.models.single_file import save_single_file
    from lorakit.models.tiny import build_tiny_pipeline

    tmp = tmp_path_factory.mktemp("clip-sd1")
    pipe = build_tiny_pipeline("sd1", seed=0, clip_vocab=True)
    pipe.save_pretrained(tmp / "config")
    return save_single_file(pipe, tmp / "sd1.safetensors", "sd1"), tmp / "config"


def test_a_tokenizer_in_the_config_folder_wins(clip_sd1):
    from lorakit.models.loading import load_base

    path, config = clip_sd1
    base = load_base(str(path), single_file_config=config)
    assert base.pipe.tokenizer.name_or_path == str(config / "tokenizer")


def test_a_broken_tokenizer_folder_is_refused_not_used(clip_sd1, tmp_path):
    """transformers 5 returns a 2-token tokenizer for a folder without vocabulary files: a ModelError instead."""
    import shutil

    from lorakit.models.loading import load_base

    path, config = clip_sd1
    broken = tmp_path / "config"
    shutil.copytree(config, broken)
    for f in (broken / "tokenizer").iterdir():
        if f.name != "tokenizer_config.json":
            f.unlink()
    with pytest.raises(ModelError, match="tokenizer .*cannot be used: it has 2 tokens"):
        load_base(str(path), single_file_config=broken)


def test_check_tokenizer_catches_what_would_break_step_one(tmp_path):
    from transformers import CLIPTokenizer

    (tmp_path / "empty").mkdir()
    two = CLIPTokenizer.from_pretrained(str(tmp_path / "empty"), local_files_only=True)
    with pytest.raises(ModelError, match="2 tokens"):
        check_tokenizer(two, 49408, 77, "tokenizer")
    unbounded = clip_tokenizer("clip-l")
    unbounded.model_max_length = int(1e30)  # what an incomplete tokenizer_config gives: OverflowError at step 1
    with pytest.raises(ModelError, match="max length"):
        check_tokenizer(unbounded, 49408, 77, "tokenizer")
    with pytest.raises(ModelError, match="49408 tokens but the text encoder has 1000"):
        check_tokenizer(clip_tokenizer("clip-l"), 1000, 77, "tokenizer")
    with pytest.raises(ModelError, match="there is none"):
        check_tokenizer(None, 49408, 77, "tokenizer_2")
