"""Train a LoRA on a project's dataset with the project's config.

    python -m lorakit train my-project            # or: accelerate launch -m lorakit train my-project
    from lorakit.train.loop import train; result = train(Project.open("my-project"), cfg)

``prepare`` (prepare.py) loads and builds everything; the loop below reads top to bottom: cached latents ->
noise -> timesteps -> noisy latents -> text embedding -> target by prediction type -> UNet -> loss -> backward
-> step. Events (progress, loss, samples, checkpoints) go to callbacks, which the notebook draws and the CLI
prints. An interrupt (Ctrl-C, SIGTERM, ``stop_after_steps``) saves the state to resume from, at the exact batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from lorakit.config.schema import TrainConfig
from lorakit.dataset.crop import micro_conditioning
from lorakit.dataset.scan import Sample, process_caption
from lorakit.errors import TrainingError
from lorakit.lora import file as lora_file
from lorakit.lora.warm_start import check_init_file
from lorakit.models.loading import BaseModel
from lorakit.project import Project
from lorakit.train import state as resume_state
from lorakit.train.ema import checkpoint_variants, restore_ema
from lorakit.train.events import Callback, Callbacks, TrainResult
from lorakit.train.fingerprint import check_resumable, run_fingerprint
from lorakit.train.masked_loss import per_image_loss
from lorakit.train.noise import (
    debiased_weights,
    min_snr_weights,
    sample_noise,
    sample_timesteps,
    training_target,
)
from lorakit.train.outputs import EMBEDDINGS_DIR, drop_interrupted, interrupted_path, keep_previous_run, prune
from lorakit.train.prepare import OOM_ADVICE, Run, prepare
from lorakit.train.sampling import draw_samples, save_strength_sheets
from lorakit.train.trackers import TrackerLog, accelerator_args, group_names
from lorakit.train.validation import Validation

__all__ = ["Callback", "TrainResult", "train"]  # Callback and TrainResult live in events.py


@dataclass
class Position:
    """Where the run is: resuming starts from here, an interrupt saves it."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of this epoch already done


def train(project: Project, cfg: TrainConfig, *, callbacks: list[Callback] | tuple = (), resume: bool = False,
          stop_after_steps: int = 0) -> TrainResult:
    """Train and write checkpoints to ``project.output_dir``. ``stop_after_steps`` simulates an interruption."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    t_start = time.perf_counter()
    cfg.validate()
    events = Callbacks(callbacks)
    # accelerate keeps the first run's mixed precision for the whole process and refuses another one: a notebook
    # that trains again after a change of precision would stop with "restart your runtime". Each run starts anew.
    # The distributed setup (PartialState, what `accelerate launch` made) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        mixed_precision=cfg.training.mixed_precision if torch.cuda.is_available() else "no",
        gradient_accumulation_steps=cfg.optimizer.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
        **accelerator_args(cfg.training.log_with, project.logs_dir),  # the tracker, if any (trackers.py)
    )
    main = accelerator.is_main_process
    with project.lock(enabled=main), StopRequest() as stop:  # one run per project; SIGTERM stops after a step
        state_file = project.state_dir / resume_state.STATE_FILE
        if cfg.network.init_from:
            check_init_file(project.resolve(cfg.network.init_from), cfg)
        # what the state will say it was trained on; a resume that does not match stops here, before any long work
        fingerprint = (run_fingerprint(project, cfg, accelerator.num_processes)
                       if cfg.saving.save_state or resume else {})
        unchecked = (check_resumable(resume_state.json_path(state_file), fingerprint, str(project.root))
                     if resume else "")
        run = prepare(project, cfg, accelerator)
        run.notes += [unchecked] if unchecked else []
        result, pos = TrainResult(), Position()
        if resume:
            pos = restore(run, state_file, result)
        elif main:
            result.moved_aside = keep_previous_run(project, cfg.saving.output_name)
        t, base = cfg.training, run.base
        embed_cache: dict[str, tuple] = {}
        validation = Validation(run, project.validation_log, events, rows=result.validation, active=main,
                                loss=lambda batch, fixed: batch_loss(run, batch, pos, 0, accelerator.device,
                                                                     accelerator, embed_cache, fixed=fixed))

        def save_lora(index: int | None, epoch: int, step: bool = False) -> None:
            if not main:
                return
            raw = project.output_dir / lora_file.checkpoint_name(cfg.saving.output_name, index, step)
            for path, weights in checkpoint_variants(raw, run.ema, cfg.saving.save_weights):  # raw and/or -ema
                with weights:
                    tensors = lora_tensors(run, cfg)
                    lora_file.save_lora(path, tensors, run.record.metadata(cfg, base, epoch, pos.step))
                    if path not in result.checkpoints:
                        result.checkpoints.append(path)
                    prune(result.checkpoints, cfg.saving.save_last_k)
                    events.on_checkpoint(path)
                    validation.measure(pos.step, epoch, path, weights="ema" if path != raw else "raw")

        def save_state(epoch: int, batch: int) -> None:
            if cfg.saving.save_state and main:
                at = Position(pos.step, epoch, batch)
                result.state_path = resume_state.save_state(state_file, {**snapshot(run, at, result),
                                                                         "fingerprint": fingerprint})

        def save_interrupted() -> None:
            """The weights so far as name-interrupted(-ema).safetensors, a LoRA to try; none before the first step."""
            if not main or pos.step == 0:
                return
            raw = interrupted_path(project.output_dir, cfg.saving.output_name)
            for path, weights in checkpoint_variants(raw, run.ema, cfg.saving.save_weights):  # as a checkpoint
                with weights:
                    tensors = lora_tensors(run, cfg)
                    lora_file.save_lora(path, tensors, run.record.metadata(cfg, base, pos.epoch + 1, pos.step))
                events.on_checkpoint(path)  # not in result.checkpoints: the state's list stays the numbered files

        trackers = TrackerLog(accelerator, t.log_with, project.root.name, cfg.to_dict(), project.logs_dir)
        events.callbacks.append(trackers)  # validation loss and samples; the per-step values below
        try:  # from here on an interrupt, even before the first batch, saves the state to resume from
            events.on_start({"total_steps": run.total_steps, "epochs": run.epochs, "images": len(run.items),
                             "batches_per_epoch": run.batches_per_epoch, "model": base.describe(),
                             "start_step": pos.step, "threads": run.threads, "notes": run.notes,
                             "validation": [str(it.path) for it in run.validation]})
            if pos.step == 0:  # the base model's value: the baseline every checkpoint is compared with
                validation.measure(0, 0)
                if cfg.sampling.sample_at_start:  # and its pictures: epoch 0, step 0, the adapter off
                    draw(project, run, 0, 0, main, result, events, baseline=True)
            for epoch in range(pos.epoch, run.epochs):
                pos.epoch = epoch
                epoch_losses = []
                for b_index, batch in enumerate(run.batches(pos.epoch)):
                    if b_index < pos.batch:  # resuming mid-epoch: the same order, minus what was done
                        continue
                    if pos.step >= run.total_steps:
                        break
                    with accelerator.accumulate(*run.trained):
                        loss = batch_loss(run, batch, pos, b_index, accelerator.device, accelerator, embed_cache)
                        accelerator.backward(loss)
                        if accelerator.sync_gradients and run.world > 1:
                            average_gradients(accelerator, run.params)
                        if accelerator.sync_gradients and cfg.optimizer.max_grad_norm:
                            accelerator.clip_grad_norm_(run.params, cfg.optimizer.max_grad_norm)
                        run.optimizer.step()
                        if accelerator.sync_gradients:
                            run.lr_scheduler.step()
                        run.optimizer.zero_grad(set_to_none=True)
                    pos.batch = b_index + 1
                    if not accelerator.sync_gradients:
                        continue
                    pos.step += 1
                    if run.pivot is not None and run.pivot.training and pos.step >= pivot_steps(run):
                        run.pivot.freeze()  # the pivot: the new words stay, the LoRA trains on around them
                    if run.ema is not None:  # the moving average of the weights, every ema_every_n_steps
                        run.ema.update(pos.step)
                    if pos.step == 1 or (resume and not result.time_to_first_step):
                        result.time_to_first_step = time.perf_counter() - t_start
                    value = accelerator.gather(loss.detach()[None]).mean().item()
                    if not math.isfinite(value):  # stop before a broken adapter is saved anywhere
                        raise TrainingError(diverged_advice(cfg, pos.step, value))
                    epoch_losses.append(value)
                    result.losses.append(value)
                    lr = run.lr_scheduler.get_last_lr()[0]
                    log_row(main, project.logs_dir / "loss.jsonl",
                            {"step": pos.step, "epoch": pos.epoch + 1, "loss": value, "lr": lr})
                    events.on_step(pos.step, value, lr)
                    trackers.step(pos.step, value, dict(zip(group_names(run), run.lr_scheduler.get_last_lr(),
                                                            strict=False)))
                    every = cfg.saving.save_every_n_steps
                    if every and pos.step % every == 0 and pos.step < run.total_steps:
                        save_lora(pos.step, pos.epoch + 1, step=True)
                    if cfg.sampling.sample_every_n_steps and pos.step % cfg.sampling.sample_every_n_steps == 0:
                        draw(project, run, pos.epoch + 1, pos.step, main, result, events)
                    if validation.due(pos.step):
                        validation.measure(pos.step, pos.epoch + 1)
                    if stop.requested or (stop_after_steps and pos.step >= stop_after_steps):
                        raise KeyboardInterrupt
                pos.batch = 0
                events.on_epoch_end(pos.epoch + 1, sum(epoch_losses) / max(1, len(epoch_losses)))
                done = pos.epoch + 1
                last = done == run.epochs or pos.step >= run.total_steps
                if not last and cfg.saving.save_every_n_epochs and done % cfg.saving.save_every_n_epochs == 0:
                    save_lora(done, done)
                    save_state(done, 0)
                if cfg.sampling.sample_every_n_epochs and (done % cfg.sampling.sample_every_n_epochs == 0 or last):
                    draw(project, run, done, pos.step, main, result, events)
                if last:
                    break
            save_lora(None, pos.epoch + 1)
            if main and run.pivot is not None:  # the new word on its own, for A1111's and ComfyUI's embeddings folder
                result.embedding = run.pivot.save_embedding(
                    project.output_dir / EMBEDDINGS_DIR / f"{run.pivot.trigger}.safetensors",
                    lora_file.SAVE_DTYPES[cfg.saving.save_precision])
            save_state(pos.epoch + 1, 0)
            if main:  # a resumed run's final file supersedes the weights its interrupted part left
                drop_interrupted(project.output_dir, cfg.saving.output_name)
            if main and cfg.sampling.sample_prompts:  # per prompt: the drawings × sample strengths, in one picture
                save_strength_sheets(project.samples_dir, cfg)
        except KeyboardInterrupt:  # keep what was learned: the state to resume from, at the exact batch
            result.interrupted = True
            save_state(pos.epoch, pos.batch)  # first: resuming matters more than the file to try
            try:
                save_interrupted()
            except (TrainingError, OSError) as e:  # the state is saved: say why there is no file, don't fail the stop
                warnings.warn(f"no interrupted LoRA file: {e}", stacklevel=2)
        except torch.cuda.OutOfMemoryError as e:
            raise RuntimeError(OOM_ADVICE) from e
        finally:
            for m in run.trained:
                m.eval()
            accelerator.wait_for_everyone()
            trackers.end()
            result.weights_checksum = weights_checksum(run.net)
            run.net.detach()  # the cached base model is clean for the next run in this kernel (and its tokenizers)
            if t.gradient_checkpointing:
                base.unet.disable_gradient_checkpointing()
    result.steps, result.epochs = pos.step, pos.epoch + 1
    result.process_index, result.num_processes = run.rank, run.world
    result.seconds = time.perf_counter() - t_start
    events.on_end(result)
    return result


def batch_loss(run: Run, batch: list[Sample], pos: Position, b_index: int, device, accelerator,
               embed_cache: dict, fixed: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """One batch's loss, stage by stage; ``fixed`` (noise, timesteps): the validation loss (validation.py)."""
    cfg, base, t, d = run.cfg, run.base, run.cfg.training, run.cfg.data
    sched = base.noise_scheduler
    # 1. latents of the images (cached: the VAE encode costs more than a UNet step)
    latents = run.latents(batch, device)
    # 2. noise, and a random timestep per image: the model learns every noise level
    if fixed is not None:  # validation: the same noise and timesteps every time, nothing drawn from noise_gen
        noise, timesteps = fixed[0].to(latents.device, latents.dtype), fixed[1].to(device)
    else:
        noise = sample_noise(latents, run.noise_gen, t.noise_offset, t.multires_noise_iterations,
                             t.multires_noise_discount)
        timesteps = sample_timesteps(len(batch), run.noise_gen, sched.config.num_train_timesteps,
                                     t.min_timestep, t.max_timestep).to(device)
    if t.ip_noise_gamma and fixed is None:  # input perturbation: the model sees more noise than its target holds
        extra = torch.randn(noise.shape, generator=run.noise_gen).to(noise.device, noise.dtype)
        noisy = sched.add_noise(latents, noise + t.ip_noise_gamma * extra, timesteps)
    else:
        noisy = sched.add_noise(latents, noise, timesteps)
    # 3. the caption, as the text encoder (training or frozen) sees it
    rng = random.Random(f"{t.seed}:{pos.epoch}:{b_index}")
    captions = [s.item.caption if fixed is not None else process_caption(
        s.item.caption, rng, d.shuffle_caption, d.keep_tokens, d.caption_tag_dropout_rate, d.caption_dropout_rate)
        for s in batch]
    stop_te = cfg.optimizer.stop_text_encoder_training
    te_on = run.net.has_text_encoder and not (stop_te and pos.step >= stop_te)
    if run.pivot is not None:  # the trigger written as its new tokens; while they train, no cached embeddings
        captions = [run.pivot.expand(c) for c in captions]
        te_on = te_on or run.pivot.training
    hidden, pooled = encode_text(base, cfg, captions, te_on, embed_cache)
    # SDXL's size ids: each image's original size, where its bucket was cropped from, the bucket (SD1/2: None)
    sizes = [micro_conditioning(s.item, s.flip) for s in batch]
    added = base.family.added_cond(pooled, sizes, device, run.weight_dtype)
    # 4. the target by prediction type, and the UNet's guess
    target = training_target(sched, latents.float(), noise.float(), timesteps, base.prediction_type)
    with accelerator.autocast():
        pred = base.unet(noisy, timesteps, hidden.to(run.weight_dtype), added_cond_kwargs=added).sample
    # 5. loss per image (over the mask's white part with data.masked_loss: masked_loss.py; validation unmasked):
    #    min-SNR or debiased weighting, and the prior-preservation weight on reg images
    loss = per_image_loss(pred, target, run.masks(batch, device) if fixed is None else None)
    if fixed is not None:  # validation: plain MSE, the same weighting for every run and recipe
        return loss.mean()
    if t.min_snr_gamma:
        loss = loss * min_snr_weights(sched, timesteps, t.min_snr_gamma, base.prediction_type)
    if t.debiased_estimation_loss:
        loss = loss * debiased_weights(sched, timesteps, base.prediction_type).to(loss.device)
    weights = torch.tensor([d.prior_loss_weight if s.item.is_reg else 1.0 for s in batch], device=loss.device)
    return (loss * weights).mean()


# ---- helpers -------------------------------------------------------------------------------------------
class StopRequest(contextlib.AbstractContextManager):
    """While active, SIGTERM (a CLI run being stopped) asks the loop to stop after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopRequest:
        with contextlib.suppress(ValueError):  # not the main thread (some notebook setups): no handler
            self._previous = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "requested", True))
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def restore(run: Run, state_file: Path, result: TrainResult) -> Position:
    """Load the saved state into the run; the position to continue from."""
    if not state_file.is_file():
        raise FileNotFoundError(f"--resume: no saved state at {state_file}; start without resume.")
    state = resume_state.load_state(state_file)
    run.net.load_trainable_state_dict(state["network"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.lr_scheduler.load_state_dict(state["scheduler"])
    resume_state.set_rng_state(state["rng"], run.noise_gen)
    run.record.session_id = state["session_id"]
    result.checkpoints = [Path(p) for p in state.get("checkpoints", []) if Path(p).is_file()]
    result.losses = state.get("losses", [])
    result.validation = state.get("validation", [])
    restore_ema(run.ema, state, run.notes)
    if run.pivot is not None and "pivot" in state:
        run.pivot.load_state(state["pivot"])
        if state["step"] >= pivot_steps(run):
            run.pivot.freeze()
    return Position(state["step"], state["epoch"], state["batch_in_epoch"])


def lora_tensors(run: Run, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The LoRA file's tensors, with pivotal tuning's new token bundled as kohya does."""
    dtype = lora_file.SAVE_DTYPES[cfg.saving.save_precision]
    tensors = run.net.kohya_state_dict(dtype)
    if run.pivot is not None:
        tensors.update(run.pivot.bundle(dtype))
    return tensors


def pivot_steps(run: Run) -> int:
    """The optimizer steps the new token trains for (network.embedding_train_share of the run, at least one)."""
    return max(1, math.ceil(run.cfg.network.embedding_train_share * run.total_steps))


def snapshot(run: Run, pos: Position, result: TrainResult) -> dict:
    """What resume needs: adapter, optimizer, scheduler, RNG, position, files so far."""
    return {"network": run.net.trainable_state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.lr_scheduler.state_dict(), "rng": resume_state.rng_state(run.noise_gen),
            "step": pos.step, "epoch": pos.epoch, "batch_in_epoch": pos.batch, "session_id": run.record.session_id,
            "checkpoints": [str(p) for p in result.checkpoints], "losses": result.losses,
            "validation": result.validation, **({"ema": run.ema.state_dict()} if run.ema is not None else {}),
            **({"pivot": run.pivot.state()} if run.pivot is not None else {})}


def diverged_advice(cfg: TrainConfig, step: int, value: float) -> str:
    o = cfg.optimizer
    return (f"Training stopped at step {step}: the loss is {value} (not a number). Lower optimizer.unet_lr "
            f"(now {o.unet_lr:g}) and optimizer.text_encoder_lr (now {o.text_encoder_lr:g}), or use "
            "training.mixed_precision = 'bf16' instead of 'fp16'; no LoRA file of this step was written.")


def encode_text(base: BaseModel, cfg: TrainConfig, captions: list[str], te_training: bool, memo: dict):
    """Text embeddings; memoised per caption when the text encoders are frozen."""
    fam = base.family
    windows = cfg.data.max_token_length
    if te_training:
        return fam.encode_windows(base, fam.tokenize(base, captions, windows), cfg.model.clip_skip)
    out_h, out_p = [], []
    with torch.no_grad():
        for c in captions:
            if c not in memo:
                memo[c] = fam.encode_windows(base, fam.tokenize(base, [c], windows), cfg.model.clip_skip)
            h, p = memo[c]
            out_h.append(h)
            out_p.append(p)
    pooled = torch.cat(out_p) if out_p[0] is not None else None
    return torch.cat(out_h), pooled


def draw(project: Project, run: Run, epoch: int, step: int, main: bool, result: TrainResult,
         events: Callback, baseline: bool = False) -> None:
    """Sample images with the adapter as it is now, at each sample strength (main process only)."""
    if not run.cfg.sampling.sample_prompts or not main:
        return
    paths = draw_samples(run.base, run.cfg, project.samples_dir / f"{epoch:06d}", step, run.net, baseline)
    result.samples.extend(paths)
    events.on_samples(epoch, step, paths)


def log_row(main: bool, path: Path, row: dict) -> None:
    if main:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def average_gradients(accelerator, params: list[torch.nn.Parameter]) -> None:
    """Data parallel for adapters: one all-reduce of all adapter gradients (the base model is frozen)."""
    grads = [p.grad for p in params if p.grad is not None]
    flat = accelerator.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def weights_checksum(net) -> str:
    """A short fingerprint of the adapter weights (to compare processes or runs)."""
    h = hashlib.sha256()
    for key, value in sorted(net.trainable_state_dict().items()):
        h.update(key.encode())
        h.update(value.float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
