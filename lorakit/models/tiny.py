"""Tiny random Stable Diffusion pipelines, built offline from a seed (tests, demos, benchmarks).

    python -m lorakit.models.tiny /tmp/tiny-sd1 --family sd1

They have the real architectures (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, a CLIP BPE tokenizer)
at toy sizes, so every code path that a real SD1.5 / SD2-v / SDXL checkpoint takes runs in seconds on a CPU.
The tokenizer is made here: a byte-level vocabulary (any word can be spelled, `fr3dd!e` included) plus
merges that make chosen words single tokens.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import torch

SPECIAL_BOS = "<|startoftext|>"
SPECIAL_EOS = "<|endoftext|>"
TINY_FAMILIES = ("sd1", "sd2-v", "sdxl")


def _byte_alphabet() -> list[str]:
    """CLIP's byte-to-unicode table: 256 printable stand-ins, one per byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def make_tokenizer(words: Iterable[str] = (), model_max_length: int = 77):
    """A CLIP tokenizer whose vocabulary spells any text, with each of ``words`` as one token."""
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for ch in alphabet:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(set(w.lower() for w in words)):
        if not (word.isascii() and word.isalpha()):  # CLIP splits letters from digits and punctuation
            raise ValueError(f"tokenizer word {word!r} must be ASCII letters only")
        # add merges until BPE, with every merge so far, spells the word as one token; a new merge ranks last,
        # so it never changes how an earlier word is split (words sharing letter pairs stay whole)
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts := _bpe(symbols, ranks)) > 1:
            ranks[(parts[0], parts[1])] = len(merges)
            merges.append((parts[0], parts[1]))
            vocab.setdefault(parts[0] + parts[1], len(vocab))
    vocab[SPECIAL_BOS] = len(vocab)
    vocab[SPECIAL_EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the best-ranked adjacent pair, everywhere, until none applies."""
    symbols = list(symbols)
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:], strict=False), key=lambda pair: ranks.get(pair, len(ranks) + 1))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def _text_encoder(tokenizer, hidden: int, layers: int, seed: int, projection: bool = False, proj_dim: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=proj_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="quick_gelu",
    )
    torch.manual_seed(seed)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.5,
    ).eval()


def _unet(seed: int, cross_dim: int, sdxl: bool = False, pooled_dim: int = 32):
    from diffusers import UNet2DConditionModel

    kwargs = {}
    if sdxl:
        kwargs = dict(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=pooled_dim + 6 * 8,
            transformer_layers_per_block=(1, 1),
        )
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        # the first block without attention: attention at full latent resolution dominates a tiny UNet's time
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=cross_dim,
        attention_head_dim=(8, 16) if not sdxl else (2, 4),
        norm_num_groups=8,
        use_linear_projection=sdxl,
        **kwargs,
    ).eval()


def build_tiny_pipeline(family: str = "sd1", seed: int = 0, words: Iterable[str] = (), clip_vocab: bool = False):
    """A random pipeline of the given family ('sd1', 'sd2-v', 'sdxl'), identical for the same seed.

    ``clip_vocab``: the real CLIP tokenizers that ship with lorakit (49,408 tokens; OpenCLIP's, padding with "!",
    for SD2 and SDXL's second encoder) instead of the toy one, so a single file of it loads as a real one does.
    """
    from diffusers import (
        DDPMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    if family not in TINY_FAMILIES:
        raise ValueError(f"family {family!r}: tiny pipelines exist for {', '.join(TINY_FAMILIES)}")
    if clip_vocab:
        from lorakit.models.tokenizers import clip_tokenizer

        tokenizer = clip_tokenizer("open-clip" if family == "sd2-v" else "clip-l")
        tokenizer_2 = clip_tokenizer("open-clip")
    else:
        tokenizer, tokenizer_2 = make_tokenizer(words), make_tokenizer(words)
    sched_kwargs = dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    if family == "sdxl":
        # the two encoders differ in width, as in SDXL (768 and 1280): with equal widths, diffusers' single-file
        # loader takes the first encoder's weights for the second and leaves its embeddings unloaded
        te1 = _text_encoder(tokenizer, 32, 2, seed + 1)
        te2 = _text_encoder(tokenizer, 48, 2, seed + 2, projection=True, proj_dim=32)
        return StableDiffusionXLPipeline(
            vae=_vae(seed + 3),
            text_encoder=te1,
            text_encoder_2=te2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=_unet(seed + 4, cross_dim=32 + 48, sdxl=True, pooled_dim=32),
            scheduler=EulerDiscreteScheduler(**sched_kwargs),
        )
    prediction = "v_prediction" if family == "sd2-v" else "epsilon"
    hidden = 32
    text_encoder = _text_encoder(tokenizer, hidden, 2, seed + 1)
    pipe = StableDiffusionPipeline(
        vae=_vae(seed + 3),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=_unet(seed + 4, cross_dim=hidden),
        scheduler=DDPMScheduler(prediction_type=prediction, **sched_kwargs),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe


def build_small_sd1_pipeline(seed: int = 0, channels: tuple[int, ...] = (64, 128, 256)):
    """An SD1-shaped pipeline (SD1's block layout, 2 layers per block, 8-px latents) where compute dominates.

    For benchmarks: at 128 px its latents are 16×16; the VAE and text encoder are small (both run once,
    cached, outside the training step).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = make_tokenizer()
    text_encoder = _text_encoder(tokenizer, 64, 2, seed + 1)
    torch.manual_seed(seed + 3)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(16, 16, 32, 32), layers_per_block=1, latent_channels=4,
                        norm_num_groups=8, sample_size=128).eval()
    torch.manual_seed(seed + 4)
    unet = UNet2DConditionModel(
        sample_size=16, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=channels,
        layers_per_block=2, cross_attention_dim=64, attention_head_dim=8, norm_num_groups=32,
    ).eval()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def save_tiny_pipeline(path: str | Path, family: str = "sd1", seed: int = 0, words: Iterable[str] = (),
                       clip_vocab: bool = False) -> Path:
    """Build and save a tiny pipeline as a diffusers folder (safetensors weights)."""
    path = Path(path)
    pipe = build_tiny_pipeline(family, seed=seed, words=words, clip_vocab=clip_vocab)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--family", default="sd1", choices=TINY_FAMILIES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = save_tiny_pipeline(args.path, args.family, args.seed)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{args.family} tiny pipeline written to {out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
