"""GPU memory of lorakit's training step: the estimate (meta device, no GPU) beside published figures and, on a
CUDA machine, beside ``torch.cuda.max_memory_allocated`` of the same step run for real (random weights).

    python bench/vram.py              # the estimates and how long each took; on CUDA also the measured step
    python bench/vram.py --no-cuda    # estimates only

Published reference points (kohya-ss/sd-scripts README / docs): SD 1.5 LoRA in about 6 GB at batch 1 with
gradient checkpointing; SDXL LoRA in 8 GB (10 GB recommended), U-Net only with cached text-encoder outputs.
"""

from __future__ import annotations

import argparse
import time

import torch

from lorakit.config.schema import TrainConfig
from lorakit.models import families
from lorakit.train import memory as M

COMMON = {"training.mixed_precision": "bf16", "optimizer.text_encoder_lr": 0.0, "saving.save_precision": "bf16"}
POINTS = [  # (name, family, changes, published figure)
    ("SD 1.5 512 px, batch 1, grad ckpt, AdamW8bit", "sd1",
     {"training.gradient_checkpointing": True, "optimizer.optimizer": "AdamW8bit"}, "~6 GB (sd-scripts)"),
    ("SD 1.5 512 px, batch 1, grad ckpt, AdamW", "sd1", {"training.gradient_checkpointing": True}, ""),
    ("SD 1.5 512 px, batch 1, no grad ckpt, AdamW8bit", "sd1", {"optimizer.optimizer": "AdamW8bit"}, ""),
    ("SD 1.5 512 px, batch 1, no grad ckpt, AdamW", "sd1", {}, ""),
    ("SDXL 1024 px, U-Net only, grad ckpt, AdamW8bit", "sdxl",
     {"data.resolution": 1024, "data.max_bucket_reso": 2048, "training.gradient_checkpointing": True,
      "optimizer.optimizer": "AdamW8bit"}, "8 GB, 10 GB recommended (sd-scripts)"),
]


def point_config(changes: dict) -> TrainConfig:
    return TrainConfig().replace({**COMMON, **changes})


def measure_cuda(arch: M.Architecture, cfg: TrainConfig) -> int:
    """max_memory_allocated of one real step (after one warm-up step, so the optimizer state exists)."""
    dtype = M.WEIGHT_DTYPES[cfg.training.mixed_precision]
    if cfg.optimizer.optimizer == "AdamW8bit":
        import importlib.util
        if importlib.util.find_spec("bitsandbytes") is None:
            raise RuntimeError("AdamW8bit needs bitsandbytes")
    torch.cuda.empty_cache()
    base = M.build_meta_base(arch, dtype, device="cuda")  # random (uninitialised) weights on the GPU
    torch.cuda.reset_peak_memory_stats()
    M.run_step(base, cfg, track=False)  # the warm-up step inside creates the optimizer state first
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del base
    torch.cuda.empty_cache()
    return peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cuda", action="store_true")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.no_cuda
    for name, family, changes, published in POINTS:
        arch = M._arch(family, families.get(family).architecture_configs())
        cfg = point_config(changes)
        t0 = time.perf_counter()
        e = M.estimate_memory(cfg, arch)
        seconds = time.perf_counter() - t0
        line = f"{name}: estimate {e.total / M.GB:.1f} GB (step {e.step_peak / M.GB:.2f} GB; {e.breakdown()}) " \
               f"in {seconds:.1f} s" + (f"; published {published}" if published else "")
        if cuda:
            try:
                line += f"; measured max_memory_allocated {measure_cuda(arch, cfg) / M.GB:.2f} GB"
            except (RuntimeError, ImportError) as err:
                line += f"; not measured ({err})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
