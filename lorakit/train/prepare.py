"""Everything a run needs before its first step: the model, the data, the network, the optimizer and schedule,
and the record that goes into each LoRA file's ``ss_*`` metadata.

    run = prepare(project, cfg, accelerator)      # the loop (loop.py) only steps through run.batches(epoch)

The order matters for reproducibility: the seed is set first, then the model, the data and its latents, then
the network (its initial weights come from the seeded generator), then the optimizer.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch

from lorakit.config.schema import TrainConfig, check_clip_skip
from lorakit.dataset.captions import long_caption_note
from lorakit.dataset.masks import check_masks
from lorakit.dataset.scan import (
    ImageItem,
    LatentCache,
    Sample,
    assign_buckets,
    epoch_batches,
    scan_dataset,
)
from lorakit.errors import DatasetError
from lorakit.lora import file as lora_file
from lorakit.lora.network import Network
from lorakit.lora.warm_start import load_init_weights
from lorakit.models.loading import BaseModel, load_base
from lorakit.project import Project
from lorakit.train.ema import LoraEMA
from lorakit.train.optimizers import build_optimizer, build_scheduler
from lorakit.train.pivotal import Pivot
from lorakit.train.steps import schedule
from lorakit.train.threads import configure_threads
from lorakit.train.validation import choose_images

OOM_ADVICE = (
    "CUDA ran out of memory. In order of effect: set training.train_batch_size = 1; turn on "
    "training.gradient_checkpointing; keep data.cache_latents on; use optimizer AdamW8bit (bitsandbytes) or "
    "Adafactor; set training.mixed_precision = 'bf16' (RTX 30xx+) or 'fp16'; lower data.resolution "
    "(e.g. 768 -> 512 for SD1.5); lower network.rank; close other programs using the GPU."
)


@dataclass
class RunRecord:
    """What a run was, as kohya's ss_* metadata tells it (lora.file.build_metadata reads these)."""

    session_id: str
    started_at: str
    total_steps: int
    num_train_images: int
    num_reg_images: int
    batches_per_epoch: int
    bucket_info: dict
    tag_frequency: dict
    dataset_dirs: dict
    num_processes: int
    model_hash: str = ""
    model_sha256: str = ""

    def metadata(self, cfg: TrainConfig, base: BaseModel, epoch: int, step: int) -> dict[str, str]:
        return lora_file.build_metadata(cfg, base, {**self.__dict__, "epoch": epoch, "step": step})


@dataclass
class Run:
    """A prepared run: what the loop steps through, and what it updates."""

    cfg: TrainConfig
    base: BaseModel
    items: list[ImageItem]  # training and regularization images
    cache: LatentCache
    net: Network
    params: list[torch.nn.Parameter]  # every trained tensor (for clipping and the all-reduce)
    optimizer: Any
    lr_scheduler: Any
    noise_gen: torch.Generator
    batches_per_epoch: int  # per process
    steps_per_epoch: int
    total_steps: int
    epochs: int
    record: RunRecord
    weight_dtype: torch.dtype
    rank: int = 0
    world: int = 1
    trained: list[torch.nn.Module] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said once at the start: skipped files, heavy crops
    threads: int = 0  # CPU threads chosen for this run (0: on a GPU, left alone)
    validation: list[ImageItem] = field(default_factory=list)  # never trained on (validation.py)
    ema: LoraEMA | None = None  # the EMA of the adapter weights (training.ema_decay; ema.py)
    pivot: Pivot | None = None  # pivotal tuning's new tokens (network.embedding_vectors; pivotal.py)

    def batches(self, epoch: int) -> list[list[Sample]]:
        """This process's share of the epoch's batches (equal counts on every process, so all-reduces pair up)."""
        t, d = self.cfg.training, self.cfg.data
        batches = epoch_batches(self.items, t.train_batch_size, t.seed, epoch, d.flip_aug)
        return batches[self.rank::self.world][:self.batches_per_epoch]

    def latents(self, batch: list[Sample], device) -> torch.Tensor:
        """The batch's latents: cached (the VAE encode costs more than a UNet step), or encoded now."""
        cached = self.cfg.data.cache_latents
        lat = [self.cache.get(s.item, s.flip) if cached else self.cache.encode(s.item, s.flip) for s in batch]
        return torch.stack(lat).to(device, self.weight_dtype)

    def masks(self, batch: list[Sample], device) -> torch.Tensor | None:
        """The batch's loss masks on the latent grid, (B, 1, h, w) in [0, 1]; None unless data.masked_loss."""
        if not self.cfg.data.masked_loss:
            return None
        return torch.stack([self.cache.mask(s.item, s.flip) for s in batch]).to(device)


def prepare(project: Project, cfg: TrainConfig, accelerator) -> Run:
    """Load, scan, cache, attach and build: everything up to the first step (see the module docstring)."""
    from accelerate.utils import set_seed

    t, d = cfg.training, cfg.data
    set_seed(t.seed)
    # the frozen base model in half precision on the GPU (the adapter itself stays fp32)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    base = load_base(cfg.model.base_model, family=cfg.model.family, prediction_type=cfg.model.prediction_type,
                     dtype=weight_dtype, device=accelerator.device, allow_pickle=cfg.model.allow_pickle,
                     single_file_config=cfg.model.single_file_config or None)
    check_clip_skip(cfg.model.clip_skip, base.text_encoders[0].config.num_hidden_layers)
    configure_speed(base, cfg)
    threads = configure_threads(base, cfg, accelerator.device)

    # data: scan, buckets, latents cached once (the VAE never runs inside the loop)
    scan = scan_dataset(project.resolve(d.dataset_dir), d.caption_extension, repeats_override=d.repeats)
    held_out = choose_images(project, cfg, scan)  # a held-out share leaves scan.items: never in a batch
    items = scan.train_items
    if d.reg_dir:
        reg = scan_dataset(project.resolve(d.reg_dir), d.caption_extension, is_reg=True)
        items += reg.items
        scan.caption_errors += reg.caption_errors
        scan.problems += reg.problems
    if scan.caption_errors:
        raise DatasetError("Fix these captions before training:\n" + "\n".join(scan.caption_errors))
    notes = list(scan.problems)  # what training skips, and images cropped hard to fit a bucket
    notes += check_masks(items, d.masked_loss)  # an unreadable mask stops here, before any long work
    long = long_caption_note({it.path.name: it.caption for it in items}, base.tokenizers[0],
                             max(base.tokenizers[0].model_max_length - 2, d.max_token_length))
    notes += [long] if long else []  # said before the first step, not discovered in the samples
    bucket_counts = assign_buckets(items, d.resolution, d.enable_bucket, d.min_bucket_reso, d.max_bucket_reso,
                                   d.bucket_reso_steps, d.bucket_no_upscale, notes=notes)
    assign_buckets(held_out, d.resolution, d.enable_bucket, d.min_bucket_reso, d.max_bucket_reso,
                   d.bucket_reso_steps, d.bucket_no_upscale)
    if held_out:
        notes.append(f"validation loss on {len(held_out)} image{'s' if len(held_out) != 1 else ''} never trained "
                     f"on: {', '.join(it.path.name for it in held_out)}")
    cache = LatentCache(base.vae, base.latent_scale, base.vae_shift,
                        project.cache_dir / "latents" if d.cache_latents_to_disk else None,
                        write=accelerator.is_main_process)
    if d.cache_latents:
        try:
            for it in items + held_out:
                cache.get(it, False)
                if d.flip_aug:
                    cache.get(it, True)
                for flip in (False, True)[: (1 + d.flip_aug) * d.masked_loss]:  # masks ride with the latents
                    cache.mask(it, flip)
        except torch.cuda.OutOfMemoryError as e:
            raise RuntimeError(OOM_ADVICE) from e
    world, rank = accelerator.num_processes, accelerator.process_index
    batches_per_epoch = len(epoch_batches(items, t.train_batch_size, t.seed, 0, d.flip_aug)) // world
    steps_per_epoch, total_steps, epochs = schedule(batches_per_epoch, cfg)

    # network, optimizer, schedule
    net = Network.attach(base, cfg)
    if cfg.network.init_from:  # a warm start (checked before any long work in train); a resume then loads its state
        notes.append(load_init_weights(net, project.resolve(cfg.network.init_from)))
    pivot = None
    if cfg.network.embedding_vectors:  # pivotal tuning: the trigger word as new tokens beside the LoRA
        pivot = Pivot.attach(base, cfg, trigger=cfg.network.embedding_trigger or dataset_trigger(scan.train_items))
        notes.append(f"pivotal tuning: {pivot.trigger!r} is learned as {len(pivot.names)} new token vector"
                     f"{'s' if len(pivot.names) != 1 else ''} ({', '.join(pivot.names)})")
    groups = [{"params": net.parameters("lora_unet"), "lr": cfg.optimizer.unet_lr}] if "lora_unet" in net.parts else []
    te_params = [p for k in net.parts if k.startswith("lora_te") for p in net.parameters(k)]
    if te_params:
        groups.append({"params": te_params, "lr": cfg.optimizer.text_encoder_lr})
    if pivot is not None:  # no weight decay: it would pull the new words towards zero
        groups.append({"params": pivot.parameters(), "lr": cfg.network.embedding_lr, "weight_decay": 0.0})
    optimizer = build_optimizer(cfg, groups)
    lr_scheduler = build_scheduler(cfg, optimizer, total_steps)
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

    record = RunRecord(
        session_id=uuid.uuid4().hex[:16], started_at=str(time.time()), total_steps=total_steps,
        num_train_images=len(scan.train_items) and sum(i.repeats for i in scan.train_items),
        num_reg_images=sum(i.repeats for i in items if i.is_reg), batches_per_epoch=batches_per_epoch,
        bucket_info={"buckets": {f"{w}x{h}": n for (w, h), n in bucket_counts.items()}},
        tag_frequency=lora_file.tag_frequency(scan.train_items), dataset_dirs=dataset_dirs(scan.train_items),
        num_processes=world)
    record.model_hash, record.model_sha256 = lora_file.model_hash(base.source)
    return Run(cfg, base, items, cache, net, [p for g in groups for p in g["params"]], optimizer, lr_scheduler,
               torch.Generator("cpu").manual_seed(t.seed), batches_per_epoch, steps_per_epoch, total_steps, epochs,
               record, weight_dtype, rank, world, trained, notes, threads, validation=held_out,
               ema=LoraEMA.from_config([p for g in groups for p in g["params"]], t), pivot=pivot)


def configure_speed(base: BaseModel, cfg: TrainConfig) -> None:
    """SDPA (PyTorch's fused attention; off = the classic matmul version) and, when asked, torch.compile."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    base.unet.set_attn_processor(AttnProcessor2_0() if cfg.training.sdpa else AttnProcessor())
    if cfg.training.torch_compile and not getattr(base.unet, "_lorakit_compiled", False):
        base.unet.compile()
        base.unet._lorakit_compiled = True


def dataset_trigger(items: list[ImageItem]) -> str:
    """The token of the training folders (``10_blicket`` -> ``blicket``), for pivotal tuning's new word."""
    tokens = sorted({it.folder.partition("_")[2].strip() for it in items if not it.is_reg} - {""})
    if len(tokens) != 1:
        raise DatasetError(f"pivotal tuning learns one trigger word, and the training folders name "
                           f"{len(tokens)} ({', '.join(tokens) or 'none'}): set network.embedding_trigger.")
    return tokens[0]


def dataset_dirs(items: list[ImageItem]) -> dict:
    """{folder: {n_repeats, img_count}} as kohya stores it in ss_dataset_dirs."""
    dirs: dict[str, dict] = {}
    for it in items:
        entry = dirs.setdefault(it.folder, {"n_repeats": it.repeats, "img_count": 0})
        entry["img_count"] += 1
    return dirs
