"""Peak memory and time of `lorakit doctor`'s base-model check on real-size SD 1.5 and SDXL single files.

    python bench/doctor_memory.py                      # both families (the SDXL file is 6.9 GB, built once)
    python bench/doctor_memory.py --family sd1 --before  # also the old check: the whole pipeline loaded

The files are random weights in the real architectures, original single-file layout, fp16, cached under
~/.cache/lorakit/bench (or --dir). They are written tensor by tensor from models built on the meta device, so
building one needs little memory. Each check runs in a fresh subprocess under /usr/bin/time -v (peak RSS).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

CHECK = """
import sys
from lorakit.doctor import check_base_model
row = check_base_model(sys.argv[1])
print(row.status.upper(), row.value)
print('   ', row.advice[:400])
"""
LOAD_WHOLE = """
import sys
from lorakit.models.loading import load_base
print(load_base(sys.argv[1], device="cpu").describe())
"""


def original_shapes(family: str) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a real checkpoint of ``family`` in the original layout (models built on meta)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lorakit.models.single_file import architecture_configs, to_original_state_dict

    cfgs = architecture_configs(family)
    with init_empty_weights():
        parts = SimpleNamespace(
            unet=UNet2DConditionModel.from_config(cfgs["unet"]), vae=AutoencoderKL.from_config(cfgs["vae"]),
            text_encoder=CLIPTextModel(CLIPTextConfig(**cfgs["text_encoder"])),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**cfgs["text_encoder_2"]))
            if "text_encoder_2" in cfgs else None)
    return {k: tuple(v.shape) for k, v in to_original_state_dict(parts, family).items()}


def write_random_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> Path:
    """A .safetensors file of random fp16 tensors, written one tensor at a time (the header first)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 2 * int(torch.Size(shape).numel())
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    gen = torch.Generator().manual_seed(seed)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for shape in shapes.values():
            f.write((torch.randn(shape, generator=gen) * 0.02).to(torch.float16).numpy().tobytes())
    tmp.replace(path)
    return path


def measure(script: str, path: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB, output) of a script run on ``path`` in a fresh process.

    Through /usr/bin/time -v where it exists: a child forked from this (large) process would count this
    process's pages in its ru_maxrss until it execs.
    """
    cmd = [sys.executable, "-c", script, str(path)]
    timed = Path("/usr/bin/time").is_file()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", *cmd] if timed else cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if timed:
        kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)[1])
        note = ""
    else:
        kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far, in KiB
        note = "" if kib > before else " (no higher than an earlier run: a lower bound)"
    text = (out.stdout + out.stderr[-600:] if out.returncode else out.stdout).strip() + note
    return seconds, kib / 2**20, text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["sd1", "sdxl"], action="append")
    parser.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "lorakit" / "bench")
    parser.add_argument("--before", action="store_true",
                        help="also time the old check (the whole pipeline loaded in fp32; ~21 GB for SDXL)")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    for family in args.family or ["sd1", "sdxl"]:
        path = args.dir / f"random-{family}-fp16.safetensors"
        if not path.is_file():
            t0 = time.perf_counter()
            write_random_checkpoint(path, original_shapes(family))
            print(f"built {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
        seconds, gb, out = measure(CHECK, path)
        print(f"{family}: doctor's base-model check {seconds:.1f} s, peak RSS {gb:.2f} GB\n  {out}")
        if args.before:
            seconds, gb, out = measure(LOAD_WHOLE, path)
            print(f"{family}: the whole pipeline loaded (the old check) {seconds:.1f} s, peak RSS {gb:.2f} GB\n  {out}")


if __name__ == "__main__":
    main()
