"""Starting recipes from users' published guides; a preset fills a TrainConfig, and anything can be changed after.

    from lorakit.config.presets import PRESETS, apply_preset
    cfg = apply_preset("character", cfg)     # keeps cfg's base model, folders, output name and prompts
    print(PRESETS["character"].when)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError

# settings that belong to the project, not to the recipe: a preset never changes them
PROJECT_KEYS = (
    "model.base_model",
    "model.allow_pickle",
    "data.dataset_dir",
    "data.reg_dir",
    "data.caption_extension",
    "saving.output_name",
    "saving.training_comment",
    "sampling.sample_prompts",
)


@dataclass(frozen=True)
class Preset:
    """A named recipe: the settings it sets, and when to use it."""

    name: str
    title: str
    when: str
    values: dict[str, Any]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "character",
            "Character or person (about 25 images)",
            "One person, character or object from ~25 well-captioned images. 25 images x 15 repeats x 5 epochs "
            "= 1875 steps at batch 1, inside the 1500-2000 steps a character needs. AdamW8bit needs a CUDA GPU "
            "with bitsandbytes; choose AdamW on a CPU.",
            {
                "network.type": "lora",
                "network.rank": 128,
                "network.alpha": 128.0,
                "optimizer.optimizer": "AdamW8bit",
                "optimizer.unet_lr": 1e-4,
                "optimizer.text_encoder_lr": 5e-5,
                "optimizer.lr_scheduler": "polynomial",
                "optimizer.lr_scheduler_power": 1.0,
                "data.repeats": 15,
                "data.resolution": 512,
                "training.max_train_epochs": 5,
                "training.train_batch_size": 1,
                "saving.save_every_n_epochs": 1,
            },
        ),
        Preset(
            "style",
            "Art style (50-200 varied images)",
            "A look shared by many different subjects. A style needs more steps than a character (about "
            "3000-6000), a text encoder that learns slowly or not at all, and shuffled tags so no single tag "
            "carries the style. The trigger word stays first (keep_tokens = 1).",
            {
                "network.type": "lora",
                "network.rank": 64,
                "network.alpha": 32.0,
                "optimizer.optimizer": "AdamW",
                "optimizer.unet_lr": 1e-4,
                "optimizer.text_encoder_lr": 2e-5,
                "optimizer.lr_scheduler": "cosine",
                "optimizer.lr_warmup_ratio": 0.05,
                "data.repeats": 10,
                "data.resolution": 512,
                "data.shuffle_caption": True,
                "data.keep_tokens": 1,
                "data.flip_aug": True,
                "training.max_train_epochs": 10,
                "training.train_batch_size": 2,
                "training.min_snr_gamma": 5.0,
                "saving.save_every_n_epochs": 2,
            },
        ),
        Preset(
            "sd21-adafactor",
            "SD 2.1 v-prediction, small loosely tagged set (Adafactor)",
            "A small, loosely tagged set on Stable Diffusion 2.1 (768-v, trained here at 512). Adafactor with a "
            "fixed lr of 4e-4 for UNet and text encoder, rank 256 with alpha 1 (a small effective step), 20 "
            "epochs with a checkpoint every 2 to pick the best one, bf16. This is the kohya_ss config users share "
            "for SD 2.1; it needs an SD 2.x v-prediction base model.",
            {
                "model.family": "sd2-v",
                "model.prediction_type": "v_prediction",
                "model.clip_skip": 1,
                "network.type": "lora",
                "network.rank": 256,
                "network.alpha": 1.0,
                "optimizer.optimizer": "Adafactor",
                "optimizer.optimizer_args": "scale_parameter=False relative_step=False warmup_init=False",
                "optimizer.unet_lr": 4e-4,
                "optimizer.text_encoder_lr": 4e-4,
                "optimizer.lr_scheduler": "constant",
                "optimizer.max_grad_norm": 1.0,
                "data.resolution": 512,
                "data.enable_bucket": True,
                "data.min_bucket_reso": 256,
                "data.max_bucket_reso": 2048,
                "data.bucket_no_upscale": True,
                "data.cache_latents": True,
                "training.max_train_epochs": 20,
                "training.train_batch_size": 1,
                "training.mixed_precision": "bf16",
                "training.gradient_checkpointing": True,
                "training.seed": 58008,
                "saving.save_every_n_epochs": 2,
                "saving.save_precision": "bf16",
            },
        ),
    )
}


def apply_preset(name: str, cfg: TrainConfig | None = None) -> TrainConfig:
    """Lorakit's defaults, then the preset's values; ``cfg``'s project settings (PROJECT_KEYS) are kept."""
    if name not in PRESETS:
        near = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}.{hint}")
    keep = {key: cfg.get(key) for key in PROJECT_KEYS} if cfg is not None else {}
    return TrainConfig().replace({**PRESETS[name].values, **keep}, source=f"preset {name!r}")


def describe_recipe(cfg: TrainConfig) -> str:
    """A recipe's effective learning rates (lr × alpha / rank, what the update is scaled by) and how often it shows
    each training image (repeats × epochs; 0 repeats = the folder names')."""
    n = cfg.network
    scale = n.alpha / n.rank if n.rank else 1.0
    o = cfg.optimizer
    te = (f", text encoder {o.text_encoder_lr:g} × {n.alpha:g}/{n.rank} = {o.text_encoder_lr * scale:.2g}"
          if o.text_encoder_lr else ", text encoder not trained")
    repeats = cfg.data.repeats
    seen = (f"each training image seen {repeats * cfg.training.max_train_epochs} times (repeats {repeats} × "
            f"{cfg.training.max_train_epochs} epochs)" if repeats else
            f"each training image seen its folder's repeats × {cfg.training.max_train_epochs} epochs (10_name: "
            f"{10 * cfg.training.max_train_epochs} times)")
    return (f"effective learning rate: UNet {o.unet_lr:g} × alpha/rank {n.alpha:g}/{n.rank} = {o.unet_lr * scale:.2g}"
            f"{te}; {seen}, at batch {cfg.training.train_batch_size}.")


def describe_presets() -> str:
    """Every preset's name, title and note, and its effective learning rate and images seen, as text."""
    return "\n\n".join(f"{p.name}: {p.title}\n  {p.when}\n  {describe_recipe(apply_preset(p.name))}"
                        for p in PRESETS.values())
