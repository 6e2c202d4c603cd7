"""A minimal hand-written LoRA loop, the yardstick for lorakit's trainer: same world, same base, same scorer.

    OMP_NUM_THREADS=1 python bench/minimal_loop.py --world second --minutes 5 --save-at 3,5
    OMP_NUM_THREADS=1 python bench/minimal_loop.py --world demo --minutes 5

What a person writes from the diffusers and peft docs, in one file: LoRA (peft) of rank 8, alpha 8, on the UNet's
attention projections and ResNet convolutions and on the text encoder's attention and MLP; AdamW at 3e-3, constant;
every step 16 concept images drawn at random plus 8 regularization images, at the base's own 32 px; timesteps
uniform over the whole schedule; the target and the noise schedule read from the base (v-prediction with zero
terminal SNR for the toy bases); plain MSE, no min-SNR weighting, no latent or text caching tricks beyond encoding
the images once. Checkpoints are saved at the minutes asked (diffusers LoRA format) and scored exactly as
bench/learning.py scores lorakit's (its ``evaluate``), so the two can be set side by side.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning import EvalSpec, evaluate, format_table  # noqa: E402

from lorakit.demo import toyworld as tw  # noqa: E402
from lorakit.demo.worlds import WORLDS, World  # noqa: E402

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def pixels(scenes: list[tw.Scene], px: int) -> torch.Tensor:
    return torch.from_numpy(tw.render_batch(scenes, px)).permute(0, 3, 1, 2).float() / 127.5 - 1


def train_minimal(world: World, out: Path, minutes: float, save_at: list[float], seed: int = 0,
                  rank: int = 8, lr: float = 3e-3, batch: int = 16, reg_batch: int = 8) -> list[tuple[float, Path]]:
    """Train for ``minutes`` (wall clock), saving a LoRA at each of ``save_at``; returns (minute, file) pairs."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    torch.manual_seed(seed)
    random.seed(seed)
    pipe = StableDiffusionPipeline.from_pretrained(world.base_dir, local_files_only=True)
    unet, te, vae, tok = pipe.unet, pipe.text_encoder, pipe.vae, pipe.tokenizer
    for m in (unet, te, vae):
        m.requires_grad_(False)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    px = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    concept, reg = world.concept_scenes(), world.reg_scenes()
    with torch.no_grad():
        lat_c = vae.encode(pixels(concept, px)).latent_dist.mode() * vae.config.scaling_factor
        lat_r = vae.encode(pixels(reg, px)).latent_dist.mode() * vae.config.scaling_factor
    ids_c = tok([s.caption(world.trigger) for s in concept], padding="max_length", max_length=tok.model_max_length,
                truncation=True, return_tensors="pt").input_ids
    ids_r = tok([s.caption() for s in reg], padding="max_length", max_length=tok.model_max_length,
                truncation=True, return_tensors="pt").input_ids
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=UNET_TARGETS, init_lora_weights="gaussian"))
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=TEXT_TARGETS,
                                       init_lora_weights="gaussian"), te)
    params = [p for m in (unet, te) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    unet.train()
    te.train()
    saved: list[tuple[float, Path]] = []
    pending = sorted(save_at)
    t0, step = time.perf_counter(), 0
    while pending:
        idx_c = torch.randint(0, len(lat_c), (batch,))
        idx_r = torch.randint(0, len(lat_r), (reg_batch,))
        x0 = torch.cat([lat_c[idx_c], lat_r[idx_r]])
        ids = torch.cat([ids_c[idx_c], ids_r[idx_r]])
        noise = torch.randn_like(x0)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(x0),))
        noisy = noise_sched.add_noise(x0, noise, t)
        target = (noise_sched.get_velocity(x0, noise, t) if noise_sched.config.prediction_type == "v_prediction"
                  else noise)
        pred = unet(noisy, t, te(ids)[0]).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        minute = (time.perf_counter() - t0) / 60
        while pending and minute >= pending[0]:
            folder = out / f"minute-{pending[0]:g}"
            StableDiffusionPipeline.save_lora_weights(
                folder, unet_lora_layers=get_peft_model_state_dict(unet),
                text_encoder_lora_layers=get_peft_model_state_dict(te), safe_serialization=True)
            saved.append((pending.pop(0), folder / "pytorch_lora_weights.safetensors"))
            print(f"minute {saved[-1][0]:g}: step {step}, loss {loss.item():.4f}", flush=True)
    return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=list(WORLDS), default="second")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--save-at", default="", help="minutes at which to save and score (default: --minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=0, help="scale the number of prompts (0 = bench/learning's)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--rescore", action="store_true",
                        help="score the minute-N checkpoints already in --workdir without training")
    args = parser.parse_args(argv)
    if args.rescore and not args.workdir:
        raise SystemExit("--rescore needs --workdir: the folder of the run whose checkpoints to score")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from learning import eval_spec

    from lorakit.evaluate.generate import Generator

    world = WORLDS[args.world]
    save_at = [float(m) for m in args.save_at.split(",") if m] or [args.minutes]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lorakit-minimal-"))
    if args.rescore:
        saved = sorted((float(d.name.removeprefix("minute-")), d / "pytorch_lora_weights.safetensors")
                       for d in workdir.glob("minute-*") if (d / "pytorch_lora_weights.safetensors").is_file())
    else:
        saved = train_minimal(world, workdir, max(save_at), save_at, seed=args.seed)
    spec: EvalSpec = eval_spec(args.n)
    gen = Generator(str(world.base_dir))
    cells = [evaluate(gen, None, 0.0, spec, world=world)]
    for minute, path in saved:
        cells.append(evaluate(gen, path, 1.0, spec, epoch=round(minute), world=world))
    print(f"\nminimal loop on the {world.name} world (epoch column = minutes of training):")
    print(format_table(cells))


if __name__ == "__main__":
    main()
