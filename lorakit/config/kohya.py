"""Import and export kohya_ss GUI configs (the JSON people share), with a report of what mapped and what did not.

    from lorakit.config.kohya import import_kohya, export_kohya
    result = import_kohya("settings.json")        # a path, the pasted text, or a dict
    print(result.report())                        # mapped / ignored and why / not supported by lorakit
    result.config.save("my-project/lorakit.toml")
    Path("kohya.json").write_text(export_kohya_text(result.config))

Pasted text is read tolerantly: typographic quotes (“ ” ‘ ’), numbers written as strings ("58008"), "" meaning
"not set", trailing commas, and text around the JSON object are all accepted.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.config.sample_prompts import prompt_lines
from lorakit.config.schema import OPTIMIZERS, TrainConfig, _listed, default_of, field_keys
from lorakit.errors import ConfigError

UNSET = object()  # a kohya value of "" or null: "use the default"

# ---- the tables: every kohya_ss GUI key lorakit knows, and what it does with it ----------------------------

# kohya key -> lorakit setting, for values that mean the same thing on both sides
DIRECT: dict[str, str] = {
    "pretrained_model_name_or_path": "model.base_model",
    "clip_skip": "model.clip_skip",
    "network_dim": "network.rank",
    "network_alpha": "network.alpha",
    "network_dropout": "network.dropout",
    "lora_network_weights": "network.init_from",  # a warm start from this LoRA file (sd-scripts: network_weights)
    "optimizer_args": "optimizer.optimizer_args",
    "lr_scheduler": "optimizer.lr_scheduler",
    "lr_scheduler_num_cycles": "optimizer.lr_scheduler_num_cycles",
    "lr_scheduler_power": "optimizer.lr_scheduler_power",
    "max_grad_norm": "optimizer.max_grad_norm",
    "gradient_accumulation_steps": "optimizer.gradient_accumulation_steps",
    "enable_bucket": "data.enable_bucket",
    "min_bucket_reso": "data.min_bucket_reso",
    "max_bucket_reso": "data.max_bucket_reso",
    "bucket_reso_steps": "data.bucket_reso_steps",
    "bucket_no_upscale": "data.bucket_no_upscale",
    "caption_extension": "data.caption_extension",
    "shuffle_caption": "data.shuffle_caption",
    "keep_tokens": "data.keep_tokens",
    "max_token_length": "data.max_token_length",
    "caption_dropout_rate": "data.caption_dropout_rate",
    "caption_tag_dropout_rate": "data.caption_tag_dropout_rate",
    "flip_aug": "data.flip_aug",
    "cache_latents": "data.cache_latents",
    "cache_latents_to_disk": "data.cache_latents_to_disk",
    "prior_loss_weight": "data.prior_loss_weight",
    "masked_loss": "data.masked_loss",
    "max_train_steps": "training.max_train_steps",
    "train_batch_size": "training.train_batch_size",
    "mixed_precision": "training.mixed_precision",
    "gradient_checkpointing": "training.gradient_checkpointing",
    "min_snr_gamma": "training.min_snr_gamma",
    "debiased_estimation_loss": "training.debiased_estimation_loss",
    "min_timestep": "training.min_timestep",
    "max_timestep": "training.max_timestep",
    "ip_noise_gamma": "training.ip_noise_gamma",
    "seed": "training.seed",
    "output_name": "saving.output_name",
    "save_every_n_epochs": "saving.save_every_n_epochs",
    "save_every_n_steps": "saving.save_every_n_steps",
    "save_precision": "saving.save_precision",
    "save_last_n_epochs": "saving.save_last_k",
    "save_state": "saving.save_state",
    "training_comment": "saving.training_comment",
    "sample_every_n_epochs": "sampling.sample_every_n_epochs",
    "sample_every_n_steps": "sampling.sample_every_n_steps",
    "sample_sampler": "sampling.sample_sampler",
    "sample_at_first": "sampling.sample_at_start",  # sd-scripts' name
}

# keys read together by the special rules below (the network, learning rates, model family, noise, ...)
SPECIAL = (
    "LoRA_type", "conv_dim", "conv_alpha", "dora_wd", "learning_rate", "unet_lr", "text_encoder_lr", "v2",
    "v_parameterization", "sdxl", "max_resolution", "noise_offset_type", "noise_offset", "multires_noise_iterations",
    "multires_noise_discount", "epoch", "max_train_epochs", "lr_warmup", "lr_warmup_steps",
    "stop_text_encoder_training", "xformers", "sample_prompts", "save_model_as", "optimizer", "lorakit",
)

# settings that change training when not at their neutral value, and that lorakit does not implement
NEUTRAL: dict[str, tuple[Any, str]] = {
    "adaptive_noise_scale": (0, "adaptive noise scale is not implemented; plain noise_offset is"),
    "caption_dropout_every_n_epochs": (0, "dropping all captions every N epochs is not implemented; "
                                          "use caption_dropout_rate"),
    "color_aug": (False, "colour augmentation is not implemented (and it prevents latent caching)"),
    "fp8_base": (False, "an fp8 base model is not supported; lorakit loads it in the mixed precision"),
    "full_bf16": (False, "full bf16 training (bf16 gradients) is not supported; the adapter trains in fp32"),
    "full_fp16": (False, "full fp16 training is not supported; the adapter trains in fp32"),
    "module_dropout": (0, "module dropout is not implemented; network_dropout is"),
    "rank_dropout": (0, "rank dropout is not implemented; network_dropout is"),
    "random_crop": (False, "random crop is not implemented; images are resized into their bucket"),
    "scale_v_pred_loss_like_noise_pred": (False, "this v-prediction loss scaling is not implemented"),
    "v_pred_like_loss": (0, "v-prediction-like loss is not implemented"),
    "weighted_captions": (False, "(word:1.2) caption weighting is not implemented"),
    "scale_weight_norms": (0, "max-norm regularisation of the LoRA weights is not implemented; training runs "
                              "without it (lower the learning rate if the LoRA overcooks)"),
    "dim_from_weights": (False, "taking the rank from existing weights is not supported"),
    "additional_parameters": ("", "raw sd-scripts flags cannot be read; set their lorakit equivalents by hand"),
    "lr_scheduler_args": ("", "extra scheduler arguments are not supported"),
    "vae": ("", "a separate VAE is not supported; lorakit uses the base model's VAE"),
    "save_last_n_steps": (0, "keeping checkpoints by step range is not supported; saving.save_last_k keeps "
                             "the newest K"),
    "save_last_n_steps_state": (0, "keeping states by step range is not supported"),
    "save_last_n_epochs_state": (0, "keeping states by epoch count is not supported"),
    "noise_offset_random_strength": (False, "random noise-offset strength is not implemented"),
    "zero_terminal_snr": (False, "zero terminal SNR rescaling is not implemented"),
    "loss_type": ("l2", "only the L2 (MSE) loss is implemented"),
    "block_lr_zero_threshold": ("", "block-wise learning rates are not supported"),
    "down_lr_weight": ("", "block-wise learning rates are not supported"),
    "mid_lr_weight": ("", "block-wise learning rates are not supported"),
    "up_lr_weight": ("", "block-wise learning rates are not supported"),
    "block_dims": ("", "block-wise ranks are not supported"),
    "block_alphas": ("", "block-wise alphas are not supported"),
    "conv_block_dims": ("", "block-wise conv ranks are not supported"),
    "conv_block_alphas": ("", "block-wise conv alphas are not supported"),
}

# LyCORIS-only options with LyCORIS's defaults: ignored for a Standard LoRA, unsupported when changed
LYCORIS_OPTIONS: dict[str, Any] = {
    "LyCORIS_preset": "full", "factor": -1, "use_cp": False, "use_tucker": False, "use_scalar": False,
    "train_norm": False, "train_on_input": True, "decompose_both": False, "rescaled": False, "constrain": 0.0,
    "unit": 1, "rank_dropout_scale": False, "bypass_mode": False,
}

_LAUNCH = "how kohya_ss launches accelerate; lorakit trains on this machine (or `accelerate launch -m lorakit train`)"
_PATH = "a folder on the machine that wrote the config; lorakit uses the project folder (dataset/, output/, logs/)"
_LOADER = "data-loader tuning; lorakit caches latents and reads them from memory"
_LOG = "lorakit writes its loss history to the project's logs/ folder"
IGNORED: dict[str, str] = {
    "gpu_ids": _LAUNCH, "multi_gpu": _LAUNCH, "num_cpu_threads_per_process": _LAUNCH, "num_machines": _LAUNCH,
    "num_processes": _LAUNCH, "main_process_port": _LAUNCH, "dynamo_backend": _LAUNCH, "extra_accelerate_launch_args":
    _LAUNCH, "mem_eff_attn": "lorakit always uses PyTorch's memory-efficient attention (training.sdpa)",
    "output_dir": _PATH, "logging_dir": _PATH, "train_data_dir": _PATH, "reg_data_dir": _PATH,
    "resume": "resume a lorakit run with `lorakit train PROJECT --resume`", "log_prefix": _LOG,
    "max_data_loader_n_workers": _LOADER, "persistent_data_loader_workers": _LOADER, "vae_batch_size": _LOADER,
    "wandb_run_name": _LOG, "log_tracker_name": _LOG,
    "wandb_api_key": "an account secret: never copied into a project",
    "sdxl_cache_text_encoder_outputs": "an SDXL memory option; lorakit decides what to cache itself",
    "sdxl_no_half_vae": "an SDXL VAE option; lorakit picks the VAE precision itself",
    "model_list": "the GUI's model drop-down; pretrained_model_name_or_path names the model",
    "noise_offset_type": "chooses between noise_offset and multires noise (see those)",
    # sd-scripts' own arguments (its --config_file TOML)
    "dataset_config": "sd-scripts' dataset TOML (folders, repeats); lorakit reads the project's dataset/ folder: "
                      "bring the images in with `lorakit dataset import`",
    "config_file": "the TOML being read", "output_config": "sd-scripts writes its arguments; lorakit saves lorakit.toml",
    "highvram": "an sd-scripts memory hint; lorakit decides what stays on the GPU",
    "lowram": "an sd-scripts memory hint; lorakit decides what stays on the GPU",
    "no_half_vae": "lorakit picks the VAE precision itself",
    "cache_text_encoder_outputs": "lorakit decides what to cache itself",
    "cache_text_encoder_outputs_to_disk": "lorakit decides what to cache itself",
    "console_log_level": _LOG, "save_state_on_train_end": "lorakit saves a resumable state as saving.save_state says",
    "metadata_title": "lorakit writes its own ss_* metadata", "metadata_author": "lorakit writes its own ss_* metadata",
    "metadata_description": "lorakit writes its own ss_* metadata",
    "metadata_license": "lorakit writes its own ss_* metadata", "metadata_tags": "lorakit writes its own ss_* metadata",
}

NETWORK_TYPES = {  # kohya_ss LoRA_type -> lorakit network.type
    "Standard": "lora", "Kohya LoCon": "locon", "LoCon": "locon", "LyCORIS/LoCon": "locon",
    "LyCORIS/LoHa": "loha", "LyCORIS/LoKr": "lokr",
}
EXPORT_NETWORK = {"lora": "Standard", "locon": "Kohya LoCon", "loha": "LyCORIS/LoHa", "lokr": "LyCORIS/LoKr",
                  "dora": "LyCORIS/LoCon"}
# sd-scripts' optimizer_type names (library/train_util.py get_optimizer) and the kohya_ss GUI's list, each either
# one of lorakit's (same name, any case) or mapped here with what the mapping means
OPTIMIZER_MAP: dict[str, tuple[str, str, str]] = {  # kohya name -> (lorakit optimizer, extra args, note)
    "DAdaptation": ("DAdaptAdamPreprint", "", "sd-scripts' DAdaptation is DAdaptAdamPreprint"),
    "SGDNesterov": ("SGD", "momentum=0.9 nesterov=True", ""),
    "SGDNesterov8bit": ("SGD", "momentum=0.9 nesterov=True",
                        "SGD with Nesterov momentum in fp32: its 8-bit state saves little on a LoRA's few weights"),
}
# names lorakit does not train with, and the nearest it has
OPTIMIZER_REFUSED: dict[str, str] = {
    "AdamWScheduleFree": "AdamW", "RAdamScheduleFree": "AdamW", "SGDScheduleFree": "SGD", "CAME": "Adafactor",
    "Came": "Adafactor", "prodigyplus.ProdigyPlusScheduleFree": "Prodigy",
}
KOHYA_OPTIMIZERS = (  # every name sd-scripts' get_optimizer and the kohya_ss GUI offer
    "AdamW", "AdamW8bit", "Lion", "SGDNesterov", "SGDNesterov8bit", "PagedAdamW", "PagedAdamW8bit",
    "PagedAdamW32bit", "Lion8bit", "PagedLion8bit", "AdEMAMix8bit", "PagedAdEMAMix8bit", "DAdaptation",
    "DAdaptAdamPreprint", "DAdaptAdaGrad", "DAdaptAdam", "DAdaptAdan", "DAdaptAdanIP", "DAdaptLion", "DAdaptSGD",
    "Adafactor", "AdaFactor", "Prodigy", "AdamWScheduleFree", "RAdamScheduleFree", "SGDScheduleFree", "CAME",
    "prodigyplus.ProdigyPlusScheduleFree",
)


def kohya_optimizer(name: str) -> tuple[str | None, str, str]:
    """(lorakit optimizer or None, extra optimizer args, note) for a kohya optimizer name, a full class path
    ('prodigyopt.Prodigy', 'bitsandbytes.optim.AdamW8bit', 'torch.optim.AdamW') included."""
    name = name.strip()
    if name in OPTIMIZER_REFUSED:
        return None, "", f"lorakit does not offer it; the nearest it has is {OPTIMIZER_REFUSED[name]!r}"
    if name in OPTIMIZER_MAP:
        return OPTIMIZER_MAP[name]
    for known in OPTIMIZERS:
        if known.lower() == name.lower():
            return known, "", ""
    module, _, cls = name.rpartition(".")
    if module:  # sd-scripts takes any importable class; lorakit knows the ones it offers by their class name
        mapped, extra, note = kohya_optimizer(cls)
        if mapped is not None:
            return mapped, extra, note or f"the class {name!r} is lorakit's {mapped!r}"
    return None, "", f"lorakit offers {', '.join(OPTIMIZERS)}; kept AdamW"


# ---- tolerant reading of pasted text ----------------------------------------------------------------------

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
                         "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "\u00a0": " "})
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def parse_kohya_text(text: str) -> dict[str, Any]:
    """The JSON object in pasted text, tolerating typographic quotes, trailing commas and text around it."""
    clean = _INVISIBLE.sub("", text).translate(_QUOTES)
    start, end = clean.find("{"), clean.rfind("}")
    if start < 0 or end < start:
        raise ConfigError("No kohya_ss settings found: expected a JSON object between { and }.")
    body = _TRAILING_COMMA.sub(r"\1", clean[start : end + 1])
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        data = _python_literal(body)
        if data is None:
            line = body.splitlines()[e.lineno - 1] if e.lineno <= len(body.splitlines()) else ""
            raise ConfigError(f"kohya_ss settings: {e.msg} at line {e.lineno}: {line.strip()!r}") from e
    if not isinstance(data, dict):
        raise ConfigError("kohya_ss settings must be a JSON object ({...}).")
    return data


def _python_literal(body: str) -> dict | None:
    """Last resort for single-quoted, Python-style dicts ('key': True)."""
    swapped = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", body)))
    try:
        value = ast.literal_eval(swapped)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, dict) else None


def _value(raw: Any) -> Any:
    """A kohya value as a Python value: '58008' -> 58008, '' and null -> UNSET, 'True' -> True."""
    if raw is None:
        return UNSET
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return UNSET
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return raw
    return raw


def _as(kind: type, value: Any, key: str) -> Any:
    """Convert to the lorakit field's type; a bad value is a ConfigError naming the kohya key."""
    try:
        if kind is bool:
            if isinstance(value, str):
                raise ValueError
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value) if not isinstance(value, (list, dict)) else value
    except (TypeError, ValueError):
        raise ConfigError(f"kohya_ss {key} = {value!r} is not a valid {kind.__name__}.") from None


def _number(r: _Reader, key: str, what: str = "a finite number >= 0") -> float:
    """A kohya key as a finite float >= 0 (0 when missing or empty); anything else names the key."""
    value = r.get(key, 0) or 0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ConfigError(f"kohya_ss {key} = {r.raw.get(key)!r} must be {what}: fix it in the kohya_ss settings "
                          "(e.g. 0.0001), then import again.")
    return number


# ---- the import ---------------------------------------------------------------------------------------------


@dataclass
class KohyaImport:
    """A TrainConfig read from kohya_ss settings, and what happened to each kohya key."""

    config: TrainConfig
    mapped: list[tuple[str, str, Any]] = field(default_factory=list)  # (kohya key, lorakit setting, value)
    ignored: list[tuple[str, Any, str]] = field(default_factory=list)  # (kohya key, value, why)
    unsupported: list[tuple[str, Any, str]] = field(default_factory=list)  # (kohya key, value, what is lost)

    def report(self) -> str:
        """The three lists as readable text."""
        lines = [f"Mapped ({len(self.mapped)}):"]
        lines += [f"  {k:<34} -> {dst} = {v!r}" for k, dst, v in self.mapped]
        lines += ["", f"Not supported by lorakit ({len(self.unsupported)}): these change training in kohya_ss"]
        lines += [f"  {k} = {v!r}: {why}" for k, v, why in self.unsupported]
        lines += ["", f"Ignored ({len(self.ignored)}):"]
        lines += [f"  {k} = {v!r}: {why}" for k, v, why in self.ignored]
        return "\n".join(lines)

    def keys(self) -> set[str]:
        """Every kohya key that appears in the report (each exactly once)."""
        return {m[0] for m in self.mapped} | {i[0] for i in self.ignored} | {u[0] for u in self.unsupported}


class _Reader:
    """Walks the kohya keys once, collecting lorakit values and the report."""

    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        self.kv = {k: _value(v) for k, v in raw.items()}
        self.values: dict[str, Any] = {}
        self.mapped: list[tuple[str, str, Any]] = []
        self.ignored: list[tuple[str, Any, str]] = []
        self.unsupported: list[tuple[str, Any, str]] = []
        self.kinds = {key: type(default_of(f)) for key, f in field_keys()}
        self.choices = {key: f.metadata.get("choices") for key, f in field_keys()}

    def get(self, key: str, default: Any = UNSET) -> Any:
        value = self.kv.get(key, UNSET)
        return default if value is UNSET else value

    def has(self, key: str) -> bool:
        return self.kv.get(key, UNSET) is not UNSET

    def map(self, key: str, dst: str, value: Any) -> None:
        kind = self.kinds[dst]
        value = _as(kind, value, key) if kind is not list else value
        allowed = self.choices.get(dst)
        if allowed and value not in allowed:
            kept = self.values.get(dst, _default(dst))
            self.flag(key, value, f"lorakit's {dst} is one of {_listed(allowed)}; kept {kept!r}")
            return
        self.values[dst] = value
        self.mapped.append((key, dst, value))

    def ignore(self, key: str, why: str) -> None:
        if key in self.raw:
            self.ignored.append((key, self.raw[key], why))

    def flag(self, key: str, value: Any, why: str) -> None:
        self.unsupported.append((key, value, why))

    def done(self, key: str) -> bool:
        """Whether ``key`` is already in the report."""
        return any(key == entry[0] for entries in (self.mapped, self.ignored, self.unsupported)
                   for entry in entries)

    def unset(self, key: str, dst: str) -> None:
        note = " (sd-scripts on its own would read .caption files)" if key == "caption_extension" else ""
        self.ignore(key, f"empty: lorakit's default {dst} = {_default(dst)!r} is used{note}")


def _default(dst: str) -> Any:
    return TrainConfig().get(dst)


def import_kohya(source: str | Path | dict[str, Any]) -> KohyaImport:
    """Read kohya_ss GUI settings (a file path, pasted text, or a dict) into a TrainConfig with a report."""
    if isinstance(source, dict):
        raw = dict(source)
    else:
        text = str(source)
        looks_like_path = "{" not in text and "\n" not in text.strip() and len(text) < 1024
        if isinstance(source, Path) or (looks_like_path and Path(text.strip()).expanduser().is_file()):
            text = Path(text.strip()).expanduser().read_text(encoding="utf-8-sig")
        elif looks_like_path:
            raise ConfigError(f"{text.strip()!r} is neither a file nor kohya_ss settings (a JSON object {{...}}).")
        raw = parse_kohya_text(text)
    r = _Reader(raw)
    for rule in (_network, _learning_rates, _family, _resolution, _noise, _epochs, _warmup, _text_encoder_stop,
                 _attention, _sampling, _saving_format, _optimizer, _logging):
        rule(r)
    _direct(r)
    _lorakit_block(r)
    _others(r)
    config = TrainConfig().replace(r.values, source="kohya_ss settings")
    return KohyaImport(config, r.mapped, r.ignored, r.unsupported)


def _direct(r: _Reader) -> None:
    """The keys that mean the same on both sides; "" means lorakit's default."""
    for key, dst in DIRECT.items():
        if key not in r.raw or r.done(key):
            continue
        if r.has(key):
            r.map(key, dst, r.get(key))
        else:
            r.unset(key, dst)


def _network(r: _Reader) -> None:
    kind = str(r.get("LoRA_type", "Standard"))
    net = NETWORK_TYPES.get(kind)
    if net == "locon" and r.get("dora_wd", False):
        net = "dora"
    if net is None:
        r.flag("LoRA_type", kind, f"lorakit trains {', '.join(sorted(NETWORK_TYPES))}; kept 'lora'")
        net = "lora"
    elif "LoRA_type" in r.raw:
        r.map("LoRA_type", "network.type", net)
    r.ignore("dora_wd", "read with LoRA_type")
    convs = net in ("locon", "loha", "lokr")
    for key, dst in (("conv_dim", "network.conv_rank"), ("conv_alpha", "network.conv_alpha")):
        if key not in r.raw:
            continue
        if convs and r.has(key):
            r.map(key, dst, r.get(key))
        else:
            r.ignore(key, f"conv layers are trained only by LoCon/LoHa/LoKr, not by LoRA_type {kind!r}")
    lycoris = kind.startswith("LyCORIS")
    for key, neutral in LYCORIS_OPTIONS.items():
        if key not in r.raw:
            continue
        if not lycoris:
            r.ignore(key, f"a LyCORIS option; not used by LoRA_type {kind!r}")
        elif r.get(key, neutral) == neutral:
            r.ignore(key, "LyCORIS default")
        else:
            r.flag(key, r.raw[key], "LyCORIS fine-tuning option; lorakit uses peft's defaults")


def _learning_rates(r: _Reader) -> None:
    lr, unet, te = (_number(r, k) for k in ("learning_rate", "unet_lr", "text_encoder_lr"))
    if unet == te == 0:
        if lr > 0:  # kohya_ss: learning_rate applies to both when neither is set
            r.values.update({"optimizer.unet_lr": lr, "optimizer.text_encoder_lr": lr})
            r.mapped.append(("learning_rate", "optimizer.unet_lr, optimizer.text_encoder_lr", lr))
            r.ignore("unet_lr", "0: learning_rate is used")
            r.ignore("text_encoder_lr", "0: learning_rate is used")
        else:
            for key in ("learning_rate", "unet_lr", "text_encoder_lr"):
                if key in r.raw:
                    r.flag(key, r.raw[key], "all learning rates are 0; lorakit's defaults are kept")
        return
    r.ignore("learning_rate", "kohya_ss uses unet_lr / text_encoder_lr when either is set")
    if unet > 0:
        r.map("unet_lr", "optimizer.unet_lr", unet)
    else:
        r.map("unet_lr", "network.train_unet", False)  # kohya_ss: text encoder only
    r.map("text_encoder_lr", "optimizer.text_encoder_lr", te)  # 0 = UNet only, as in kohya_ss
    r.mapped = [m for m in r.mapped if m[0] in r.raw]  # a missing key still means 0, but is not reported


def _family(r: _Reader) -> None:
    if not any(r.has(k) for k in ("sdxl", "v2", "v_parameterization")):
        return  # nothing said: lorakit detects the family from the model
    sdxl, v2, vpred = (bool(r.get(k, False)) for k in ("sdxl", "v2", "v_parameterization"))
    family = "sdxl" if sdxl else ("sd2-v" if v2 and vpred else "sd2" if v2 else "sd1")
    for key in ("sdxl", "v2"):
        if key in r.raw:
            r.map(key, "model.family", family)
    if "v_parameterization" in r.raw:
        r.map("v_parameterization", "model.prediction_type", "v_prediction" if vpred else "epsilon")


def _resolution(r: _Reader) -> None:
    if "max_resolution" not in r.raw:
        return
    raw = r.get("max_resolution")
    if raw is UNSET:
        r.unset("max_resolution", "data.resolution")
        return
    try:
        sides = [int(float(p)) for p in re.split(r"[,x× ]+", str(raw).strip()) if p]
    except (ValueError, OverflowError):
        sides = []
    if not 1 <= len(sides) <= 2 or not all(8 <= v <= 8192 for v in sides):
        raise ConfigError(f"kohya_ss max_resolution = {raw!r} must be a size such as '512,512' (8 to 8192 pixels).")
    if len(sides) == 1:
        sides *= 2
    side = round(math.sqrt(sides[0] * sides[1]) / 8) * 8  # same pixel area, as a square side
    if sides[0] == sides[1]:
        r.map("max_resolution", "data.resolution", side)
        return
    r.values["data.resolution"] = side
    r.flag("max_resolution", raw, f"non-square {sides[0]}x{sides[1]}: lorakit trains at the same area, "
                                  f"data.resolution = {side}, with buckets for the aspect ratios")


def _noise(r: _Reader) -> None:
    kind = str(r.get("noise_offset_type", "Original"))
    r.ignore("noise_offset_type", IGNORED["noise_offset_type"])
    active = ("noise_offset",) if kind == "Original" else ("multires_noise_iterations", "multires_noise_discount")
    keys = {"noise_offset": "training.noise_offset", "multires_noise_iterations": "training.multires_noise_iterations",
            "multires_noise_discount": "training.multires_noise_discount"}
    for key, dst in keys.items():
        if key not in r.raw:
            continue
        if key in active:
            r.map(key, dst, r.get(key, _default(dst)))
        else:
            r.ignore(key, f"noise_offset_type is {kind!r}: kohya_ss does not pass this setting")


def _epochs(r: _Reader) -> None:
    if r.has("max_train_epochs") and _as(int, r.get("max_train_epochs"), "max_train_epochs") > 0:
        r.map("max_train_epochs", "training.max_train_epochs", r.get("max_train_epochs"))
        r.ignore("epoch", "max_train_epochs overrides it")
        return
    r.ignore("max_train_epochs", "empty: epoch is used")
    if r.has("epoch"):
        r.map("epoch", "training.max_train_epochs", r.get("epoch"))
    else:
        r.unset("epoch", "training.max_train_epochs")


def _warmup(r: _Reader) -> None:
    steps, pct = int(_number(r, "lr_warmup_steps", "a whole number >= 0")), _number(r, "lr_warmup", "a % from 0 to 100")
    constant = str(r.get("lr_scheduler", "")) == "constant"
    for key, value in (("lr_warmup_steps", steps), ("lr_warmup", pct)):
        if key not in r.raw:
            continue
        if constant and value:
            r.ignore(key, "kohya's 'constant' scheduler ignores warm-up")
        elif key == "lr_warmup_steps":
            r.map(key, "optimizer.lr_warmup_steps", steps)
        elif steps:
            r.ignore(key, "lr_warmup_steps is set and wins")
        else:
            r.map(key, "optimizer.lr_warmup_ratio", pct / 100)


def _text_encoder_stop(r: _Reader) -> None:
    if "stop_text_encoder_training" not in r.raw:
        return
    pct = _number(r, "stop_text_encoder_training", "a % from 0 to 100")
    if pct == 0:
        r.map("stop_text_encoder_training", "optimizer.stop_text_encoder_training", 0)
    else:
        r.flag("stop_text_encoder_training", r.raw["stop_text_encoder_training"],
               "kohya_ss gives a % of all steps; set optimizer.stop_text_encoder_training (in steps) "
               "from notebook 02's steps table")


def _attention(r: _Reader) -> None:
    if r.has("xformers"):
        r.map("xformers", "training.sdpa", str(r.get("xformers", "none")).lower() not in ("none", "false"))


def _sampling(r: _Reader) -> None:
    if "sample_prompts" not in r.raw:
        return
    text = r.get("sample_prompts", "")
    prompts = prompt_lines(str(text).splitlines()) if text is not UNSET else []  # '#' lines are comments
    r.map("sample_prompts", "sampling.sample_prompts", prompts)


def _saving_format(r: _Reader) -> None:
    fmt = str(r.get("save_model_as", "safetensors"))
    if fmt == "safetensors":
        r.ignore("save_model_as", "lorakit always writes .safetensors")
    elif "save_model_as" in r.raw:
        r.flag("save_model_as", fmt, "lorakit writes .safetensors only (safe to load, read everywhere)")


def _optimizer(r: _Reader) -> None:
    if "optimizer" not in r.raw:
        return
    name = str(r.get("optimizer", "AdamW"))
    mapped, extra, note = kohya_optimizer(name)
    if mapped is None:
        r.flag("optimizer", name, note)
        r.ignore("optimizer_args", f"arguments of {name}, which lorakit does not offer")
        return
    r.map("optimizer", "optimizer.optimizer", mapped)
    if note:
        r.mapped[-1] = ("optimizer", "optimizer.optimizer", f"{mapped} ({note})")
    if extra:
        r.values["optimizer.optimizer_args"] = f"{extra} {r.get('optimizer_args', '') or ''}".strip()
        r.kv["optimizer_args"] = r.values["optimizer.optimizer_args"]


def _logging(r: _Reader) -> None:
    """kohya's log_with (tensorboard, wandb) and use_wandb = true -> training.log_with."""
    if r.has("log_with"):
        r.map("log_with", "training.log_with", str(r.get("log_with")).lower())
    elif "log_with" in r.raw:
        r.ignore("log_with", "empty: nothing is logged beyond the project's logs/loss.jsonl")
    if "use_wandb" not in r.raw:
        return
    if _as(bool, r.get("use_wandb", False), "use_wandb"):
        if r.values.get("training.log_with", "wandb") == "wandb":
            r.map("use_wandb", "training.log_with", "wandb")
        else:
            r.ignore("use_wandb", f"log_with = {r.values['training.log_with']!r} is kept (lorakit logs to one tracker)")
    else:
        r.ignore("use_wandb", "off (its neutral value)")


def _others(r: _Reader) -> None:
    """Every key not read yet: neutral, ignored with a reason, or not supported."""
    for key, raw in r.raw.items():
        if r.done(key):
            continue
        if key in DIRECT or key in SPECIAL:
            r.ignore(key, "empty, or not used with the other settings")
            continue
        if key in NEUTRAL:
            neutral, why = NEUTRAL[key]
            if _value(raw) in (neutral, UNSET):
                r.ignore(key, "off (its neutral value)")
            else:
                r.flag(key, raw, why)
        elif key in IGNORED:
            r.ignore(key, IGNORED[key])
        else:
            r.flag(key, raw, "not a kohya_ss setting lorakit knows; check its meaning by hand")


def _lorakit_block(r: _Reader) -> None:
    """Settings kohya_ss cannot express, carried by lorakit's own export under the key 'lorakit'."""
    block = r.raw.get("lorakit")
    if not isinstance(block, dict):
        return
    for dst, value in block.items():
        r.values[dst] = value
        r.mapped.append(("lorakit", dst, value))


# ---- the export ---------------------------------------------------------------------------------------------


def export_kohya(cfg: TrainConfig) -> dict[str, Any]:
    """kohya_ss GUI settings for ``cfg``; what kohya cannot express goes under 'lorakit' so import restores it."""
    cfg.validate()
    out = _kohya_values(cfg)
    back = import_kohya(out).config
    extra = {key: cfg.get(key) for key, _ in field_keys() if back.get(key) != cfg.get(key)}
    if extra:
        out["lorakit"] = extra
    return out


def export_kohya_text(cfg: TrainConfig) -> str:
    """``export_kohya`` as the indented JSON the kohya_ss GUI opens."""
    return json.dumps(export_kohya(cfg), indent=2, ensure_ascii=False) + "\n"


def _kohya_values(cfg: TrainConfig) -> dict[str, Any]:
    m, n, o, d, t = cfg.model, cfg.network, cfg.optimizer, cfg.data, cfg.training
    out: dict[str, Any] = {key: cfg.get(dst) for key, dst in DIRECT.items()}
    out.update({
        "LoRA_type": EXPORT_NETWORK[n.type],
        "dora_wd": n.type == "dora",
        "conv_dim": n.conv_rank,
        "conv_alpha": n.conv_alpha,
        "learning_rate": o.unet_lr,
        "unet_lr": o.unet_lr if n.train_unet else 0.0,
        "text_encoder_lr": o.text_encoder_lr,
        "sdxl": m.family == "sdxl",
        "v2": m.family in ("sd2", "sd2-v"),
        "v_parameterization": m.prediction_type == "v_prediction" or m.family == "sd2-v",
        "max_resolution": f"{d.resolution},{d.resolution}",
        "noise_offset_type": "Multires" if t.multires_noise_iterations else "Original",
        "noise_offset": t.noise_offset,
        "multires_noise_iterations": t.multires_noise_iterations,
        "multires_noise_discount": t.multires_noise_discount,
        "epoch": t.max_train_epochs,
        "max_train_epochs": "",
        "lr_warmup": round(o.lr_warmup_ratio * 100, 6),
        "lr_warmup_steps": o.lr_warmup_steps,
        "stop_text_encoder_training": 0,
        "optimizer": o.optimizer,
        "xformers": "sdpa" if t.sdpa else "none",
        "sample_prompts": "\n".join(cfg.sampling.sample_prompts),
        "save_model_as": "safetensors",
        "log_with": t.log_with if t.log_with in ("tensorboard", "wandb") else "",  # trackio: in the 'lorakit' block
    })
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))
