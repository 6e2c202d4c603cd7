"""Checkpoint write time and file size per save precision (fp16, bf16, float) for a LoRA of a given rank.

    python bench/checkpoint_io.py [--base-model PATH] [--rank 16]
    python bench/checkpoint_io.py --sd15-shaped --rank 16    # random weights in SD 1.5's real shapes
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sd15_shaped():
    """A BaseModel with SD 1.5's UNet and text encoder architecture (random weights, no VAE): LoRA sizes are real."""
    from types import SimpleNamespace

    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lorakit.models.loading import FAMILIES, BaseModel
    from lorakit.models.single_file import architecture_configs

    configs = architecture_configs("sd1")
    unet = UNet2DConditionModel.from_config(configs["unet"])
    te_cfg = {k: v for k, v in configs["text_encoder"].items() if not k.startswith("_")}
    te = CLIPTextModel(CLIPTextConfig(**te_cfg))
    pipe = SimpleNamespace(unet=unet, text_encoder=te, vae=None)
    return BaseModel("SD 1.5-shaped (random)", FAMILIES["sd1"], pipe, "epsilon", torch.float32, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--type", default="lora", choices=["lora", "locon"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sd15-shaped", action="store_true", help="SD 1.5's UNet and CLIP shapes, random weights")
    args = parser.parse_args()
    from lorakit.config.schema import TrainConfig
    from lorakit.lora.file import SAVE_DTYPES, save_lora
    from lorakit.lora.network import Network
    from lorakit.models.loading import load_base

    base = sd15_shaped() if args.sd15_shaped else load_base(args.base_model)
    cfg = TrainConfig()
    cfg.optimizer.text_encoder_lr = 5e-5
    cfg.network.type, cfg.network.rank, cfg.network.alpha = args.type, args.rank, float(args.rank)
    net = Network.attach(base, cfg)
    out = Path(tempfile.mkdtemp(prefix="lorakit-ckpt-"))
    print(f"{base.describe()}, {args.type} rank {args.rank} (UNet + text encoder)")
    print(f"{'precision':>10} {'size':>10} {'write (median)':>15}")
    for name, dtype in SAVE_DTYPES.items():
        times = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            tensors = net.kohya_state_dict(dtype)
            path = save_lora(out / f"{name}-{i}.safetensors", tensors, {"ss_network_dim": str(args.rank)})
            times.append(time.perf_counter() - t0)
        times.sort()
        print(f"{name:>10} {path.stat().st_size / 1e6:>8.2f} MB {times[len(times) // 2] * 1000:>12.1f} ms")
    net.detach()


if __name__ == "__main__":
    main()
