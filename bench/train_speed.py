"""Training speed: one lorakit step against a bare-torch compute floor, with FLOPs, MFU and peak memory.

    OMP_NUM_THREADS=1 python bench/train_speed.py                  # tiny + small SD1-shaped models
    OMP_NUM_THREADS=1 python bench/train_speed.py --steps 20 --warmup 5

For each model it trains a LoRA through ``lorakit.train.train`` (cached latents, frozen text encoder, so cached
embeddings) and times the steps after warm-up; then it runs the compute floor: the same UNet with the same LoRA
layers, on the same batch shape, written directly in torch (add_noise, forward, MSE, backward, clip, AdamW step).
Times are medians over steps, the best of ``--repeats`` turns (robust on a shared machine). FLOPs per step are counted with ``torch.utils.flop_counter``; MFU is achieved FLOP/s over this machine's measured
matmul peak (nanoGPT's estimate_mfu, with a measured rather than a datasheet peak). On CUDA the base runs in bf16
and memory is ``torch.cuda.max_memory_allocated``; on CPU it is the process's peak RSS.
The last line is ``compute-floor ratio: <x.xx>`` for the small model (lorakit step time / floor step time).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from lorakit.config.schema import TrainConfig  # noqa: E402
from lorakit.lora.network import Network  # noqa: E402
from lorakit.models.loading import load_base  # noqa: E402
from lorakit.models.tiny import build_small_sd1_pipeline, save_tiny_pipeline  # noqa: E402
from lorakit.project import Project  # noqa: E402
from lorakit.train.loop import Callback, train  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


@dataclass
class Row:
    model: str
    resolution: int
    steps_per_s: float
    flops_per_step: float
    peak_flops: float
    peak_mem_mb: float
    floor_s: float
    step_s: float

    @property
    def mfu(self) -> float:
        return self.flops_per_step * self.steps_per_s / self.peak_flops

    @property
    def ratio(self) -> float:
        return self.step_s / self.floor_s


def measured_matmul_peak(repeats: int = 20) -> float:
    """FLOP/s of a square matmul in the training dtype (bf16 on CUDA, fp32 on CPU): this machine's practical peak."""
    dtype, n = (torch.bfloat16, 8192) if CUDA else (torch.float32, 1024)
    a, b = torch.randn(n, n, device=DEVICE, dtype=dtype), torch.randn(n, n, device=DEVICE, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync()
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync()
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _peak_memory_mb() -> float:
    if CUDA:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_project(root: Path, model: Path, resolution: int, steps: int) -> tuple[Project, TrainConfig]:
    """A project with 4 random images and a config for ``steps`` steps at batch 1 (defaults elsewhere)."""
    project = Project.create(root / "proj")
    folder = project.dataset_dir / "1_zkx"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"zkx, thing {i}")
    cfg = TrainConfig()
    cfg.model.base_model = str(model)
    cfg.data.resolution, cfg.data.min_bucket_reso, cfg.data.max_bucket_reso = resolution, 32, 1024
    cfg.data.bucket_reso_steps, cfg.data.cache_latents_to_disk = 32, False
    cfg.network.rank, cfg.network.alpha = 16, 16.0
    cfg.optimizer.text_encoder_lr = 0.0  # frozen text encoder: embeddings cached, as in the default stack
    cfg.training.max_train_epochs, cfg.training.max_train_steps = 1000, steps
    cfg.training.mixed_precision = "bf16" if CUDA else "no"
    cfg.saving.save_every_n_epochs, cfg.saving.save_state = 0, False
    cfg.sampling.sample_every_n_epochs = 0
    return project, cfg.validate()


class _Clock(Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_step(self, step: int, loss: float, lr: float) -> None:
        _sync()
        self.times.append(time.perf_counter())


def lorakit_step_seconds(project: Project, cfg: TrainConfig, warmup: int) -> float:
    """Median wall time between optimizer steps of lorakit's trainer, after ``warmup`` steps."""
    clock = _Clock()
    train(project, cfg, callbacks=[clock])
    return float(np.median(np.diff(clock.times[warmup:])))


def floor_setup(cfg: TrainConfig, resolution: int):
    """The same base, the same LoRA layers and a batch of the same shape, for the bare-torch step."""
    weight_dtype = torch.bfloat16 if CUDA else torch.float32
    base = load_base(cfg.model.base_model, dtype=weight_dtype, device=DEVICE)
    net = Network.attach(base, cfg)
    params = net.parameters("lora_unet")
    opt = torch.optim.AdamW(params, lr=cfg.optimizer.unet_lr, **({"fused": True} if CUDA else {"foreach": True}))
    f = 2 ** (len(base.vae.config.block_out_channels) - 1)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, resolution // f, resolution // f, generator=gen).to(DEVICE, weight_dtype)
    with torch.no_grad():
        hidden, _ = base.family.encode(base, base.family.tokenize(base, ["zkx, thing"]))
    return base, net, params, opt, latents, hidden.to(DEVICE, weight_dtype)


def floor_step(base, params, opt, latents, hidden, max_grad_norm: float) -> None:
    """add_noise -> UNet -> MSE -> backward -> clip -> AdamW: the least any trainer must do per step."""
    sched = base.noise_scheduler
    noise = torch.randn_like(latents)
    t = torch.randint(0, 1000, (latents.shape[0],), device=latents.device)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=CUDA):
        pred = base.unet(sched.add_noise(latents, noise, t), t, hidden).sample
    loss = F.mse_loss(pred.float(), noise.float())
    loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)


def floor_seconds(cfg: TrainConfig, resolution: int, warmup: int, steps: int) -> tuple[float, float]:
    """(median seconds per floor step, FLOPs per step counted by torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    base, net, params, opt, latents, hidden = floor_setup(cfg, resolution)
    base.unet.train()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            floor_step(base, params, opt, latents, hidden, cfg.optimizer.max_grad_norm)
        for _ in range(warmup):
            floor_step(base, params, opt, latents, hidden, cfg.optimizer.max_grad_norm)
        times = []
        for _ in range(steps):
            _sync()
            t = time.perf_counter()
            floor_step(base, params, opt, latents, hidden, cfg.optimizer.max_grad_norm)
            _sync()
            times.append(time.perf_counter() - t)
        return float(np.median(times)), float(counter.get_total_flops())
    finally:
        base.unet.eval()
        net.detach()


def bench(name: str, model: Path, resolution: int, args: argparse.Namespace, peak: float, root: Path) -> Row:
    """lorakit and the floor measured in turns (``--repeats`` times each); the fastest median of each counts."""
    step_times, floor_times, mem, flops = [], [], 0.0, 0.0
    for r in range(args.repeats):
        project, cfg = make_project(root / f"{name}-{r}", model, resolution, args.warmup + args.steps + 1)
        if CUDA:
            torch.cuda.reset_peak_memory_stats()
        step_times.append(lorakit_step_seconds(project, cfg, args.warmup))
        mem = max(mem, _peak_memory_mb())
        floor_s, flops = floor_seconds(cfg, resolution, args.warmup, args.steps)
        floor_times.append(floor_s)
    step_s = min(step_times)
    return Row(name, resolution, 1 / step_s, flops, peak, mem, min(floor_times), step_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing starts")
    parser.add_argument("--repeats", type=int, default=2, help="lorakit/floor measurements, taken in turns")
    args = parser.parse_args(argv)
    if not CUDA:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    peak = measured_matmul_peak()
    print(f"device: {DEVICE} ({torch.cuda.get_device_name() if CUDA else f'{torch.get_num_threads()} thread(s)'}), "
          f"measured matmul peak {peak / 1e9:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny = save_tiny_pipeline(root / "tiny-sd1", "sd1")
        small = root / "small-sd1"
        build_small_sd1_pipeline().save_pretrained(small, safe_serialization=True)
        rows = [bench("tiny", tiny, 64, args, peak, root), bench("small", small, 128, args, peak, root)]
    head = f"{'model':<6} {'px':>4} {'steps/s':>8} {'GFLOP/step':>10} {'GFLOP/s':>8} {'MFU':>6} {'peak MB':>8} " \
           f"{'floor ms':>9} {'step ms':>8} {'ratio':>6}"
    print(head)
    for r in rows:
        print(f"{r.model:<6} {r.resolution:>4} {r.steps_per_s:>8.2f} {r.flops_per_step / 1e9:>10.2f} "
              f"{r.flops_per_step * r.steps_per_s / 1e9:>8.2f} {r.mfu:>6.1%} {r.peak_mem_mb:>8.0f} "
              f"{r.floor_s * 1e3:>9.1f} {r.step_s * 1e3:>8.1f} {r.ratio:>6.2f}")
    print(f"compute-floor ratio: {rows[-1].ratio:.2f}")


if __name__ == "__main__":
    main()
