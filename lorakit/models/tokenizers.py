"""The CLIP tokenizers Stable Diffusion needs, built in memory from data shipped with lorakit (never fetched).

    from lorakit.models.tokenizers import clip_tokenizer, check_tokenizer
    tok = clip_tokenizer("clip-l")        # SD1, SDXL's first encoder: pads with <|endoftext|> (49407)
    tok = clip_tokenizer("open-clip")     # SD2, SDXL's second encoder: same vocabulary, pads with "!" (0)
    check_tokenizer(tok, vocab_size=49408, max_length=77, name="tokenizer")   # ModelError if it cannot work

A single-file checkpoint carries no tokenizer, and A1111/ComfyUI users often have an empty Hugging Face cache
(where transformers 5 then hands back a 2-token tokenizer without an error). lorakit therefore ships CLIP's BPE
merges (lorakit/models/data/, from open-clip-torch, MIT) and builds the tokenizer from them: vocabulary = 256
byte symbols, the same with ``</w>``, one token per merge, then <|startoftext|> and <|endoftext|>: 49,408 ids.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from lorakit.errors import ModelError

MERGES_FILE = Path(__file__).resolve().parent / "data" / "clip_bpe_merges.txt.gz"
VOCAB_SIZE = 49408
MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
PAD = {"clip-l": EOS, "open-clip": "!"}  # OpenCLIP pads with id 0, which is "!"
SAMPLE_PROMPT = "photo of fr3dd!e, red hair"


def byte_symbols() -> list[str]:
    """CLIP's byte-to-unicode table: one printable stand-in per byte value, in id order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(rest))]


@lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    if not MERGES_FILE.is_file():
        raise ModelError(f"{MERGES_FILE} is missing: lorakit's install is incomplete (the CLIP tokenizer data "
                         "ships as package data). Reinstall lorakit: pip install --force-reinstall lorakit.")
    lines = gzip.decompress(MERGES_FILE.read_bytes()).decode("utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines[1:] if line]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise ModelError(f"{MERGES_FILE} is damaged ({len(tokens)} tokens, expected {VOCAB_SIZE}): reinstall "
                         "lorakit, or rebuild it with scripts/build_clip_vocab.py.")
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(kind: str = "clip-l"):
    """A fresh CLIP BPE tokenizer ('clip-l' or 'open-clip'), 49,408 tokens, max length 77; no file, no network."""
    from transformers import CLIPTokenizer

    if kind not in PAD:
        raise ValueError(f"tokenizer kind {kind!r}: expected one of {sorted(PAD)}")
    vocab, merges = _vocab_and_merges()
    tok = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=MAX_LENGTH, bos_token=BOS,
                        eos_token=EOS, unk_token=EOS, pad_token=PAD[kind])
    return _like_open_clip(tok)


def _like_open_clip(tok):
    """Make the transformers tokenizer give the ids OpenCLIP's own tokenizer (the one SD was trained with) gives.

    Two differences fixed: transformers makes the pad token "!" a special token, matched in the text before BPE
    (so "fr3dd!e" would read "!" as id 0, the padding, where OpenCLIP gives 256, "!</w>"); and OpenCLIP cleans
    text with ftfy, which straightens typographic quotes. ftfy's other repairs (mojibake, HTML entities) are not
    copied: prompts rarely need them.
    """
    backend = tok.backend_tokenizer  # a tokenizers.Tokenizer, edited through its JSON form
    spec = json.loads(backend.to_str())
    if tok.pad_token == "!":
        spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "!"]
    quotes = [("‘’‚‛", "'"), ("“”„‟", '"')]
    straighten = [{"type": "Replace", "pattern": {"String": c}, "content": to} for chars, to in quotes for c in chars]
    old = spec["normalizer"]
    spec["normalizer"] = {"type": "Sequence", "normalizers": [*straighten, *old.get("normalizers", [old])]}
    backend = type(backend).from_str(json.dumps(spec))
    tok._tokenizer = backend  # transformers has no public setter for the backend it wraps
    return tok


def check_tokenizer(tok, vocab_size: int, max_length: int, name: str, where: str = "") -> None:
    """ModelError unless ``tok`` can feed a text encoder with ``vocab_size`` ids and ``max_length`` positions.

    Catches what otherwise surfaces at step 1 (or never): the 2-token tokenizer transformers returns for a
    missing vocabulary, a tokenizer of another model, and an unbounded model_max_length (OverflowError).
    """
    where = f" ({where})" if where else ""
    problem = None
    n = len(tok) if tok is not None else 0
    if tok is None:
        problem = "there is none"
    elif n < 256 + 2:
        problem = f"it has {n} tokens: its vocabulary files are missing or unreadable"
    elif n > vocab_size:
        problem = f"it has {n} tokens but the text encoder has {vocab_size} embeddings"
    elif tok.model_max_length != max_length:
        problem = f"its max length is {tok.model_max_length}, the text encoder's is {max_length}"
    elif tok.pad_token_id is None:
        problem = "it has no padding token"
    else:
        ids = tok(SAMPLE_PROMPT, padding="max_length", max_length=max_length, truncation=True).input_ids
        body = ids[1:ids.index(tok.eos_token_id, 1)] if tok.eos_token_id in ids[1:] else ids[1:]
        if len(ids) != max_length or max(ids) >= vocab_size or len(body) < 3 or len(set(body)) < 3:
            problem = f"{SAMPLE_PROMPT!r} becomes {ids[:12]}…, which is not a real CLIP tokenization"
    if problem:
        raise ModelError(f"{name}{where} cannot be used: {problem}. Give a diffusers folder of the same model "
                         "family with a working tokenizer/ as model.single_file_config, or reinstall lorakit "
                         "(its CLIP tokenizers ship with it).")
