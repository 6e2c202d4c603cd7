"""The training config: one description of every setting, its help text, its checks, and its TOML form.

    from lorakit.config.schema import TrainConfig
    cfg = TrainConfig.load("my-project/lorakit.toml")
    cfg.network.rank = 32
    cfg.save("my-project/lorakit.toml")

Every field carries its one-line explanation in ``field(metadata={"help": ...})``; the form in notebook 02,
``lorakit config show`` and the comments in the saved file are all made from it.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
import textwrap
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lorakit.errors import ConfigError
from lorakit.files import atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

FAMILIES = ("auto", "sd1", "sd2", "sd2-v", "sdxl")
NETWORK_TYPES = ("lora", "locon", "loha", "lokr", "dora")
# bitsandbytes' optimizers (CUDA only), by their bitsandbytes class names, as sd-scripts names them
BNB_OPTIMIZERS = ("AdamW8bit", "PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "Lion8bit", "PagedLion8bit",
                  "AdEMAMix8bit", "PagedAdEMAMix8bit")
SELF_TUNING_OPTIMIZERS = ("Prodigy", "DAdaptAdam", "DAdaptAdamPreprint", "DAdaptAdaGrad", "DAdaptAdan",
                          "DAdaptAdanIP", "DAdaptLion", "DAdaptSGD")  # they find their own step size: lr ~1.0
OPTIMIZERS = ("AdamW", *BNB_OPTIMIZERS, "Lion", "Adafactor", *SELF_TUNING_OPTIMIZERS, "SGD")
SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "adafactor",
)
PRECISIONS = ("no", "fp16", "bf16")
SAVE_PRECISIONS = ("fp16", "bf16", "float")
SAVE_WEIGHTS = ("raw", "ema", "both")
TRACKERS = ("", "tensorboard", "wandb", "trackio")  # accelerate's log_with; "" = none
PREDICTION_TYPES = ("auto", "epsilon", "v_prediction")




def _f(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - `help` reads best in the field list
    """A dataclass field with its help text (and, for lists, a factory)."""
    meta = {"help": help, **extra}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


def _listed(choices) -> str:
    """The choices as a list to read, the empty one as "" (e.g. training.log_with's "none")."""
    return ", ".join(c if c else '""' for c in choices)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        same = [a for a in allowed if a.lower() == str(value).lower()]  # 'lion' -> 'Lion'
        near = same or difflib.get_close_matches(value, allowed, n=1, cutoff=0.4)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{name} = {value!r} is not one of {_listed(allowed)}.{hint}")


def _positive(name: str, value: float, why: str) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0 {why} (got {value}).")


def _non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{name} must be >= 0 (got {value}); 0 switches it off.")


def _finite(part: Any, section: str) -> None:
    """Every number of a section is finite: an infinite learning rate trains a LoRA of NaNs."""
    for f in fields(part):
        value = getattr(part, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{f.name} = {value} is not a finite number: give a value such as "
                              f"{format_float(default_of(f))}.")


MAX_CLIP_SKIP = 12  # the deepest text encoder lorakit trains (CLIP ViT-L) has 12 layers
MAX_RESOLUTION = 4096
MAX_BUCKET_RESO = 8192
MAX_REPEATS = 10_000  # the same bound as a <repeats>_<token> folder (lorakit.dataset.scan)
MAX_SEED = 2**32 - 1  # NumPy's seeds stop there


def check_clip_skip(clip_skip: int, num_layers: int) -> None:
    """Refuse a clip_skip deeper than the text encoder: ``check_clip_skip(cfg.model.clip_skip, 12)``."""
    if not 1 <= clip_skip <= num_layers:
        raise ConfigError(f"model.clip_skip = {clip_skip} but this model's text encoder has {num_layers} layers: "
                          f"use 1 (the last layer) to {num_layers}; 2 is the usual choice for anime models.")


@dataclass
class ModelConfig:
    base_model: str = _f(
        "",
        "Base checkpoint: a diffusers folder, a single .safetensors file, or a hub id. "
        "Empty = the small demo model that ships with lorakit.",
    )
    family: str = _f("auto", "Model family: auto (detect), sd1, sd2, sd2-v (v-prediction) or sdxl.", choices=FAMILIES)
    prediction_type: str = _f(
        "auto",
        "What the UNet predicts: auto (from the model), epsilon (SD1.x, SD2 base) or v_prediction (SD2.x 768-v).",
        choices=PREDICTION_TYPES,
    )
    allow_pickle: bool = _f(False, "Allow loading a pickled .ckpt file. Pickles can run code: only for files you trust.")
    single_file_config: str = _f(
        "",
        "Only for a single-file checkpoint: a diffusers folder of the same family to take configs and tokenizer "
        "from. Empty = lorakit's built-in configs (tokenizer from the local Hugging Face cache).",
    )
    clip_skip: int = _f(1, "Use the output of the N-th last text-encoder layer (1 = last; anime models often use 2).")

    def __post_init__(self) -> None:
        _choice("model.family", self.family, FAMILIES)
        _choice("model.prediction_type", self.prediction_type, PREDICTION_TYPES)
        if not 1 <= self.clip_skip <= MAX_CLIP_SKIP:
            raise ConfigError(f"model.clip_skip must be 1 to {MAX_CLIP_SKIP} (got {self.clip_skip}); 1 = the last "
                              "layer, as most models were trained, 2 for most anime models.")
        if self.family == "sd2-v" and self.prediction_type == "epsilon":
            raise ConfigError(
                "model.family = 'sd2-v' is a v-prediction model: set model.prediction_type to 'v_prediction' or "
                "'auto', or pick family 'sd2' for the 512 epsilon model."
            )


@dataclass
class NetworkConfig:
    type: str = _f(
        "lora",
        "Adapter kind: lora (attention + linear layers), locon (lora + ResNet convs), loha, lokr, dora "
        "(drawn as trained by lorakit, closely by ComfyUI, wrongly by AUTOMATIC1111).",
        choices=NETWORK_TYPES,
    )
    rank: int = _f(16, "Network dim (rank): capacity of the adapter. 8-32 for a character, 32-128 for a style.")
    alpha: float = _f(
        16.0,
        "Network alpha: the update is scaled by alpha/rank. alpha = rank means no scaling; "
        "alpha = 1 with a high rank means a much smaller effective learning rate.",
    )
    conv_rank: int = _f(0, "Rank for the ResNet conv layers (locon/loha/lokr); 0 = same as rank.")
    conv_alpha: float = _f(0.0, "Alpha for the conv layers; 0 = same as alpha.")
    dropout: float = _f(0.0, "Dropout on the adapter's input during training (0-0.5); a mild regulariser.")
    train_unet: bool = _f(True, "Train an adapter on the UNet (almost always on; off = train the text encoder only).")
    init_from: str = _f("", "Start a new run from this LoRA file's weights (kohya's network_weights), relative to "
                            "the project; same type and rank. Unlike --resume: fresh optimizer and schedule.")
    embedding_vectors: int = _f(0, "Pivotal tuning: learn the trigger word as a new token of this many vectors "
                                   "beside the LoRA (1-4; 0 = off). Saved inside each LoRA file and as "
                                   "output/embeddings/<trigger>.safetensors.")
    embedding_trigger: str = _f("", "The word the new token replaces; empty = the dataset folder's token "
                                    "(10_fr3dd!e -> fr3dd!e). Must not be a word the base model already has.")
    embedding_replace_word: bool = _f(False, "Allow a trigger the base model already has as a word: the new "
                                             "token then replaces that word in every prompt.")
    embedding_init_word: str = _f("", "Start the new vectors from this word's embedding (e.g. 'man', 'dog'); "
                                      "empty = from the trigger word as the model reads it.")
    embedding_lr: float = _f(1e-3, "Learning rate of the new token's vectors (pivotal tuning).")
    embedding_train_share: float = _f(1.0, "Share of the steps the new vectors train; after it they stay fixed "
                                           "and the LoRA trains on around them (0.5 = the first half).")

    def __post_init__(self) -> None:
        _choice("network.type", self.type, NETWORK_TYPES)
        _finite(self, "network")
        if self.rank < 1:
            raise ConfigError(f"network.rank must be >= 1 (got {self.rank}); 16 is a common start.")
        _positive("network.alpha", self.alpha, "(alpha/rank scales the update; alpha = rank means no scaling)")
        _non_negative("network.conv_rank", self.conv_rank)
        _non_negative("network.conv_alpha", self.conv_alpha)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"network.dropout must be in [0, 1) (got {self.dropout}); 0.1 is a mild value.")
        if not 0 <= self.embedding_vectors <= 16:
            raise ConfigError(f"network.embedding_vectors must be 0 (off) to 16 (got {self.embedding_vectors}); "
                              "1-4 is usual.")
        _positive("network.embedding_lr", self.embedding_lr, "(1e-3 is a usual start)")
        if not 0 < self.embedding_train_share <= 1:
            raise ConfigError(f"network.embedding_train_share must be in (0, 1] (got {self.embedding_train_share}); "
                              "1 trains the new token for the whole run, 0.5 for its first half.")


@dataclass
class OptimizerConfig:
    optimizer: str = _f("AdamW", "Optimizer: AdamW, AdamW8bit, Lion, Adafactor, Prodigy, DAdaptAdam, SGD, ... "
                        "(the 8-bit and Paged ones need bitsandbytes and a CUDA GPU).",
                        choices=OPTIMIZERS)
    optimizer_args: str = _f("", "Extra optimizer arguments as key=value pairs, e.g. 'weight_decay=0.01 betas=0.9,0.99'.")
    unet_lr: float = _f(
        1e-4,
        "How far each step moves the UNet (the part that draws). 1e-4 is kohya's default; "
        "too high burns the images, too low learns nothing.",
    )
    text_encoder_lr: float = _f(
        5e-5,
        "How far each step moves the text encoder (the part that reads captions); 0 = frozen. "
        "Usually half the UNet's: it overfits fast.",
    )
    lr_scheduler: str = _f(
        "cosine",
        "How the learning rate changes over the run: constant, decay to 0 (linear, cosine, polynomial), "
        "or cosine_with_restarts. Notebook 02 plots it.",
        choices=SCHEDULERS,
    )
    lr_warmup_steps: int = _f(0, "Steps of linear warm-up from 0 to the learning rate (not with 'constant').")
    lr_warmup_ratio: float = _f(
        0.0,
        "Warm-up as a fraction of all steps (kohya_ss GUI: 'LR warmup (% of steps)' / 100); "
        "used when lr_warmup_steps is 0.",
    )
    lr_scheduler_num_cycles: int = _f(1, "cosine_with_restarts only: how many times the learning rate climbs back up.")
    lr_scheduler_power: float = _f(1.0, "Power of the polynomial decay (1 = linear).")
    max_grad_norm: float = _f(
        1.0, "Clip each step's gradient to this length so one odd batch cannot wreck the run; 0 = no clipping."
    )
    gradient_accumulation_steps: int = _f(1, "Add up gradients over N batches before a step (a larger batch in the same memory).")
    stop_text_encoder_training: int = _f(0, "Stop training the text encoder after this many steps; 0 = never stop.")

    def __post_init__(self) -> None:
        _choice("optimizer.optimizer", self.optimizer, OPTIMIZERS)
        _choice("optimizer.lr_scheduler", self.lr_scheduler, SCHEDULERS)
        _finite(self, "optimizer")
        if not self.unet_lr > 0:
            raise ConfigError(
                f"optimizer.unet_lr must be > 0 to train the UNet (got {self.unet_lr}); the kohya default is 1e-4. "
                "To train only the text encoder, set network.train_unet = false instead."
            )
        _non_negative("optimizer.text_encoder_lr", self.text_encoder_lr)
        _non_negative("optimizer.lr_warmup_steps", self.lr_warmup_steps)
        if not 0 <= self.lr_warmup_ratio < 1:
            raise ConfigError(
                f"optimizer.lr_warmup_ratio is a fraction of all steps, in [0, 1) (got {self.lr_warmup_ratio}); "
                "0.05 warms up over the first 5%."
            )
        if self.lr_warmup_steps and self.lr_warmup_ratio:
            raise ConfigError("Set optimizer.lr_warmup_steps or optimizer.lr_warmup_ratio, not both (the other to 0).")
        if self.lr_scheduler == "constant" and (self.lr_warmup_steps or self.lr_warmup_ratio):
            raise ConfigError(
                "optimizer.lr_scheduler = 'constant' ignores warm-up; "
                "pick 'constant_with_warmup' or set the warm-up to 0."
            )
        _non_negative("optimizer.max_grad_norm", self.max_grad_norm)
        _non_negative("optimizer.stop_text_encoder_training", self.stop_text_encoder_training)
        if self.lr_scheduler_num_cycles < 1:
            raise ConfigError("optimizer.lr_scheduler_num_cycles must be >= 1.")
        _positive("optimizer.lr_scheduler_power", self.lr_scheduler_power, "for polynomial decay")
        if self.gradient_accumulation_steps < 1:
            raise ConfigError("optimizer.gradient_accumulation_steps must be >= 1 (1 = no accumulation).")
        if self.lr_scheduler == "polynomial" and self.unet_lr <= 1e-7:
            raise ConfigError("optimizer.lr_scheduler = 'polynomial' decays to 1e-7: unet_lr must be above that.")
        if self.lr_scheduler == "adafactor" and self.optimizer != "Adafactor":
            raise ConfigError("optimizer.lr_scheduler = 'adafactor' works only with optimizer = 'Adafactor'.")
        args = parse_optimizer_args(self.optimizer_args)  # raises on malformed text
        if self.optimizer == "Adafactor" and args.get("relative_step") and self.lr_scheduler != "adafactor":
            raise ConfigError(
                "Adafactor with relative_step=True picks its own learning rate: set optimizer.lr_scheduler = "
                "'adafactor', or pass relative_step=False to use unet_lr with this scheduler."
            )


@dataclass
class DataConfig:
    dataset_dir: str = _f("dataset", "Training images in kohya layout (<repeats>_<token>/ folders), relative to the project.")
    reg_dir: str = _f("", "Regularization images (<repeats>_<class>/ folders); empty = none.")
    repeats: int = _f(0, "Repeats per image per epoch; 0 = use the number in each folder's name (kohya's way).")
    resolution: int = _f(512, "Training resolution (side of the square area): 512 for SD1.5, 768 for SD2-v, 1024 for SDXL.")
    enable_bucket: bool = _f(True, "Aspect-ratio buckets: train on non-square images without cropping them square.")
    min_bucket_reso: int = _f(256, "Smallest bucket side in pixels (at most the resolution).")
    max_bucket_reso: int = _f(1024, "Largest bucket side in pixels (at least the resolution).")
    bucket_reso_steps: int = _f(64, "Bucket sides are multiples of this many pixels (64 is usual).")
    bucket_no_upscale: bool = _f(True, "Never upscale a small image to fill its bucket.")
    caption_extension: str = _f(".txt", "Extension of the caption file beside each image.")
    shuffle_caption: bool = _f(False, "Shuffle comma-separated tags every step (after the first keep_tokens).")
    keep_tokens: int = _f(0, "Keep the first N tags in place when shuffling (e.g. 1 keeps the trigger word first).")
    max_token_length: int = _f(75, "Caption tokens the text encoder reads: 75 (one CLIP window), or 150 / 225 as "
                                   "kohya's max_token_length (windows of 75 encoded apart and joined).")
    caption_dropout_rate: float = _f(0.0, "Probability of training an image with an empty caption.")
    caption_tag_dropout_rate: float = _f(0.0, "Probability of dropping each tag (not the kept ones).")
    flip_aug: bool = _f(False, "Randomly mirror images: doubles variety, but not for asymmetric subjects or text.")
    cache_latents: bool = _f(True, "Encode each image with the VAE once and reuse it (much faster; off when augmenting).")
    cache_latents_to_disk: bool = _f(True, "Keep the latent cache in the project's cache/ folder across runs.")
    prior_loss_weight: float = _f(1.0, "Loss weight of regularization images (1 = as much as a training image).")
    masked_loss: bool = _f(False, "Learn only where each image's mask is white: its alpha channel, <name>_mask.png "
                                  "beside it or masks/<name>.png (images without a mask are learnt whole).")

    def __post_init__(self) -> None:
        _finite(self, "data")
        _non_negative("data.repeats", self.repeats)
        if self.repeats > MAX_REPEATS:
            raise ConfigError(f"data.repeats = {self.repeats} is more than {MAX_REPEATS}: an epoch would never end; "
                              "10-20 is usual for a character.")
        if self.resolution < 8 or self.resolution % 8:
            raise ConfigError(f"data.resolution must be a multiple of 8 (got {self.resolution}); try 512.")
        if self.resolution > MAX_RESOLUTION:
            raise ConfigError(f"data.resolution = {self.resolution} is above {MAX_RESOLUTION}: 512 (SD1.5), 768 "
                              "(SD2-v) or 1024 (SDXL).")
        if self.bucket_reso_steps < 8 or self.bucket_reso_steps % 8:
            raise ConfigError("data.bucket_reso_steps must be a multiple of 8 (64 is the usual value).")
        if not self.bucket_reso_steps <= self.min_bucket_reso and self.enable_bucket:
            raise ConfigError(f"data.min_bucket_reso {self.min_bucket_reso} is below one bucket step "
                              f"({self.bucket_reso_steps}): raise it (256 is usual).")
        if self.max_bucket_reso > MAX_BUCKET_RESO:
            raise ConfigError(f"data.max_bucket_reso = {self.max_bucket_reso} is above {MAX_BUCKET_RESO}: "
                              "2048 is plenty even for SDXL.")
        if self.min_bucket_reso > self.max_bucket_reso:
            raise ConfigError("data.min_bucket_reso must not exceed data.max_bucket_reso.")
        if self.enable_bucket and not self.min_bucket_reso <= self.resolution <= self.max_bucket_reso:
            raise ConfigError(
                f"data.resolution {self.resolution} lies outside the buckets "
                f"[{self.min_bucket_reso}, {self.max_bucket_reso}]: widen min/max_bucket_reso or turn enable_bucket off."
            )
        _non_negative("data.keep_tokens", self.keep_tokens)
        for name in ("caption_dropout_rate", "caption_tag_dropout_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"data.{name} is a probability: between 0 and 1.")
        _non_negative("data.prior_loss_weight", self.prior_loss_weight)
        ext = self.caption_extension
        if not ext.startswith(".") or len(ext) < 2 or any(c in ext for c in "/\\:*?\"<>|"):
            raise ConfigError(f"data.caption_extension {ext!r} must be a file extension starting with '.', "
                              "such as '.txt' (kohya_ss) or '.caption'.")
        if self.max_token_length not in (75, 150, 225):
            raise ConfigError(f"data.max_token_length = {self.max_token_length}: use 75, 150 or 225 (windows of 75 "
                              "tokens, as kohya's max_token_length).")


@dataclass
class TrainingConfig:
    max_train_epochs: int = _f(10, "Epochs: passes over the dataset (each image seen `repeats` times per epoch).")
    max_train_steps: int = _f(0, "Stop after this many optimizer steps; 0 = run all epochs.")
    train_batch_size: int = _f(1, "Images per step. Higher needs more VRAM; scale the learning rate with care.")
    mixed_precision: str = _f("no", "Compute precision on the GPU: bf16 (RTX 30xx and newer), fp16, or no (fp32).",
                              choices=PRECISIONS)
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass: much less VRAM, ~20% slower.")
    sdpa: bool = _f(True, "Use PyTorch's scaled-dot-product attention (fast and memory-efficient).")
    torch_compile: bool = _f(False, "Compile the UNet with torch.compile (slow first step, faster afterwards).")
    num_threads: int = _f(0, "CPU training threads; 0 = chosen from the model size and the free cores (one for tiny "
                          "models, every free physical core for real ones). Ignored on a GPU.")
    noise_offset: float = _f(0.0, "Noise offset (0.05-0.1) lets the model learn very dark and very bright images.")
    multires_noise_iterations: int = _f(0, "Pyramid (multires) noise levels; 6-10 when used, 0 = off.")
    multires_noise_discount: float = _f(0.3, "How much each coarser pyramid level is damped.")
    min_snr_gamma: float = _f(0.0, "Min-SNR loss weighting (5 is the paper's value); 0 = off. Stabilises training.")
    debiased_estimation_loss: bool = _f(False, "Weigh the loss towards the noisiest timesteps, where shape and "
                                               "composition are decided (debiased estimation, Yu et al. 2023).")
    min_timestep: int = _f(0, "Train only timesteps from this one up (0-999): higher skips the fine-detail steps.")
    max_timestep: int = _f(1000, "Train only timesteps below this one (1-1000): lower skips the composition steps.")
    ip_noise_gamma: float = _f(0.0, "Input perturbation: extra noise on the model's input only (0.1 when used); "
                                    "a regulariser against overfitting.")
    seed: int = _f(42, "Random seed: the same seed, data and settings give the same LoRA.")
    ema_decay: float = _f(0.0, "Keep an exponential moving average (EMA) of the LoRA weights with this decay per "
                               "update (0.99-0.999 when used; it ramps up from 0 as in diffusers); 0 = off.")
    ema_every_n_steps: int = _f(1, "Update the EMA every N optimizer steps (the decay applies per update).")
    ema_on_cpu: bool = _f(False, "Keep the EMA weights in CPU memory instead of on the GPU (saves VRAM).")
    log_with: str = _f("", "Log loss, learning rates, validation loss and samples with this tracker (accelerate's "
                           "log_with): tensorboard, wandb or trackio; logs go to <project>/logs/; W&B runs offline "
                           "unless you logged in (WANDB_API_KEY) or set WANDB_MODE; empty = none.", choices=TRACKERS)

    def __post_init__(self) -> None:
        _choice("training.mixed_precision", self.mixed_precision, PRECISIONS)
        _choice("training.log_with", self.log_with, TRACKERS)
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"training.ema_decay must be 0 (off) or below 1 (got {self.ema_decay:g}); 0.999 is usual.")
        if self.ema_every_n_steps < 1:
            raise ConfigError("training.ema_every_n_steps must be >= 1 (1 = update the EMA every step).")
        _finite(self, "training")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"training.seed must be 0 to {MAX_SEED} (got {self.seed}); any fixed number, "
                              "e.g. 42, gives the same LoRA twice.")
        if self.max_train_epochs < 1 and self.max_train_steps < 1:
            raise ConfigError("Set training.max_train_epochs (e.g. 10) or training.max_train_steps (e.g. 1500).")
        _non_negative("training.max_train_steps", self.max_train_steps)
        if self.train_batch_size < 1:
            raise ConfigError("training.train_batch_size must be >= 1.")
        for name in ("noise_offset", "multires_noise_iterations", "min_snr_gamma", "ip_noise_gamma"):
            _non_negative(f"training.{name}", getattr(self, name))
        if not 0 <= self.min_timestep < self.max_timestep <= 1000:
            raise ConfigError(f"training.min_timestep {self.min_timestep} and max_timestep {self.max_timestep} must "
                              "satisfy 0 <= min < max <= 1000 (the full range is 0 and 1000).")
        if not 0 <= self.multires_noise_discount <= 1:
            raise ConfigError("training.multires_noise_discount must be between 0 and 1 (0.3 is usual).")


@dataclass
class SavingConfig:
    output_name: str = _f("lora", "File name of the LoRA: checkpoints are <name>-000001.safetensors, the last <name>.safetensors.")
    save_every_n_epochs: int = _f(1, "Write a checkpoint every N epochs; 0 = only the last.")
    save_every_n_steps: int = _f(0, "Also write a checkpoint every N steps; 0 = off.")
    save_precision: str = _f("fp16", "Precision of the saved file: fp16 (smallest, loads everywhere), bf16 or float.",
                             choices=SAVE_PRECISIONS)
    save_last_k: int = _f(0, "Keep only the newest K step/epoch checkpoints; 0 = keep all.")
    save_state: bool = _f(True, "Save optimizer and RNG state with each checkpoint, so a run can resume.")
    save_weights: str = _f("both", "With training.ema_decay set, which weights each checkpoint holds: raw, ema "
                                   "(<name>-000004-ema.safetensors) or both; without EMA only raw files exist.",
                           choices=SAVE_WEIGHTS)
    training_comment: str = _f("", "A note stored in the file's metadata (ss_training_comment).")

    def __post_init__(self) -> None:
        _choice("saving.save_precision", self.save_precision, SAVE_PRECISIONS)
        _choice("saving.save_weights", self.save_weights, SAVE_WEIGHTS)
        if not self.output_name or any(c in self.output_name for c in '/\\:*?"<>|'):
            raise ConfigError(f"saving.output_name {self.output_name!r} must be a plain file name (no / \\ : * ? \" < > |).")
        for name in ("save_every_n_epochs", "save_every_n_steps", "save_last_k"):
            _non_negative(f"saving.{name}", getattr(self, name))


@dataclass
class SamplingConfig:
    sample_prompts: list[str] = _f(
        [], "Prompts drawn during training, one per line; kohya options --n --w --h --s --l --d --ss (sampler) are "
            "understood; lines starting with # are comments."
    )
    sample_every_n_epochs: int = _f(1, "Draw the sample prompts every N epochs; 0 = never.")
    sample_every_n_steps: int = _f(0, "Also draw them every N steps; 0 = off.")
    sample_sampler: str = _f("euler_a", "Sampler for the samples (kohya/A1111 name: euler_a, euler, ddim, dpm++_2m, ...).")
    sample_steps: int = _f(20, "Sampling steps for the samples (a prompt's --s overrides it).")
    sample_cfg: float = _f(7.0, "Classifier-free guidance scale for the samples (a prompt's --l overrides it).")
    sample_strengths: list[float] = _f(
        [1.0], "LoRA strengths each sample prompt is drawn at, e.g. [0.5, 1.0] (0 = the base model); the same seed "
               "for every strength and checkpoint."
    )
    sample_at_start: bool = _f(False, "Draw the samples once before the first step: the base model's baseline.")

    def __post_init__(self) -> None:
        _finite(self, "sampling")
        _non_negative("sampling.sample_every_n_epochs", self.sample_every_n_epochs)
        _non_negative("sampling.sample_every_n_steps", self.sample_every_n_steps)
        if self.sample_steps < 1:
            raise ConfigError("sampling.sample_steps must be >= 1 (20-30 is usual).")
        from lorakit.config.sampler_names import sampler_name
        from lorakit.errors import GenerateError

        try:  # an unknown sampler stops the run here, not at the first sample draw
            sampler_name(self.sample_sampler)
        except GenerateError as e:
            raise ConfigError(f"sampling.sample_sampler: {e}") from None
        check_strengths(self.sample_strengths)
        self.sample_prompts = check_sample_prompts(self.sample_prompts)


def check_sample_prompts(lines: list[str]) -> list[str]:
    """sampling.sample_prompts without kohya's ``#`` comment and blank lines; each line's numbers and ``--ss``
    sampler checked now, so a bad one stops the run before training, not at the first sample draw."""
    from lorakit.config.sample_prompts import parse_sample_prompt, prompt_lines
    from lorakit.config.sampler_names import sampler_name
    from lorakit.errors import GenerateError

    kept = prompt_lines([str(line) for line in lines])
    for line in kept:
        try:
            sp = parse_sample_prompt(line)
        except ValueError as e:
            raise ConfigError(f"sampling.sample_prompts: {e}; fix the line.") from e
        if re.search(r"<(?:lora|lyco):", sp.prompt + " " + sp.negative):
            raise ConfigError(f"sampling.sample_prompts {line!r}: a <lora:...> tag is not applied to training "
                              "samples, which show the LoRA being trained at sampling.sample_strengths; remove the "
                              "tag (combine LoRAs in notebook 04 or `lorakit grid`).")
        if sp.sampler is not None:
            try:
                sampler_name(sp.sampler)
            except GenerateError as e:
                raise ConfigError(f"sampling.sample_prompts {line!r}: --ss {e}") from e
    return kept


MAX_SAMPLE_STRENGTH = 2.0  # beyond twice the trained strength a LoRA only burns the image


def check_strengths(values: list[float]) -> None:
    """sampling.sample_strengths: not empty, each finite, 0 to MAX_SAMPLE_STRENGTH, no repeats."""
    if not values:
        raise ConfigError("sampling.sample_strengths is empty: give at least one strength, e.g. [1.0].")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_SAMPLE_STRENGTH:
            raise ConfigError(f"sampling.sample_strengths: {v!r} is not a strength from 0 to "
                              f"{format_float(MAX_SAMPLE_STRENGTH)}; use e.g. [0.5, 1.0].")
    if len(set(values)) != len(values):
        raise ConfigError(f"sampling.sample_strengths lists a strength twice ({values}); give each once.")


MAX_VALIDATION_SPLIT = 0.5  # more held out than trained on makes no sense


@dataclass
class ValidationConfig:
    enabled: bool = _f(False, "Compute a validation loss: the loss on images never trained on, with the same noise "
                              "every time, at step 0, at each checkpoint and every every_n_steps; lower is better.")
    split: float = _f(0.1, "Share of the training images held out for it (0.1 = one in ten, at least one), picked "
                           "by file name and seed; used when dir is empty.")
    dir: str = _f("", "A folder of your own validation images (with .txt captions), relative to the project; "
                      "empty = hold out a share of the training images.")
    every_n_steps: int = _f(0, "Also compute it every N steps; 0 = at step 0 and at each checkpoint only.")
    timesteps: int = _f(4, "Noise levels per image, spread over the training range (more = steadier, slower).")
    noise_seed: int = _f(1234, "Seed of the held-out choice and of the fixed noise: the same seed compares runs "
                               "fairly.")

    def __post_init__(self) -> None:
        _finite(self, "validation")
        if not 0 <= self.split <= MAX_VALIDATION_SPLIT:
            raise ConfigError(f"validation.split must be between 0 and {MAX_VALIDATION_SPLIT} (got {self.split}); "
                              "0.1 holds out one image in ten.")
        if self.enabled and not self.split and not self.dir:
            raise ConfigError("validation is on but has nothing to measure: set validation.split (e.g. 0.1) or "
                              "name a folder in validation.dir.")
        _non_negative("validation.every_n_steps", self.every_n_steps)
        if not 1 <= self.timesteps <= 64:
            raise ConfigError(f"validation.timesteps must be 1 to 64 (got {self.timesteps}); 4 is a good start.")
        if not 0 <= self.noise_seed <= MAX_SEED:
            raise ConfigError(f"validation.noise_seed must be 0 to {MAX_SEED} (got {self.noise_seed}).")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "network": NetworkConfig,
    "optimizer": OptimizerConfig,
    "data": DataConfig,
    "training": TrainingConfig,
    "saving": SavingConfig,
    "sampling": SamplingConfig,
    "validation": ValidationConfig,
}


@dataclass
class TrainConfig:
    """Everything a training run needs, in sections; ``TrainConfig()`` is a working default for the demo."""

    model: ModelConfig = field(default_factory=ModelConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    saving: SavingConfig = field(default_factory=SavingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    # ---- conversions ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from nested sections; unknown sections or keys are errors naming the nearest known one."""
        unknown = [k for k in data if k not in SECTIONS]
        if unknown:
            raise ConfigError(_unknown_message(source, unknown[0], list(SECTIONS), "section"))
        parts = {}
        for name, section_cls in SECTIONS.items():
            values = dict(data.get(name, {}))
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{name}] must be a table of settings, not {type(values).__name__}.")
            known = {f.name: f for f in fields(section_cls)}
            for key in values:
                if key not in known:
                    raise ConfigError(_unknown_message(source, f"{name}.{key}", [k for k, _ in field_keys()], "setting"))
            for key, value in values.items():
                values[key] = _coerce(f"{name}.{key}", value, known[key])
            parts[name] = section_cls(**values)
        return cls(**parts)

    def validate(self) -> TrainConfig:
        """Re-run every section's checks (after editing fields in place) and return self."""
        for name in SECTIONS:
            getattr(self, name).__post_init__()
        if self.saving.save_weights == "ema" and not self.training.ema_decay:
            raise ConfigError("saving.save_weights = 'ema' needs an EMA: set training.ema_decay (e.g. 0.999), or "
                              "save_weights = 'raw'.")
        if self.saving.save_weights == "raw" and self.training.ema_decay:
            raise ConfigError("saving.save_weights = 'raw' writes no EMA file, so training.ema_decay would average for "
                              "nothing: set save_weights to 'both' or 'ema', or ema_decay = 0.")
        if self.network.type == "dora" and self.network.conv_rank:
            raise ConfigError("network.conv_rank is not used by dora; set it to 0 or pick locon.")
        if not self.network.train_unet and not self.train_text_encoder:
            raise ConfigError(
                "Nothing to train: network.train_unet is off and optimizer.text_encoder_lr is 0. "
                "Turn train_unet on, or give the text encoder a learning rate (e.g. 5e-5)."
            )
        return self

    def to_toml(self) -> str:
        """TOML with each setting's help text as a comment above it; ``from_toml`` gives back an equal config."""
        out = [TOML_HEADER]
        for section in SECTIONS:
            out += ["", f"[{section}]"]
            part = getattr(self, section)
            for f in fields(part):
                out += _comment_lines(f)
                out.append(f"{f.name} = {toml_value(getattr(part, f.name))}")
        return "\n".join(out) + "\n"

    @classmethod
    def from_toml(cls, text: str, source: str = "lorakit.toml") -> TrainConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{source} is not valid TOML: {e}") from e
        return cls.from_dict(data, source=source).validate()

    def save(self, path: str | Path) -> Path:
        self.validate()
        return atomic_write_text(Path(path), self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"No config at {path}. Run notebook 02 (or `lorakit config init`) to write one.")
        return cls.from_toml(path.read_text(encoding="utf-8-sig"), source=str(path))

    def replace(self, values: dict[str, Any], source: str = "values") -> TrainConfig:
        """A new, validated config with some settings changed: ``cfg.replace({"network.rank": 32})``."""
        data = self.to_dict()
        for key, value in values.items():
            section, _, name = key.partition(".")
            if section not in data or not name:
                raise ConfigError(_unknown_message(source, key, [k for k, _ in field_keys()], "setting"))
            data[section][name] = value
        return TrainConfig.from_dict(data, source=source).validate()

    def get(self, key: str) -> Any:
        """A setting by its dotted name: ``cfg.get("optimizer.unet_lr")``."""
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)

    # ---- derived quantities --------------------------------------------------------------------------
    @property
    def train_text_encoder(self) -> bool:
        return self.optimizer.text_encoder_lr > 0

    def warmup_steps(self, total_steps: int) -> int:
        """Warm-up in steps: lr_warmup_steps, else lr_warmup_ratio of ``total_steps`` (rounded, as kohya_ss does)."""
        if self.optimizer.lr_warmup_steps:
            return self.optimizer.lr_warmup_steps
        return round(self.optimizer.lr_warmup_ratio * total_steps)


def iter_fields(cfg: TrainConfig | None = None):
    """Yield (section, name, value, dataclass Field) for every setting: the source of forms and docs."""
    cfg = cfg or TrainConfig()
    for section in SECTIONS:
        part = getattr(cfg, section)
        for f in fields(part):
            yield section, f.name, getattr(part, f.name), f


TOML_HEADER = (
    "# lorakit training config: written by notebook 02, read by notebook 03 and `lorakit train`.\n"
    "# Check it with `lorakit config check lorakit.toml`; every setting is explained above it."
)


def _comment_lines(f) -> list[str]:
    """The help text (and the allowed values) of a field as TOML comment lines."""
    lines = ["# " + line for line in textwrap.wrap(f.metadata.get("help", ""), width=106)]
    if f.metadata.get("choices"):
        lines.append(f"# one of: {_listed(f.metadata['choices'])}")
    return lines


def format_float(x: float) -> str:
    """The shortest TOML text that reads back as exactly ``x``: 0.0001, 5e-5, 16.0, inf."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = repr(float(x))
    if "e" in text:  # Python writes 5e-05; 5e-5 reads better and is the same number
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def toml_value(value: Any) -> str:
    """One value as TOML text: floats via ``format_float``, lists of strings one per line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "".join(f"    {toml_value(v)},\n" for v in value) + "]"
    if isinstance(value, str):
        return tomli_w.dumps({"x": value}).split("=", 1)[1].strip()
    raise TypeError(f"no TOML form for {type(value).__name__}")


def field_keys() -> list[tuple[str, Any]]:
    """Every setting's dotted name with its dataclass Field, in form order."""
    return [(f"{section}.{name}", f) for section, name, _, f in iter_fields()]


def default_of(f) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _unknown_message(source: str, key: str, known: list[str], what: str) -> str:
    """'unknown setting X. Did you mean Y?': the same name in another section first, else the closest spelling."""
    section, _, bare_key = key.rpartition(".")
    bare = {k.rpartition(".")[2]: k for k in known}
    if section and bare_key in bare:  # "model.rank" -> "network.rank"
        near = [bare[bare_key]]
    else:
        same_section = [k for k in known if k.startswith(section + ".")] if section else known
        near = difflib.get_close_matches(key, same_section, n=1, cutoff=0.5)
        if not near:  # a misspelling in the wrong section too
            hits = difflib.get_close_matches(bare_key, list(bare), n=1, cutoff=0.6)
            near = [bare[hits[0]]] if hits else []
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return f"{source}: unknown {what} {key!r}.{hint}"


def _coerce(name: str, value: Any, f) -> Any:
    """Check a value's type against the field's default; ints are accepted for floats."""
    default = default_of(f)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false (got {value!r}).")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number (got {value!r}).")
        if math.isnan(float(value)):
            raise ConfigError(f"{name} must be a number, not NaN.")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name} must be a whole number (got {value!r}).")
        return value
    if isinstance(default, list) and default and isinstance(default[0], float):
        return _numbers(name, value)
    if isinstance(default, list):
        if isinstance(value, str):
            value = [line for line in value.splitlines() if line.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings.")
        return list(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text (got {value!r}).")
        return value
    return value


def _numbers(name: str, value: Any) -> list[float]:
    """A list of numbers, from TOML ([0.5, 1.0]) or from text ("0.5, 1.0" or one per line)."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list):
        raise ConfigError(f"{name} must be a list of numbers such as [0.5, 1.0] (got {value!r}).")
    out = []
    for v in value:
        try:
            if isinstance(v, bool):
                raise ValueError
            out.append(float(v))
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {v!r} is not a number; write e.g. [0.5, 1.0].") from None
    return out


def parse_optimizer_args(text: str) -> dict[str, Any]:
    """Parse kohya-style ``key=value`` optimizer arguments: 'weight_decay=0.01 betas=0.9,0.99 relative_step=False'."""
    out: dict[str, Any] = {}
    for item in text.replace("\n", " ").split():
        if "=" not in item:
            raise ConfigError(
                f"optimizer_args: {item!r} is not key=value. Write e.g. 'weight_decay=0.01 relative_step=False'."
            )
        key, raw = item.split("=", 1)
        out[key.strip()] = _literal(raw.strip())
    return out


def _literal(raw: str) -> Any:
    if "," in raw:
        return tuple(_literal(p) for p in raw.split(",") if p)
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw.strip("'\"")


def steps_per_epoch(n_images_repeated: int, batch_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps in one epoch: ceil(images × repeats / batch) / accumulation, rounded up."""
    batches = math.ceil(n_images_repeated / batch_size)
    return math.ceil(batches / grad_accum)


def total_steps(cfg: TrainConfig, n_images_repeated: int) -> int:
    per_epoch = steps_per_epoch(n_images_repeated, cfg.training.train_batch_size, cfg.optimizer.gradient_accumulation_steps)
    steps = per_epoch * cfg.training.max_train_epochs
    if cfg.training.max_train_steps:
        steps = min(steps, cfg.training.max_train_steps) if cfg.training.max_train_epochs else cfg.training.max_train_steps
    return steps


def advice(cfg: TrainConfig) -> list[str]:
    """Settings that are allowed but often a mistake, each with what to consider instead."""
    n, o, d, t, s = cfg.network, cfg.optimizer, cfg.data, cfg.training, cfg.sampling
    out = []
    if n.alpha > n.rank:
        out.append(f"network.alpha {n.alpha:g} > rank {n.rank}: updates are scaled up {n.alpha / n.rank:g}x; "
                   "alpha = rank (or lower) is the usual choice.")
    if n.rank >= 64 and n.alpha <= 1:
        out.append(f"alpha/rank = 1/{n.rank / n.alpha:g}: the effective learning rate is that much smaller; "
                   "such recipes need a high lr (e.g. Adafactor 4e-4).")
    if o.text_encoder_lr > o.unet_lr and cfg.network.train_unet:
        out.append("text_encoder_lr is above unet_lr: the text encoder overfits fast; about half the UNet's is usual.")
    if o.optimizer in SELF_TUNING_OPTIMIZERS and o.unet_lr < 0.1:
        out.append(f"{o.optimizer} finds its own step size and expects unet_lr (and text_encoder_lr) around 1.0.")
    if o.optimizer in BNB_OPTIMIZERS:
        out.append(f"{o.optimizer} needs the bitsandbytes package and a CUDA GPU; on a CPU choose "
                   f"{'Lion' if 'Lion' in o.optimizer else 'AdamW'}.")
    if cfg.model.family == "sdxl" and d.resolution < 1024:
        out.append(f"SDXL was trained at 1024 px; data.resolution {d.resolution} gives blurry results.")
    if t.min_snr_gamma and t.debiased_estimation_loss:
        out.append("min_snr_gamma and debiased_estimation_loss both reweigh the loss by timestep; use one of them.")
    if t.noise_offset and t.multires_noise_iterations:
        out.append("noise_offset and multires noise are both on: kohya refuses this mix; lorakit adds both.")
    if cfg.saving.save_every_n_epochs > t.max_train_epochs:
        out.append("save_every_n_epochs exceeds the epochs: only the last checkpoint will be written.")
    if (s.sample_every_n_epochs or s.sample_every_n_steps) and not s.sample_prompts:
        out.append("sampling is on but sample_prompts is empty: no samples will be drawn.")
    return out
