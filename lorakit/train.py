"""Train a LoRA on a project's dataset with the project's config.

    python -m lorakit train my-project            # or: accelerate launch -m lorakit train my-project
    from lorakit.train import train; result = train(Project.open("my-project"), cfg)

The loop reads top to bottom: cached latents -> noise -> timesteps -> noisy latents -> text embedding ->
target by prediction type -> UNet -> loss -> backward -> step. Options live in small helpers (noise.py,
optim.py, checkpoint.py); events (progress, loss, samples, checkpoints) go to callbacks, which the notebook
draws and the CLI prints.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from lorakit import checkpoint as ckpt
from lorakit.config import TrainConfig
from lorakit.dataset import (
    DatasetError,
    LatentCache,
    assign_buckets,
    epoch_batches,
    process_caption,
    scan_dataset,
)
from lorakit.models import BaseModel, load_base
from lorakit.network import Network
from lorakit.noise import debiased_weights, min_snr_weights, sample_noise, sample_timesteps, training_target
from lorakit.optim import build_optimizer, build_scheduler
from lorakit.project import Project

OOM_ADVICE = (
    "CUDA ran out of memory. In order of effect: set training.train_batch_size = 1; turn on "
    "training.gradient_checkpointing; keep data.cache_latents on; use optimizer AdamW8bit (bitsandbytes) or "
    "Adafactor; set training.mixed_precision = 'bf16' (RTX 30xx+) or 'fp16'; lower data.resolution "
    "(e.g. 768 -> 512 for SD1.5); lower network.rank; close other programs using the GPU."
)


class Callback:
    """Receives training events; override what you need (the notebook's live view does)."""

    def on_start(self, info: dict) -> None: ...
    def on_step(self, step: int, loss: float, lr: float) -> None: ...
    def on_epoch_end(self, epoch: int, mean_loss: float) -> None: ...
    def on_checkpoint(self, path: Path) -> None: ...
    def on_samples(self, epoch: int, step: int, paths: list[Path]) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    checkpoints: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    time_to_first_step: float = 0.0
    interrupted: bool = False
    state_path: Path | None = None
    weights_checksum: str = ""
    process_index: int = 0
    num_processes: int = 1
    moved_aside: list[Path] = field(default_factory=list)  # an earlier run's files, kept in output/previous/

    @property
    def final(self) -> Path | None:
        return self.checkpoints[-1] if self.checkpoints else None


class _Interrupted(Exception):
    pass


def train(project: Project, cfg: TrainConfig, *, callbacks: list[Callback] | tuple = (), resume: bool = False,
          stop_after_steps: int = 0) -> TrainResult:
    """Train and write checkpoints to ``project.output_dir``. ``stop_after_steps`` simulates an interruption."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    t_start = time.perf_counter()
    cfg.validate()
    t = cfg.training
    accelerator = Accelerator(
        mixed_precision=t.mixed_precision if torch.cuda.is_available() else "no",
        gradient_accumulation_steps=cfg.optimizer.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
    )
    set_seed(t.seed)
    # the frozen base model in half precision on the GPU (the adapter itself stays fp32)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    base = load_base(cfg.model.base_model, family=cfg.model.family, prediction_type=cfg.model.prediction_type,
                     dtype=weight_dtype, device=accelerator.device, allow_pickle=cfg.model.allow_pickle,
                     single_file_config=cfg.model.single_file_config or None)
    _configure_speed(base, cfg)

    # ---- data: scan, buckets, latents cached once (the VAE never runs inside the loop) ----
    d = cfg.data
    scan = scan_dataset(project.resolve(d.dataset_dir), d.caption_extension, repeats_override=d.repeats)
    items = scan.train_items
    if d.reg_dir:
        reg = scan_dataset(project.resolve(d.reg_dir), d.caption_extension, is_reg=True)
        items += reg.items
        scan.caption_errors += reg.caption_errors
    if scan.caption_errors:
        raise DatasetError("Fix these captions before training:\n" + "\n".join(scan.caption_errors))
    bucket_counts = assign_buckets(items, d.resolution, d.enable_bucket, d.min_bucket_reso, d.max_bucket_reso,
                                   d.bucket_reso_steps, d.bucket_no_upscale)
    cache = LatentCache(base.vae, base.latent_scale, base.vae_shift,
                        project.cache_dir / "latents" if d.cache_latents_to_disk else None,
                        write=accelerator.is_main_process)
    if d.cache_latents:
        try:
            for it in items:
                cache.get(it, False)
                if d.flip_aug:
                    cache.get(it, True)
        except torch.cuda.OutOfMemoryError as e:
            raise RuntimeError(OOM_ADVICE) from e
    world, rank = accelerator.num_processes, accelerator.process_index
    batches_per_epoch = len(epoch_batches(items, t.train_batch_size, t.seed, 0, d.flip_aug)) // world
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.optimizer.gradient_accumulation_steps)
    steps_total = steps_per_epoch * t.max_train_epochs
    if t.max_train_steps:
        steps_total = min(steps_total, t.max_train_steps) if t.max_train_epochs else t.max_train_steps
    epochs = math.ceil(steps_total / steps_per_epoch)

    # ---- network, optimizer, schedule ----
    net = Network.attach(base, cfg)
    groups = [{"params": net.parameters("lora_unet"), "lr": cfg.optimizer.unet_lr}] if "lora_unet" in net.parts else []
    te_params = [p for k in net.parts if k.startswith("lora_te") for p in net.parameters(k)]
    if te_params:
        groups.append({"params": te_params, "lr": cfg.optimizer.text_encoder_lr})
    optimizer = build_optimizer(cfg, groups)
    lr_scheduler = build_scheduler(cfg, optimizer, steps_total)
    if t.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
        for te in base.text_encoders:
            if te in net.parts.values():
                te.gradient_checkpointing_enable()
    trained = list(net.parts.values())
    for m in trained:
        m.train()
    # the scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step it once per process)
    optimizer = accelerator.prepare(optimizer)
    noise_gen = torch.Generator("cpu").manual_seed(t.seed)

    run = {"session_id": uuid.uuid4().hex[:16], "started_at": str(time.time()), "total_steps": steps_total,
           "num_train_images": len(scan.train_items) and sum(i.repeats for i in scan.train_items),
           "num_reg_images": sum(i.repeats for i in items if i.is_reg), "batches_per_epoch": batches_per_epoch,
           "bucket_info": {"buckets": {f"{w}x{h}": n for (w, h), n in bucket_counts.items()}},
           "tag_frequency": ckpt.tag_frequency(scan.train_items),
           "dataset_dirs": _dataset_dirs(scan.train_items), "num_processes": accelerator.num_processes}
    run["model_hash"], run["model_sha256"] = ckpt.model_hash(base.source)
    result = TrainResult()
    state_file = project.state_dir / "state.pt"
    if not resume and accelerator.is_main_process:
        result.moved_aside = keep_previous_run(project, cfg.saving.output_name)
    step, start_epoch, skip_batches = 0, 0, 0
    if resume:
        if not state_file.is_file():
            raise FileNotFoundError(f"--resume: no saved state at {state_file}; start without resume.")
        state = ckpt.load_state(state_file)
        net.load_trainable_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"], noise_gen)
        step, start_epoch, skip_batches = state["step"], state["epoch"], state["batch_in_epoch"]
        run["session_id"] = state["session_id"]
        result.checkpoints = [Path(p) for p in state.get("checkpoints", []) if Path(p).is_file()]
        result.losses = state.get("losses", [])
    for cb in callbacks:
        cb.on_start({"total_steps": steps_total, "epochs": epochs, "batches_per_epoch": batches_per_epoch,
                     "images": len(items), "model": base.describe(), "start_step": step})
    log_path = project.logs_dir / "loss.jsonl"
    embed_cache: dict[str, tuple] = {}
    sched = base.noise_scheduler
    prev_sigterm = _install_sigterm()

    def save_state(epoch: int, batch_in_epoch: int) -> None:
        if cfg.saving.save_state and accelerator.is_main_process:
            ckpt.save_state(state_file, {
                "network": net.trainable_state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": lr_scheduler.state_dict(), "rng": ckpt.rng_state(noise_gen), "step": step,
                "epoch": epoch, "batch_in_epoch": batch_in_epoch, "session_id": run["session_id"],
                "checkpoints": [str(p) for p in result.checkpoints], "losses": result.losses})
            result.state_path = state_file

    def save_lora(index: int | None, epoch: int) -> None:
        if not accelerator.is_main_process:
            return
        meta = ckpt.build_metadata(cfg, base, {**run, "epoch": epoch, "step": step})
        path = project.output_dir / ckpt.checkpoint_name(cfg.saving.output_name, index)
        ckpt.save_lora(path, net.kohya_state_dict(ckpt.SAVE_DTYPES[cfg.saving.save_precision]), meta)
        if path not in result.checkpoints:
            result.checkpoints.append(path)
        _prune(result.checkpoints, cfg.saving.save_last_k)
        for cb in callbacks:
            cb.on_checkpoint(path)

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, epochs):
            # every process takes its share of the same epoch order (equal counts, so the all-reduces pair up)
            batches = epoch_batches(items, t.train_batch_size, t.seed, epoch, d.flip_aug)
            batches = batches[rank::world][:batches_per_epoch]
            epoch_losses = []
            for b_index, batch in enumerate(batches):
                if b_index < skip_batches:  # resuming mid-epoch: the same order, minus what was done
                    continue
                if step >= steps_total:
                    break
                with accelerator.accumulate(*trained):
                    # 1. latents of the images (cached: the VAE encode costs more than a UNet step)
                    latents = torch.stack([cache.get(s.item, s.flip) if d.cache_latents else
                                           _encode_now(cache, s) for s in batch]).to(accelerator.device, weight_dtype)
                    # 2. noise, and a random timestep per image: the model learns every noise level
                    noise = sample_noise(latents, noise_gen, t.noise_offset, t.multires_noise_iterations,
                                         t.multires_noise_discount)
                    timesteps = sample_timesteps(len(batch), noise_gen, sched.config.num_train_timesteps,
                                                 t.min_timestep, t.max_timestep).to(accelerator.device)
                    if t.ip_noise_gamma:  # input perturbation: the model sees more noise than its target holds
                        extra = torch.randn(noise.shape, generator=noise_gen).to(noise.device, noise.dtype)
                        noisy = sched.add_noise(latents, noise + t.ip_noise_gamma * extra, timesteps)
                    else:
                        noisy = sched.add_noise(latents, noise, timesteps)
                    # 3. the caption, as the text encoder (training or frozen) sees it
                    rng = random.Random(f"{t.seed}:{epoch}:{b_index}")
                    captions = [process_caption(s.item.caption, rng, d.shuffle_caption, d.keep_tokens,
                                                d.caption_tag_dropout_rate, d.caption_dropout_rate) for s in batch]
                    te_on = net.has_text_encoder and not (cfg.optimizer.stop_text_encoder_training and
                                                          step >= cfg.optimizer.stop_text_encoder_training)
                    hidden, pooled = _encode_text(base, cfg, captions, te_on, embed_cache)
                    added = base.family.added_cond(pooled, *_pixel_size(base, latents), len(batch),
                                                   accelerator.device, weight_dtype)
                    # 4. the target by prediction type, and the UNet's guess
                    target = training_target(sched, latents.float(), noise.float(), timesteps, base.prediction_type)
                    with accelerator.autocast():
                        pred = base.unet(noisy, timesteps, hidden.to(weight_dtype),
                                         added_cond_kwargs=added).sample
                    # 5. loss per image: min-SNR or debiased weighting, and the prior-preservation weight on reg images
                    loss = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))
                    if t.min_snr_gamma:
                        loss = loss * min_snr_weights(sched, timesteps, t.min_snr_gamma, base.prediction_type)
                    if t.debiased_estimation_loss:
                        loss = loss * debiased_weights(sched, timesteps, base.prediction_type).to(loss.device)
                    weights = torch.tensor([d.prior_loss_weight if s.item.is_reg else 1.0 for s in batch],
                                           device=loss.device)
                    loss = (loss * weights).mean()
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and world > 1:
                        _average_gradients(accelerator, [p for g in groups for p in g["params"]])
                    if accelerator.sync_gradients and cfg.optimizer.max_grad_norm:
                        accelerator.clip_grad_norm_([p for g in groups for p in g["params"]],
                                                    cfg.optimizer.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                if not accelerator.sync_gradients:
                    continue
                step += 1
                if step == 1 or (resume and not result.time_to_first_step):
                    result.time_to_first_step = time.perf_counter() - t_start
                value = accelerator.gather(loss.detach()[None]).mean().item()
                epoch_losses.append(value)
                result.losses.append(value)
                lr = lr_scheduler.get_last_lr()[0]
                _log(accelerator, log_path, {"step": step, "epoch": epoch + 1, "loss": value, "lr": lr})
                for cb in callbacks:
                    cb.on_step(step, value, lr)
                if cfg.saving.save_every_n_steps and step % cfg.saving.save_every_n_steps == 0 and step < steps_total:
                    save_lora(step, epoch + 1)
                if cfg.sampling.sample_every_n_steps and step % cfg.sampling.sample_every_n_steps == 0:
                    _samples(project, cfg, base, epoch + 1, step, accelerator, result, callbacks)
                if _STOP["flag"] or (stop_after_steps and step >= stop_after_steps):
                    raise _Interrupted
            skip_batches = 0
            for cb in callbacks:
                cb.on_epoch_end(epoch + 1, sum(epoch_losses) / max(1, len(epoch_losses)))
            last = epoch + 1 == epochs or step >= steps_total
            if not last and cfg.saving.save_every_n_epochs and (epoch + 1) % cfg.saving.save_every_n_epochs == 0:
                save_lora(epoch + 1, epoch + 1)
                save_state(epoch + 1, 0)
            if cfg.sampling.sample_every_n_epochs and ((epoch + 1) % cfg.sampling.sample_every_n_epochs == 0 or last):
                _samples(project, cfg, base, epoch + 1, step, accelerator, result, callbacks)
            if last:
                break
        save_lora(None, epoch + 1)
        save_state(epoch + 1, 0)
    except (KeyboardInterrupt, _Interrupted):
        # keep what was learned: the state to resume from, at the exact batch
        result.interrupted = True
        save_state(epoch, b_index + 1)
    except torch.cuda.OutOfMemoryError as e:
        raise RuntimeError(OOM_ADVICE) from e
    finally:
        _STOP["flag"] = False
        if prev_sigterm is not None:
            signal.signal(signal.SIGTERM, prev_sigterm)
        for m in trained:
            m.eval()
        accelerator.wait_for_everyone()
        result.weights_checksum = weights_checksum(net)
        net.detach()  # the cached base model is clean for the next run in this kernel
        if t.gradient_checkpointing:
            base.unet.disable_gradient_checkpointing()
    result.steps, result.epochs = step, epoch + 1
    result.process_index, result.num_processes = rank, world
    _remember_speed(cfg, result, accelerator.is_main_process)
    result.seconds = time.perf_counter() - t_start
    for cb in callbacks:
        cb.on_end(result)
    return result


# ---- helpers -------------------------------------------------------------------------------------------
_STOP = {"flag": False}


def _install_sigterm():
    """On SIGTERM (CLI), stop after the current step and save the state to resume from."""
    try:
        return signal.signal(signal.SIGTERM, lambda *_: _STOP.__setitem__("flag", True))
    except ValueError:  # not the main thread (e.g. some notebook setups): no handler
        return None


def _configure_speed(base: BaseModel, cfg: TrainConfig) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    # SDPA: PyTorch's fused attention (flash / memory-efficient kernels on CUDA); off = the classic matmul version
    base.unet.set_attn_processor(AttnProcessor2_0() if cfg.training.sdpa else AttnProcessor())
    if cfg.training.torch_compile and not getattr(base.unet, "_lorakit_compiled", False):
        base.unet.compile()
        base.unet._lorakit_compiled = True


def _pixel_size(base: BaseModel, latents: torch.Tensor) -> tuple[int, int]:
    f = 2 ** (len(base.vae.config.block_out_channels) - 1)
    return latents.shape[-2] * f, latents.shape[-1] * f


def _encode_now(cache: LatentCache, sample) -> torch.Tensor:
    return cache.encode(sample.item, sample.flip)


def _encode_text(base: BaseModel, cfg: TrainConfig, captions: list[str], te_training: bool, memo: dict):
    """Text embeddings; memoised per caption when the text encoders are frozen."""
    fam = base.family
    if te_training:
        return fam.encode(base, fam.tokenize(base, captions), cfg.model.clip_skip)
    out_h, out_p = [], []
    with torch.no_grad():
        for c in captions:
            if c not in memo:
                memo[c] = fam.encode(base, fam.tokenize(base, [c]), cfg.model.clip_skip)
            h, p = memo[c]
            out_h.append(h)
            out_p.append(p)
    pooled = torch.cat(out_p) if out_p[0] is not None else None
    return torch.cat(out_h), pooled


def _samples(project, cfg, base, epoch, step, accelerator, result, callbacks) -> None:
    if not cfg.sampling.sample_prompts or not accelerator.is_main_process:
        return
    from lorakit.sampling import draw_samples

    paths = draw_samples(base, cfg, project.samples_dir / f"{epoch:06d}", step)
    result.samples.extend(paths)
    for cb in callbacks:
        cb.on_samples(epoch, step, paths)


def _log(accelerator, path: Path, row: dict) -> None:
    if accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def _remember_speed(cfg: TrainConfig, result: TrainResult, main: bool) -> None:
    """Record steps/s (first step excluded) so notebook 02 can estimate how long a run takes here."""
    from lorakit.steps import record_config_speed

    ran = result.seconds - result.time_to_first_step
    if main and result.steps > 2 and ran > 0:
        with contextlib.suppress(OSError):
            record_config_speed(cfg, (result.steps - 1) / ran)


def _average_gradients(accelerator, params: list[torch.nn.Parameter]) -> None:
    """Data parallel for adapters: one all-reduce of all adapter gradients (the base model is frozen)."""
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    flat = accelerator.reduce(flat, reduction="mean")
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def weights_checksum(net) -> str:
    """A short fingerprint of the adapter weights (to compare processes or runs)."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(net.trainable_state_dict().items()):
        h.update(key.encode())
        h.update(value.float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def keep_previous_run(project: Project, output_name: str) -> list[Path]:
    """A new run never overwrites an earlier one: its checkpoints and state move to output/previous/<stamp>/."""
    old: list[Path] = project.checkpoints(output_name)
    if not old:
        return []
    old += [p for p in (project.state_dir / "state.pt", project.logs_dir / "loss.jsonl") if p.is_file()]
    old += [p for p in project.samples_dir.glob("*") if p.is_dir()]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, n = project.output_dir / "previous" / stamp, 1
    while dest.exists():
        dest, n = project.output_dir / "previous" / f"{stamp}-{n}", n + 1
    dest.mkdir(parents=True)
    return [p.rename(dest / p.name) for p in old]


def _prune(paths: list[Path], keep: int) -> None:
    """Keep only the newest ``keep`` numbered checkpoints (the final file is never pruned)."""
    if not keep:
        return
    numbered = [p for p in paths if p.stem.rpartition("-")[2].isdigit()]
    for old in numbered[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
        paths.remove(old)


def _dataset_dirs(items) -> dict:
    dirs: dict[str, dict] = {}
    for it in items:
        entry = dirs.setdefault(it.folder, {"n_repeats": it.repeats, "img_count": 0})
        entry["img_count"] += 1
    return dirs

