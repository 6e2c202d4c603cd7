"""Real-size models: random weights in the published SD 1.5, SD 2.1 768-v and SDXL base architectures, written as
the single original-layout fp16 .safetensors files A1111 users have, then loaded and trained through lorakit.

    python bench/real_size.py                                  # sd15, sd21, sdxl on CPU (minutes each)
    python bench/real_size.py --family sd15,sdxl --cache /data/real-size
    python bench/real_size.py --family sd15 --device cuda --resolution 512 --precision bf16 --steps 20

Per family: the file's size, ``load_base`` time on it and peak RSS (offline, in a fresh process with an empty
HF_HOME), seconds per step of lorakit's ``train()`` on a 4-image project (SD 1.5 and SD 2.1; SDXL only attaches
the network and exports it, too big for CPU steps), the LoRA's modules per key prefix beside sd-scripts' counts,
and the fp16 LoRA size at rank 16 and 128. On CUDA also it/s, peak VRAM against lorakit's meta-device estimate,
and MFU. The checkpoints (2.1, 2.6 and 6.9 GB) are kept in ``--cache`` between runs; each family runs in its own
process, one at a time, so SDXL fits in about 16 GB of RAM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lorakit.train.events import Callback  # noqa: E402


@dataclass(frozen=True)
class Target:
    family: str  # lorakit's family name
    title: str
    trains: bool  # whether the bench runs training steps (SDXL: attach and export only)


TARGETS = {
    "sd15": Target("sd1", "SD 1.5", True),
    "sd21": Target("sd2-v", "SD 2.1 768-v", True),
    "sdxl": Target("sdxl", "SDXL base 1.0", False),
}

# Modules of a Standard LoRA (sd-scripts networks/lora.py, no conv_dim) per key prefix. Its rule: every Linear and
# 1x1 Conv2d inside a module whose class is Transformer2DModel (U-Net) or CLIPAttention / CLIPMLP (text encoders).
# - each CLIP layer: q, k, v, out_proj + fc1, fc2 = 6. SD 1.5's CLIP-L has 12 layers (72); SD 2.x's OpenCLIP-H is
#   loaded by sd-scripts with 23 of its 24 layers (model_util.py, num_hidden_layers=23: 138); SDXL: CLIP-L 12
#   layers (72) and OpenCLIP-bigG 32 layers (192).
# - each transformer block: attn1 q, k, v, out + attn2 q, k, v, out + ff.net.0.proj, ff.net.2 = 10, and each
#   Transformer2DModel adds proj_in, proj_out. SD 1.x/2.x: 16 Transformer2DModels of one block each (6 down, 1 mid,
#   9 up): 16 x 12 = 192. SDXL: 11 Transformer2DModels (2 + 2 down, 1 mid, 3 + 3 up) with 2, 10, 10 and 10, 2
#   blocks: 70 blocks x 10 + 11 x 2 = 722.
SD_SCRIPTS_MODULES = {
    "sd15": {"lora_te": 72, "lora_unet": 192},
    "sd21": {"lora_te": 138, "lora_unet": 192},
    "sdxl": {"lora_te1": 72, "lora_te2": 192, "lora_unet": 722},
}

# dense bf16 tensor-core peak FLOP/s from NVIDIA's datasheets, by a part of torch.cuda.get_device_name()
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
DEFAULT_CACHE = Path.home() / ".cache" / "lorakit-bench" / "real-size"
GB = 1e9  # file and RSS sizes in decimal GB, as file browsers and model pages give them


# ---- the checkpoint: the published file's layout, random values ------------------------------------------
def published_layout(target: Target) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of the family's published single file: lorakit's own writer (to_original_state_dict)
    on a meta-device build of the architecture, plus SD 2.x's tensors diffusers drops on loading."""
    from lorakit.models import families
    from lorakit.models.single_file import to_original_state_dict
    from lorakit.train import memory as M

    arch = M._arch(target.family, families.get(target.family).architecture_configs())
    base = M.build_meta_base(arch, torch.float16)
    shapes = {k: tuple(v.shape) for k, v in to_original_state_dict(base.pipe, target.family).items()}
    if target.family.startswith("sd2"):  # OpenCLIP-H's 24th block and projection: in the file, unused by SD 2
        te = "cond_stage_model.model."
        shapes |= {k.replace(".resblocks.22.", ".resblocks.23."): s for k, s in shapes.items() if ".resblocks.22." in k}
        shapes |= {te + "text_projection": (1024, 1024), te + "logit_scale": ()}
    if target.family == "sdxl":
        shapes["conditioner.embedders.1.model.logit_scale"] = ()
    return shapes


def random_values(name: str, shape: tuple[int, ...]):
    """Norm weights 1, biases 0, other weights uniform in ±1/sqrt(fan_in) (torch's default scale), seeded by name."""
    if not shape or (len(shape) == 1 and not name.endswith("bias")):
        return torch.ones(shape, dtype=torch.float16)
    if name.endswith("bias"):
        return torch.zeros(shape, dtype=torch.float16)
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    bound = math.prod(shape[1:]) ** -0.5
    return (torch.rand(shape, generator=gen) * (2 * bound) - bound).to(torch.float16)


def write_random_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], title: str) -> None:
    """A .safetensors file written tensor by tensor (8-byte header length, JSON header, raw data), so building
    SDXL's 6.9 GB takes one tensor of memory, not the whole model."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", "lorakit_bench": f"random weights in the architecture of {title}"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, shape in shapes.items():
            f.write(random_values(name, shape).numpy().tobytes())
    partial.replace(path)


def checkpoint(cache: Path, key: str) -> tuple[Path, str]:
    """The cached checkpoint of ``key`` (built when missing or not of the expected layout), and how it was got."""
    from lorakit.models.single_file import read_header

    target = TARGETS[key]
    path = cache / f"{key}-random-fp16.safetensors"
    shapes = published_layout(target)
    if path.is_file():
        with contextlib.suppress(Exception):
            header, _ = read_header(path)
            if {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items()} == \
                    {k: ("F16", s) for k, s in shapes.items()}:
                return path, "cached"
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_random_checkpoint(path, shapes, target.title)
    if target.family == "sd2-v":  # as A1111 keeps it: the .yaml beside the file says the model predicts v
        path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n', encoding="utf-8")
    return path, f"built in {time.perf_counter() - t0:.0f} s"


# ---- one family, in its own process ------------------------------------------------------------------------
def peak_rss() -> float:
    """This process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024



def random_project(root: Path, size: int, caption: str = "zkx, thing", images: int = 4, numbered: bool = False):
    """A new project with ``images`` random ``size``² images under one caption (numbered: ``caption i``), for the
    benches that time training or generation rather than learning (real_size, gpu_speed, grid_speed)."""
    import numpy as np
    from PIL import Image

    from lorakit.project import Project

    project = Project.create(root)
    folder = project.dataset_dir / "1_zkx"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(images):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"{caption} {i}" if numbered else caption, encoding="utf-8")
    return project


def project_and_config(root: Path, model: Path, args: argparse.Namespace):
    """A project with 4 random images and the config of the run: rank 16, U-Net and text encoder, fp16 file."""

    from lorakit.config.schema import TrainConfig

    project = random_project(root / "proj", args.resolution, numbered=True)
    cfg = TrainConfig()
    cfg.model.base_model = str(model)
    cfg.data.resolution, cfg.data.min_bucket_reso = args.resolution, 64
    cfg.data.max_bucket_reso = max(1024, args.resolution)
    cfg.data.cache_latents_to_disk = False
    cfg.network.rank, cfg.network.alpha = 16, 16.0
    cfg.optimizer.text_encoder_lr = 5e-5  # the text encoder trains too: its modules are counted
    cfg.training.max_train_epochs, cfg.training.max_train_steps = 1000, args.steps
    cfg.training.mixed_precision = args.precision
    cfg.training.num_threads = torch.get_num_threads()
    cfg.saving.save_every_n_epochs, cfg.saving.save_state, cfg.saving.save_precision = 0, False, "fp16"
    cfg.sampling.sample_every_n_epochs = 0
    return project, cfg.validate()


class StepClock(Callback):
    """Times between training events (start, then each step); ``reset_peak``: CUDA's peak memory is reset after
    step 1, so max_memory_allocated shows the steady steps (optimizer state resident, latents cached)."""

    def __init__(self, cuda: bool, reset_peak: bool):
        self.cuda, self.reset_peak, self.marks = cuda, reset_peak, []

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_start(self, info: dict) -> None:
        self.marks.append(self.now())

    def on_step(self, step: int, loss: float, lr: float) -> None:
        self.marks.append(self.now())
        if step == 1 and self.reset_peak:
            torch.cuda.reset_peak_memory_stats()

    def step_seconds(self) -> tuple[float, float]:
        """(median seconds of the steps after the first, the first step with its warm-up); the first twice when
        there is only one step."""
        times = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        rest = sorted(times[1:]) or times[:1]
        return rest[len(rest) // 2], times[0]


def flops_per_step(base, cfg) -> float:
    """FLOPs of one training step of ``cfg`` counted by torch's FlopCounterMode over lorakit.train.memory.run_step
    (the loop's stages: text encoder with gradients, U-Net, loss, backward, clipping, AdamW step). Attention runs
    on SDPA's math backend here, whose matmuls the counter sees on any device; fused kernels do the same FLOPs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from lorakit.train import memory as M

    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        _, net, *_ = M.run_step(base, cfg, track=False)
    net.detach()
    return float(counter.get_total_flops())


def exported_size(base, cfg, rank: int, folder: Path) -> tuple[Path, int]:
    """The fp16 LoRA file of ``cfg``'s network at ``rank`` (alpha = rank), exported right after attaching."""
    from lorakit.lora.file import save_lora
    from lorakit.lora.network import Network

    net = Network.attach(base, cfg.replace({"network.rank": rank, "network.alpha": float(rank)}))
    try:
        path = save_lora(folder / f"rank{rank}.safetensors", net.kohya_state_dict(torch.float16),
                         {"ss_network_dim": str(rank), "ss_network_alpha": str(rank)})
    finally:
        net.detach()
    return path, path.stat().st_size


def module_counts(path: Path) -> dict[str, int]:
    """{key prefix: number of modules} of a kohya LoRA file (lora_unet, lora_te, lora_te1, lora_te2)."""
    import re

    from lorakit.lora.file import lora_keys

    modules = {k.split(".")[0] for k in lora_keys(path)}
    counts: dict[str, int] = {}
    for m in modules:
        prefix = re.match(r"lora_(unet|te\d?)_", m)[0].rstrip("_")
        counts[prefix] = counts.get(prefix, 0) + 1
    return dict(sorted(counts.items()))


def peak_flops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def run_family(key: str, path: Path, args: argparse.Namespace) -> None:
    """Load, train (or attach), count and size one family; prints its lines. Runs in a fresh process."""
    from lorakit.models.loading import load_base, quiet_loading
    from lorakit.train import memory as M
    from lorakit.train.loop import train

    target, cuda = TARGETS[key], args.device == "cuda"
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if cuda:
        from accelerate import PartialState

        device = PartialState().device  # what train()'s Accelerator uses: load_base's cache then serves train()
    else:
        device = torch.device("cpu")
    # what train() loads in: the mixed-precision dtype on CUDA, fp32 on CPU; SDXL (no steps) in fp16 on CPU to fit
    dtype = M.WEIGHT_DTYPES[args.precision] if cuda or target.trains else torch.float16
    t0 = time.perf_counter()
    with quiet_loading():  # diffusers' advice against fp16 on the CPU: here nothing runs in it
        base = load_base(str(path), dtype=dtype, device=device)
    load_s = time.perf_counter() - t0
    print(f"  load_base: {load_s:.1f} s as {base.family.name} ({str(dtype).removeprefix('torch.')} on {device}), "
          f"peak RSS {peak_rss() / GB:.1f} GB", flush=True)

    with tempfile.TemporaryDirectory(prefix="lorakit-real-size-") as tmp:
        project, cfg = project_and_config(Path(tmp), path, args)
        lora = None
        if target.trains:
            clock = StepClock(cuda, reset_peak=cuda and args.steps > 1)
            result = train(project, cfg, callbacks=[clock])
            lora = result.final
            step_s, first_s = clock.step_seconds()
            warm = "one step: warm-up included" if args.steps == 1 else f"after the first, which took {first_s:.1f} s"
            where = f"{args.precision} on {torch.cuda.get_device_name()}" if cuda else \
                f"fp32 on CPU, {torch.get_num_threads()} thread(s)"
            print(f"  train(): {args.steps} step(s) at {args.resolution} px, batch 1, rank 16, U-Net + text encoder "
                  f"({where}): {step_s:.2f} s/step = {1 / step_s:.2f} it/s ({warm}), "
                  f"peak RSS {peak_rss() / GB:.1f} GB", flush=True)
            estimate = M.estimate_memory(cfg)
            line = f"  VRAM estimate (lorakit's meta-device estimator, same setting): step peak " \
                   f"{estimate.step_peak / 2**30:.2f} GiB, {estimate.total / 2**30:.2f} GiB with CUDA context"
            if cuda:
                line += f"; measured max_memory_allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB " \
                        + ("(steps 2 on)" if clock.reset_peak else "(the whole run)")
            print(line, flush=True)
            flops = flops_per_step(base, cfg)
            peak = peak_flops(torch.cuda.get_device_name()) if cuda else None
            mfu = f"MFU {flops / step_s / peak:.1%} of {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else \
                "MFU: no peak FLOP/s for this device in PEAK_BF16"
            print(f"  FLOPs/step {flops / 1e9:.0f} GFLOP (FlopCounterMode over one step) -> "
                  f"{flops / step_s / 1e12:.3f} TFLOP/s; {mfu}", flush=True)
        _, size16 = exported_size(base, cfg, 16, Path(tmp))
        lora = lora or Path(tmp) / "rank16.safetensors"
        _, size128 = exported_size(base, cfg, 128, Path(tmp))
        counts, expected = module_counts(lora), SD_SCRIPTS_MODULES[key]
        same = "match" if counts == expected else "DIFFER"
        print("  modules: " + ", ".join(f"{p} {n} (sd-scripts {expected.get(p, 0)})" for p, n in counts.items())
              + f": {same}", flush=True)
        trained = f" (the trained file {lora.stat().st_size / 1e6:.1f} MB)" if target.trains else ""
        print(f"  LoRA fp16 size: rank 16 {size16 / 1e6:.1f} MB{trained}, rank 128 {size128 / 1e6:.1f} MB; "
              f"peak RSS of the run {peak_rss() / GB:.1f} GB", flush=True)


# ---- the driver --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sd15,sd21,sdxl", help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the checkpoints are kept")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--precision", default="no", choices=["no", "fp16", "bf16"],
                        help="training.mixed_precision (CUDA only; on CPU lorakit trains in fp32)")
    parser.add_argument("--steps", type=int, default=2, help="training steps (SD 1.5, SD 2.1)")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: run one family in this process
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.family.split(",") if k.strip()]
    unknown = [k for k in keys if k not in TARGETS]
    if unknown:
        parser.error(f"unknown family {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if args.device == "cpu" and args.precision != "no":
        parser.error("--precision is for CUDA: lorakit trains in fp32 on the CPU")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.one:
        run_family(args.one, args.cache.expanduser() / f"{args.one}-random-fp16.safetensors", args)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    failed = []
    for key in keys:
        path, how = checkpoint(args.cache.expanduser(), key)
        n = sum(math.prod(v["shape"]) for v in _header(path).values())
        print(f"== {TARGETS[key].title} ({key}): {path.stat().st_size / GB:.2f} GB, {n / 1e9:.3f} B parameters, "
              f"fp16 ({how})", flush=True)
        with tempfile.TemporaryDirectory(prefix="lorakit-offline-") as home:
            env = os.environ | {"HF_HOME": str(Path(home) / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                "LORAKIT_CACHE": str(Path(home) / "lorakit")}
            if args.device == "cpu":
                env["CUDA_VISIBLE_DEVICES"] = ""
            (Path(home) / "hf").mkdir()
            child = [sys.executable, __file__, "--one", key, *(argv if argv is not None else sys.argv[1:])]
            rc = subprocess.run(child, env=env).returncode
            left = list((Path(home) / "hf").iterdir())
            print(f"  offline: HF_HOME {'stayed empty' if not left else 'got ' + ', '.join(p.name for p in left)}"
                  + (f"; FAILED (exit {rc})" if rc else ""), flush=True)
        if rc or left:
            failed.append(key)
    return 1 if failed else 0


def _header(path: Path) -> dict:
    from lorakit.models.single_file import read_header

    return read_header(path)[0]


if __name__ == "__main__":
    sys.exit(main())
