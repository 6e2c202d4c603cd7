"""Writing what training produces: LoRA files with kohya's ``ss_*`` metadata, and resumable training state.

    save_lora(path, net.kohya_state_dict(torch.float16), metadata)     # atomic
    read_lora_metadata(path)                                            # {"ss_network_dim": "16", ...}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lorakit.config.schema import TrainConfig
from lorakit.errors import GenerateError, TrainingError
from lorakit.files import atomic_path

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "float": torch.float32}


def checkpoint_name(output_name: str, index: int | None, step: bool = False) -> str:
    """kohya's names: 'name-000003.safetensors' after epoch 3, 'name-step00000500.safetensors' for a save at
    step 500 (``step``), 'name.safetensors' for the last."""
    if index is None:
        return f"{output_name}.safetensors"
    return f"{output_name}-step{index:08d}.safetensors" if step else f"{output_name}-{index:06d}.safetensors"


def save_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a .safetensors LoRA atomically (never a half-written file under the final name, never a broken one)."""
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise TrainingError(f"not writing {Path(path).name}: {len(broken)} of {len(tensors)} tensors hold inf or nan "
                            f"(first: {broken[0]}); lower the learning rates and train again.")
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    return path


@contextlib.contextmanager
def open_lora(path: str | Path) -> Iterator:
    """The file's safetensors handle; a truncated or foreign file is a sentence naming it."""
    try:
        handle = safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as e:
        raise GenerateError(f"{Path(path).name} is not a readable LoRA .safetensors file ({e}): is it truncated, "
                            "or another format renamed? Copy or download it again.") from None
    with handle as f:
        yield f


def lora_keys(path: str | Path) -> list[str]:
    with open_lora(path) as f:
        return list(f.keys())


def dora_layout(path: str | Path) -> str | None:
    """Which axis a DoRA file's magnitudes run along, read from the shapes alone: "output" (one per output row,
    (out, 1, …): PEFT's and LyCORIS' wd_on_out, what lorakit writes), "input" (one per input column, (1, in, …):
    the DoRA paper's and AUTOMATIC1111's), or None for a file without ``dora_scale``."""
    with open_lora(path) as f:
        names = f.keys()  # a safetensors handle is not iterable
        for key in names:
            if key.endswith(".dora_scale"):
                shape = f.get_slice(key).get_shape()
                return "input" if len(shape) > 1 and shape[0] == 1 and shape[1] > 1 else "output"
    return None


def read_lora_metadata(path: str | Path) -> dict[str, str]:
    with open_lora(path) as f:
        return dict(f.metadata() or {})


def model_hash_short(source: str) -> str:
    """A1111's legacy model hash (8 hex chars of sha256 over 64 KiB at offset 1 MiB); "" unless a single file."""
    path = Path(source)
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(0x100000)
        return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def model_hash(source: str) -> tuple[str, str]:
    """(legacy A1111 hash, sha256 of the file) for single files; ("", "") for folders and hub ids."""
    path = Path(source)
    if not path.is_file():
        return "", ""
    legacy = model_hash_short(source)
    full = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            full.update(chunk)
    return legacy, full.hexdigest()


def tag_frequency(items) -> dict[str, dict[str, int]]:
    """{folder: {tag: count}} as kohya stores it in ss_tag_frequency."""
    freq: dict[str, dict[str, int]] = {}
    for it in items:
        tags = freq.setdefault(it.folder, {})
        for tag in (t.strip() for t in it.caption.split(",")):
            if tag:
                tags[tag] = tags.get(tag, 0) + 1
    return freq


def build_metadata(cfg: TrainConfig, base, run: dict[str, Any]) -> dict[str, str]:
    """kohya's ss_* keys (and modelspec.*) so A1111, ComfyUI and civitai-style readers show the recipe."""
    n, o, d, t = cfg.network, cfg.optimizer, cfg.data, cfg.training
    module = {"lora": "networks.lora", "locon": "networks.lora", "dora": "networks.lora",
              "loha": "lycoris.kohya", "lokr": "lycoris.kohya"}[n.type]
    net_args: dict[str, str] = {}
    if n.type == "locon":
        net_args = {"conv_dim": str(n.conv_rank or n.rank), "conv_alpha": str(n.conv_alpha or n.alpha)}
    elif n.type in ("loha", "lokr"):
        net_args = {"algo": n.type, "conv_dim": str(n.conv_rank or n.rank), "conv_alpha": str(n.conv_alpha or n.alpha)}
    elif n.type == "dora":
        net_args = {"dora_wd": "True"}
    fam = base.family
    meta = {
        "ss_session_id": run["session_id"],
        "ss_training_started_at": run["started_at"],
        "ss_output_name": cfg.saving.output_name,
        "ss_learning_rate": o.unet_lr,
        "ss_unet_lr": o.unet_lr,
        "ss_text_encoder_lr": o.text_encoder_lr,
        "ss_network_module": module,
        "ss_network_dim": n.rank,
        "ss_network_alpha": n.alpha,
        "ss_network_dropout": n.dropout,
        "ss_network_args": json.dumps(net_args) if net_args else "",
        "ss_base_model_version": fam.ss_base_model_version,
        "ss_v2": fam.v2,
        "ss_v_parameterization": base.prediction_type == "v_prediction",
        "ss_sd_model_name": Path(base.source).name,
        "ss_sd_model_hash": run.get("model_hash", ""),
        "ss_new_sd_model_hash": run.get("model_sha256", ""),
        "ss_resolution": f"({d.resolution}, {d.resolution})",
        "ss_enable_bucket": d.enable_bucket,
        "ss_min_bucket_reso": d.min_bucket_reso,
        "ss_max_bucket_reso": d.max_bucket_reso,
        "ss_bucket_no_upscale": d.bucket_no_upscale,
        "ss_bucket_info": json.dumps(run.get("bucket_info", {})),
        "ss_num_train_images": run["num_train_images"],
        "ss_num_reg_images": run["num_reg_images"],
        "ss_num_batches_per_epoch": run["batches_per_epoch"],
        "ss_num_epochs": t.max_train_epochs,
        "ss_epoch": run["epoch"],
        "ss_steps": run["step"],
        "ss_max_train_steps": run["total_steps"],
        "ss_batch_size_per_device": t.train_batch_size,
        "ss_total_batch_size": t.train_batch_size * o.gradient_accumulation_steps * run.get("num_processes", 1),
        "ss_gradient_accumulation_steps": o.gradient_accumulation_steps,
        "ss_gradient_checkpointing": t.gradient_checkpointing,
        "ss_optimizer": o.optimizer + (f"({o.optimizer_args})" if o.optimizer_args else ""),
        "ss_lr_scheduler": o.lr_scheduler,
        "ss_lr_warmup_steps": cfg.warmup_steps(run["total_steps"]),
        "ss_max_grad_norm": o.max_grad_norm,
        "ss_mixed_precision": t.mixed_precision,
        "ss_full_fp16": False,
        "ss_clip_skip": cfg.model.clip_skip,
        "ss_cache_latents": d.cache_latents,
        "ss_seed": t.seed,
        "ss_noise_offset": t.noise_offset,
        "ss_multires_noise_iterations": t.multires_noise_iterations,
        "ss_multires_noise_discount": t.multires_noise_discount,
        "ss_min_snr_gamma": t.min_snr_gamma,
        "ss_debiased_estimation": t.debiased_estimation_loss,
        "ss_ip_noise_gamma": t.ip_noise_gamma,
        "ss_zero_terminal_snr": bool(base.noise_scheduler.config.get("rescale_betas_zero_snr", False)),
        "ss_shuffle_caption": d.shuffle_caption,
        "ss_keep_tokens": d.keep_tokens,
        "ss_max_token_length": d.max_token_length,
        "ss_caption_dropout_rate": d.caption_dropout_rate,
        "ss_caption_tag_dropout_rate": d.caption_tag_dropout_rate,
        "ss_flip_aug": d.flip_aug,
        "ss_prior_loss_weight": d.prior_loss_weight,
        "ss_tag_frequency": json.dumps(run.get("tag_frequency", {}), ensure_ascii=False),
        "ss_dataset_dirs": json.dumps(run.get("dataset_dirs", {}), ensure_ascii=False),
        "ss_training_comment": cfg.saving.training_comment,
        "ss_training_finished_at": str(time.time()),
        "sshs_model_hash": "",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": fam.modelspec_architecture,
        "modelspec.implementation": fam.modelspec_implementation,
        "modelspec.title": cfg.saving.output_name,
        "modelspec.resolution": f"{d.resolution}x{d.resolution}",
        "modelspec.prediction_type": "v" if base.prediction_type == "v_prediction" else "epsilon",
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if cfg.saving.training_comment:
        meta["modelspec.description"] = cfg.saving.training_comment
    return {k: str(v) for k, v in meta.items()}  # kohya writes Python's str(): "True", "0.0001", ...


# ---- resumable state -----------------------------------------------------------------------------------






