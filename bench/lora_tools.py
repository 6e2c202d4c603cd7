"""Run time of the LoRA tools on the demo model and on SD 1.5 sizes, and resize error / size at a few ranks.

    OMP_NUM_THREADS=1 python bench/lora_tools.py              # demo + SD 1.5 (a 2 GB random SD 1.5 file, built once)
    python bench/lora_tools.py --skip-sd15                      # the demo only (seconds)
    python bench/lora_tools.py --skip-sd15 --trained demo-project/output/blicket.safetensors   # + a trained LoRA

The LoRAs are random LoCon/LoRA factors in the real modules' shapes (the demo: rank 16 on the modules its recipe
trains; SD 1.5: rank 16 on the 264 modules kohya's LoRA adapts, UNet attention + text encoder). The SD 1.5
checkpoint is random weights in the real architecture (bench/doctor_memory.py builds and caches it). A random
rank-32 LoRA has a flat spectrum, so its resize error is a worst case: trained LoRAs concentrate their energy in
fewer singular values.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))


def random_lora(path: Path, targets: dict, keys, rank: int, seed: int = 0) -> Path:
    """Random kohya factors (alpha = rank) for ``keys`` of a CheckpointLayout's targets, fp16."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key in sorted(keys):
        shape = targets[key].shape
        down = torch.randn(rank, *shape[1:], generator=gen) * 0.05
        up = torch.randn(shape[0], rank, *([1, 1] if len(shape) == 4 else []), generator=gen) * 0.05
        tensors |= {f"{key}.lora_down.weight": down.half(), f"{key}.lora_up.weight": up.half(),
                    f"{key}.alpha": torch.tensor(float(rank))}
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(rank),
                                            "ss_network_alpha": str(float(rank))})
    return path


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"  {label:<44} {time.perf_counter() - t0:7.2f} s")
    return out


def run_tools(name: str, lora: Path, base: Path, tmp: Path, rank: int, config=None, conv: bool = False) -> None:
    from lorakit.lora.tools import extract_lora, inspect_lora, merge_into_checkpoint, merge_loras, resize_lora

    print(f"{name}: {lora.stat().st_size / 1e6:.1f} MB LoRA, {base.stat().st_size / 1e9:.2f} GB checkpoint")
    report = timed("inspect", lambda: inspect_lora(lora))
    timed("  heatmap png", lambda: report.heatmap(tmp / f"{name}-blocks.png"))
    print(f"  ({len(report.modules)} modules, {report.network})")
    timed(f"resize {rank} -> {rank // 2}", lambda: resize_lora(lora, tmp / f"{name}-r.safetensors", rank // 2))
    timed("resize sv_fro 0.9", lambda: resize_lora(lora, tmp / f"{name}-fro.safetensors", rank, method="sv_fro",
                                                   param=0.9))
    timed("merge 2 LoRAs, concatenated", lambda: merge_loras([(lora, 0.5), (lora, 0.5)], tmp / f"{name}-m.safetensors"))
    timed(f"merge 2 LoRAs, SVD to rank {rank}", lambda: merge_loras([(lora, 0.5), (tmp / f"{name}-r.safetensors", 0.5)],
                                                                    tmp / f"{name}-ms.safetensors", rank=rank))
    tuned = tmp / f"{name}-tuned.safetensors"
    timed("merge into checkpoint (fp16)", lambda: merge_into_checkpoint([(lora, 1.0)], base, tuned, config=config))
    timed(f"extract rank {rank}", lambda: extract_lora(tuned, base, tmp / f"{name}-x.safetensors", rank,
                                                       conv_rank=rank if conv else None, config=config))


def resize_table(lora: Path, tmp: Path, ranks=(4, 8, 16, 32)) -> None:
    from lorakit.lora.tools import inspect_lora, resize_lora

    top = max(inspect_lora(lora).ranks)
    ranks = [r for r in ranks if r <= top]
    print(f"resize of {lora.name} ({lora.stat().st_size / 1e6:.1f} MB, rank {top}): relative ‖ΔW‖ error and size")
    for r in ranks:
        rep = resize_lora(lora, tmp / f"resize-{lora.stem}-{r}.safetensors", r)
        print(f"  rank {r:>2}: error mean {rep.mean_error:6.2%}, max {rep.max_error:6.2%}, "
              f"{rep.new_bytes / 1e6:6.1f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-sd15", action="store_true")
    parser.add_argument("--trained", type=Path, action="append", default=[],
                        help="also the resize table of this trained LoRA (e.g. demo-project/output/blicket.safetensors)")
    parser.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "lorakit" / "bench")
    args = parser.parse_args(argv)
    from lorakit.lora.tools.checkpoint import CheckpointLayout
    from lorakit.models.loading import DEMO_MODEL_DIR, load_base
    from lorakit.models.single_file import save_single_file

    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        demo_file = save_single_file(load_base(str(DEMO_MODEL_DIR), device="cpu").pipe, tmp / "demo.safetensors",
                                     "sd1")
        layout = CheckpointLayout.of(demo_file, DEMO_MODEL_DIR)
        keys = [k for k in layout.trained | layout.conv_trained if min(layout.targets[k].shape[:2]) >= 16]
        demo_lora = random_lora(tmp / "demo-lora.safetensors", layout.targets, keys, 16)
        run_tools("demo", demo_lora, demo_file, tmp, 16, config=DEMO_MODEL_DIR, conv=True)
        for trained in args.trained:
            resize_table(trained, tmp, ranks=(1, 2, 4, 8, 16))
        if args.skip_sd15:
            return
        from doctor_memory import original_shapes, write_random_checkpoint

        args.dir.mkdir(parents=True, exist_ok=True)
        sd15 = args.dir / "random-sd1-fp16.safetensors"
        if not sd15.is_file():
            timed("build a random SD 1.5 checkpoint (once)", lambda: write_random_checkpoint(sd15, original_shapes("sd1")))
        layout = CheckpointLayout.of(sd15)
        print(f"SD 1.5: {len(layout.trained)} modules a kohya LoRA adapts")
        lora16 = random_lora(tmp / "sd15-r16.safetensors", layout.targets, layout.trained, 16)
        run_tools("sd15", lora16, sd15, tmp, 16)
        resize_table(random_lora(tmp / "sd15-r32.safetensors", layout.targets, layout.trained, 32, seed=1), tmp)


if __name__ == "__main__":
    main()
