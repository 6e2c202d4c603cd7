"""Pretrain the toy base model (data/toy-base) on the toy world, on one CPU core.

    OMP_NUM_THREADS=1 python scripts/train_toy_base.py --out data/toy-base --minutes 20
    OMP_NUM_THREADS=1 python scripts/train_toy_base.py --out data/toy-base --continue-minutes 30 --extra-shapes all
    OMP_NUM_THREADS=1 python scripts/train_toy_base.py --out data/toy-base --eval-only

Three stages: (1) a small f=2 VAE learns to code 32×32 scenes as 16×16×4 latents; (2) a UNet and a small CLIP
text encoder learn, jointly, to draw latents from captions, with zero-terminal-SNR v-prediction (without it the
model cannot get backgrounds right: the last timestep leaks the image's mean colour); (3) the saved pipeline is
sampled from prompts and scored with lorakit.demo.scorer; the figures go to TRAINING_LOG.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.demo import toyworld as tw  # noqa: E402
from lorakit.models.tiny import make_tokenizer  # noqa: E402

SCHEDULER_KWARGS = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    steps_offset=1,
)


@dataclass
class Log:
    """Figures gathered on the way, written to TRAINING_LOG.md."""

    lines: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.lines.append(text)


# ---- the models ------------------------------------------------------------------------------------


def build_vae():
    """A 168k-parameter AutoencoderKL with f=2: 32×32×3 scenes ↔ 16×16×4 latents."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=tw.NATIVE_SIZE,
    )


@dataclass(frozen=True)
class Shape:
    """The sizes of the base model's networks (the demo's base by default)."""

    unet_channels: tuple[int, ...] = (32, 64, 64)
    text_width: int = 64
    text_layers: int = 3


def build_text_encoder(tokenizer, shape: Shape = Shape()):
    """A CLIP text encoder, 3 layers × 64 wide for the demo's base."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.text_width,
        intermediate_size=2 * shape.text_width,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_width // 32,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=shape.text_width,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_act="quick_gelu",
    )
    return CLIPTextModel(config)


def build_unet(shape: Shape = Shape()):
    """A UNet2DConditionModel on 16×16×4 latents (1.7M parameters for the demo's base); no attention at 16×16."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=tw.NATIVE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=shape.unet_channels,
        layers_per_block=1,
        cross_attention_dim=shape.text_width,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- data ------------------------------------------------------------------------------------------


def scene_images(n: int, seed: int, shapes=tw.BASE_SHAPES) -> tuple[list[tw.Scene], torch.Tensor]:
    """n pretraining scenes (held-out triples excluded) and their pixels in [-1, 1], N×3×32×32."""
    scenes = [tw.scene_from_seed(seed + i, shapes=shapes, held_out=False) for i in range(n)]
    pixels = torch.from_numpy(tw.render_batch(scenes)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return scenes, pixels


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] image batches."""
    mse = ((a - b) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-12))


# ---- stage 1: the VAE ------------------------------------------------------------------------------


def train_vae(log: Log, steps: int, seed: int):
    """Train the VAE on rendered scenes (reconstruction + a small KL) and return it."""
    torch.manual_seed(seed)
    vae = build_vae()
    _, pixels = scene_images(8000, seed=10_000_000)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        x = pixels[torch.randint(0, len(pixels), (32,), generator=g)]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=g)).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.mse_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log.say(f"vae step {step:5d}  loss {loss.item():.5f}  {time.time() - t0:6.0f}s")
    vae.eval()
    log.figures["vae_minutes"] = round((time.time() - t0) / 60, 1)
    return vae


@torch.no_grad()
def vae_quality(vae, log: Log) -> float:
    """PSNR of reconstructions (latent mean) on held-out scenes of each shape, the unseen cross included."""
    results = {}
    for shape in tw.ALL_SHAPES:
        _, x = scene_images(256, seed=20_000_000, shapes=(shape,))
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        results[shape] = psnr(rec, x)
    log.say("vae PSNR (dB) on held-out scenes: " + ", ".join(f"{k} {v:.1f}" for k, v in results.items()))
    log.figures["vae_psnr"] = {k: round(v, 1) for k, v in results.items()}
    return float(np.mean([results[s] for s in tw.BASE_SHAPES]))


@torch.no_grad()
def encode_all(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Latent means of all pixels, in chunks."""
    return torch.cat([vae.encode(pixels[i : i + 256]).latent_dist.mode() for i in range(0, len(pixels), 256)])


# ---- stage 2: UNet + text encoder ------------------------------------------------------------------


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1 - decay)


def train_diffusion(log: Log, latents: torch.Tensor, ids: torch.Tensor, empty_ids: torch.Tensor,
                    tokenizer, minutes: float, seed: int, models=None, peak_lr: float = 1e-3,
                    shape: Shape = Shape()):
    """Train UNet + text encoder (new, or ``models`` to continue) for a time budget; returns the EMA copies."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    unet, te = models or (build_unet(shape), build_text_encoder(tokenizer, shape))
    unet.train()
    te.train()
    noise_sched = DDPMScheduler(**SCHEDULER_KWARGS)
    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(te).eval()
    params = [*unet.parameters(), *te.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(seed)
    batch, warmup, t0, step = 32, 200, time.time(), 0
    budget = minutes * 60
    losses: list[float] = []
    while (elapsed := time.time() - t0) < budget:
        # warm-up, then cosine decay over the time budget (time, not steps: other jobs share the cores)
        frac = min(elapsed / budget, 1.0)
        lr = peak_lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(latents), (batch,), generator=g)
        x0 = latents[idx]
        # 10% empty captions teach the unconditional prediction that classifier-free guidance needs
        drop = torch.rand(batch, generator=g) < 0.1
        cond_ids = torch.where(drop[:, None], empty_ids[None], ids[idx])
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch,), generator=g)
        noisy = noise_sched.add_noise(x0, noise, t)
        target = noise_sched.get_velocity(x0, noise, t)
        pred = unet(noisy, t, te(cond_ids)[0]).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = 0.999 if step > warmup or models else 0.9
        ema_update(ema_unet, unet, decay)
        ema_update(ema_te, te, decay)
        losses.append(loss.item())
        if step % 100 == 0:
            log.say(f"unet step {step:5d}  loss(avg100) {np.mean(losses[-100:]):.4f}  lr {lr:.2e}  {elapsed:6.0f}s")
        step += 1
    f = log.figures
    f.update(unet_steps=f.get("unet_steps", 0) + step,
             unet_minutes=round(f.get("unet_minutes", 0) + (time.time() - t0) / 60, 1),
             final_loss=round(float(np.mean(losses[-200:])), 4))
    return ema_unet, ema_te


# ---- saving ----------------------------------------------------------------------------------------


def save_pipeline(out: Path, vae, unet, te, tokenizer) -> None:
    """Write a diffusers folder that StableDiffusionPipeline.from_pretrained loads offline."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(**SCHEDULER_KWARGS),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


# ---- stage 3: evaluation ---------------------------------------------------------------------------


def evaluate(out: Path, log: Log, n: int, steps: int = 25, cfg: float = 4.0,
             shapes: tuple[str, ...] = tw.BASE_SHAPES, sheet_name: str = "eval_samples.png") -> dict:
    """Sample n prompts over the (shape, colour, background) triples (126 = every one) and score them."""
    from diffusers import StableDiffusionPipeline

    from lorakit.demo.scorer import score_image

    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    triples = tw.all_triples(shapes)
    random.Random(5).shuffle(triples)
    triples = triples[:n]
    hits = {"shape": 0, "color": 0, "background": 0, "all": 0}
    held = {"n": 0, "all": 0}
    t0 = time.time()
    asked = [tw.Expected(*t) for t in triples]
    images = []
    for i in range(0, len(asked), 30):  # batches of 30 prompts, one seed per prompt
        chunk = asked[i : i + 30]
        images += pipe([e.prompt() for e in chunk], num_inference_steps=steps, guidance_scale=cfg,
                       generator=[torch.Generator().manual_seed(i + j) for j in range(len(chunk))]).images
    for exp, img in zip(asked, images, strict=True):
        s = score_image(img, exp)
        for k in ("shape", "color", "background"):
            hits[k] += s[k + "_ok"]
        hits["all"] += s["correct"]
        if tw.is_held_out(exp.shape, exp.color, exp.background):
            held["n"] += 1
            held["all"] += s["correct"]
    sheet(images, asked, out / sheet_name)
    res = {k: v / len(triples) for k, v in hits.items()}
    res.update(n=len(triples), held_out_n=held["n"], held_out_all=held["all"] / max(held["n"], 1),
               seconds=round(time.time() - t0))
    log.say(f"eval over {len(triples)} prompts of {', '.join(shapes)} ({steps} steps, CFG {cfg}, Euler a): "
            + json.dumps(res))
    return res


def scorer_accuracy(log: Log, n: int = 400) -> dict:
    """The scorer's accuracy on held-out generator images (every shape), clean and blurred + noisy."""
    from PIL import ImageFilter

    from lorakit.demo.scorer import score_batch

    rng = np.random.default_rng(0)
    scenes = [tw.scene_from_seed(30_000_000 + i, shapes=tw.ALL_SHAPES, held_out=None) for i in range(n)]
    res = {}
    for px in (32, 64):
        clean = [tw.render(s, px) for s in scenes]
        blurred = [np.clip(np.asarray(im.filter(ImageFilter.GaussianBlur(0.6 * px / 32)), dtype=np.float32)
                           + rng.normal(0, 8, (px, px, 3)), 0, 255).astype(np.uint8) for im in clean]
        res[f"clean_{px}px"] = score_batch(clean, scenes).correct
        res[f"blurred_noisy_{px}px"] = score_batch(blurred, scenes).correct
    log.say(f"scorer accuracy (all of shape, colour, background right) on {n} held-out scenes: {json.dumps(res)}")
    return res


def sheet(images, asked, path: Path, cols: int = 15) -> None:
    """A contact sheet of the evaluation images (4× upscaled), for a look by eye."""
    from PIL import Image

    size = images[0].width * 4
    rows = math.ceil(len(images) / cols)
    canvas = Image.new("RGB", (cols * size, rows * size), "gray")
    for i, img in enumerate(images):
        canvas.paste(img.resize((size, size), Image.Resampling.NEAREST), ((i % cols) * size, (i // cols) * size))
    canvas.save(path)


def write_log(out: Path, log: Log) -> None:
    """TRAINING_LOG.md: the recipe, the figures and the raw log."""
    f = log.figures
    net = f.get("networks", asdict(Shape()))
    shapes = f.get("shapes", tw.BASE_SHAPES)
    text = [
        f"# {out.name}: training log",
        "",
        "Made by `scripts/train_toy_base.py` on one CPU core (OMP_NUM_THREADS=1), in stages: the first run, then "
        "any `--continue-minutes` runs, each a new warm-up and cosine (see `optimizer` below). Diffusers folder, "
        "safetensors, loadable offline with `StableDiffusionPipeline.from_pretrained`.",
        *([""] + [f"- {note}" for note in f["notes"]] if f.get("notes") else []),  # how the runs went
        "",
        "- VAE: AutoencoderKL, block_out_channels 16/32, f=2: 32×32×3 scenes ↔ 16×16×4 latents; MSE + 1e-4 KL; "
        "`scaling_factor` = 1/std of the latents.",
        f"- UNet: UNet2DConditionModel, block_out_channels {'/'.join(map(str, net['unet_channels']))}, DownBlock2D "
        f"first (no attention at 16×16), layers_per_block 1, cross-attention dim {net['text_width']}.",
        f"- Text encoder: CLIPTextModel, {net['text_layers']} layers, {net['text_width']} wide, trained jointly with "
        "the UNet; tokenizer from `lorakit.models.tiny.make_tokenizer` with the toy words and spare trigger words "
        "(blicket, dax, wug, ...) as single tokens.",
        "- Diffusion: v-prediction with zero terminal SNR (`rescale_betas_zero_snr`), trailing timesteps; saved "
        "scheduler Euler a. Batch 32, EMA 0.999, 10% empty captions (for CFG).",
        f"- Data: scenes of `lorakit.demo.toyworld` ({'/'.join(shapes)} × 7 colours × 6 backgrounds); 1 in 8 "
        "(shape, colour, background) triples is held out of pretraining and appears only in the evaluation.",
        *(["- Extra shapes (`--extra-shapes`), named by spare words, in the stages that list them: "
           + ", ".join(f"`{k}` = {v}" for k, v in f["extra_shapes"].items())
           + "; evaluated like the others (`eval_extra_shapes`, images in `eval_extra_samples.png`). Never the "
           "cross."] if f.get("extra_shapes") else []),
        f"- Evaluation: every one of the {len(tw.all_triples(tuple(shapes)))} triples once (25 steps, CFG 4, Euler a, "
        "32×32), read by "
        "`lorakit.demo.scorer`; the images are in `eval_samples.png` (row by row, in the order of the log).",
        "",
        "## Figures",
        "",
        "```json",
        json.dumps(f, indent=2),
        "```",
        "",
        "## Log",
        "",
        "```",
        *log.lines,
        "```",
        "",
    ]
    (out / "TRAINING_LOG.md").write_text("\n".join(text), encoding="utf-8")


def continue_training(args, log: Log, shapes: tuple[str, ...]) -> None:
    """Load the saved pipeline and train its UNet + text encoder further (a second, lower-lr cosine)."""
    from diffusers import StableDiffusionPipeline

    t0 = time.time()
    pipe = StableDiffusionPipeline.from_pretrained(args.out, local_files_only=True)
    scenes, pixels = scene_images(args.n_scenes, seed=1_000_000 * args.seed, shapes=shapes)
    latents = encode_all(pipe.vae, pixels) * pipe.vae.config.scaling_factor
    ids = token_ids(pipe.tokenizer, [s.caption() for s in scenes])
    empty = token_ids(pipe.tokenizer, [""])[0]
    log.say(f"continuing from {args.out} for {args.continue_minutes} min, peak lr {args.continue_lr}"
            + (f", with the extra shapes {', '.join(args.extra_shapes)}" if args.extra_shapes else ""))
    unet, te = train_diffusion(log, latents, ids, empty, pipe.tokenizer, args.continue_minutes, args.seed + 1,
                               models=(pipe.unet, pipe.text_encoder), peak_lr=args.continue_lr)
    save_pipeline(args.out, pipe.vae, unet, te, pipe.tokenizer)
    f = log.figures
    f["total_minutes"] = round(f["total_minutes"] + (time.time() - t0) / 60, 1)
    f["size_mb"] = round(folder_mb(args.out), 1)
    f["optimizer"] += f"; then continued {args.continue_minutes} min at peak lr {args.continue_lr}" + (
        f" on scenes of {len(shapes)} shapes" if args.extra_shapes else "")
    _record_extra_shapes(f, args.extra_shapes)
    (args.out / "figures.json").write_text(json.dumps(f, indent=2))
    (args.out / "train.log").write_text("\n".join(log.lines))


def _record_extra_shapes(figures: dict, shapes: list[str]) -> None:
    known = figures.get("extra_shapes", {})
    figures["extra_shapes"] = {**known, **{s: tw.EXTRA_SHAPES[s] for s in shapes}}


def _extra_shapes(text: str) -> list[str]:
    names = list(tw.EXTRA_SHAPES) if text == "all" else [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in names if w not in tw.EXTRA_SHAPES]
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in tw.EXTRA_SHAPES.items())
        raise argparse.ArgumentTypeError(f"unknown extra shape(s) {', '.join(unknown)}; known: {known}, or 'all'")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/toy-base"))
    parser.add_argument("--minutes", type=float, default=30.0, help="UNet + text-encoder time budget")
    parser.add_argument("--vae-steps", type=int, default=800)
    parser.add_argument("--n-scenes", type=int, default=60000)
    parser.add_argument("--eval", type=int, default=126, help="prompts to sample and score at the end")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--continue-minutes", type=float, default=0.0,
                        help="continue training the saved model's UNet + text encoder for this long")
    parser.add_argument("--continue-lr", type=float, default=5e-4, help="peak learning rate when continuing")
    parser.add_argument("--extra-shapes", type=_extra_shapes, default=[],
                        help="also pretrain on these shapes named by spare words (comma-separated, or 'all'): "
                             + ", ".join(f"{k} = {v}" for k, v in tw.EXTRA_SHAPES.items()))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", choices=["demo", "second"], default="demo",
                        help="second: the base of lorakit.demo.worlds.SECOND (its shapes, widths and folder; seed 1), "
                             "which the demo's recipe was never tuned on")
    parser.add_argument("--note", action="append", default=[],
                        help="a sentence for the log about this run (e.g. how loaded the machine was)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    shape, pretrain_shapes = Shape(), (*tw.BASE_SHAPES, *args.extra_shapes)
    if args.world == "second":
        from lorakit.demo.worlds import SECOND

        shape = Shape(SECOND.unet_channels, SECOND.text_width, SECOND.text_layers)
        pretrain_shapes = SECOND.base_shapes
        if args.out == parser.get_default("out"):
            args.out = SECOND.base_dir
        if args.seed == parser.get_default("seed"):
            args.seed = 1
    log = Log()
    fig_path = args.out / "figures.json"
    if args.eval_only or args.continue_minutes:
        log.figures = json.loads(fig_path.read_text())
        log.lines = (args.out / "train.log").read_text().splitlines()
    log.figures.setdefault("notes", []).extend(args.note)
    if args.continue_minutes:
        continue_training(args, log, pretrain_shapes)
    elif not args.eval_only:
        t0 = time.time()
        tokenizer = make_tokenizer(tw.tokenizer_words())
        vae = train_vae(log, args.vae_steps, args.seed)
        log.figures["vae_psnr_base_shapes"] = round(vae_quality(vae, log), 1)
        scenes, pixels = scene_images(args.n_scenes, seed=1_000_000 * args.seed, shapes=pretrain_shapes)
        _record_extra_shapes(log.figures, args.extra_shapes)
        latents = encode_all(vae, pixels)
        std = latents.std().item()
        vae.register_to_config(scaling_factor=round(1 / std, 4))
        latents = latents / std
        log.say(f"{len(scenes)} scenes encoded; latent std {std:.3f} -> scaling_factor {1 / std:.4f}")
        ids = token_ids(tokenizer, [s.caption() for s in scenes])
        empty = token_ids(tokenizer, [""])[0]
        unet, te = train_diffusion(log, latents, ids, empty, tokenizer, args.minutes, args.seed, shape=shape)
        save_pipeline(args.out, vae, unet, te, tokenizer)
        log.figures.update(
            params={"unet": n_params(unet), "text_encoder": n_params(te), "vae": n_params(vae)},
            total_minutes=round((time.time() - t0) / 60, 1), size_mb=round(folder_mb(args.out), 1),
            n_scenes=len(scenes), shapes=list(pretrain_shapes), seed=args.seed, networks=asdict(shape), batch=32, optimizer="AdamW 1e-3, wd 1e-2, warm-up 200, cosine to 10% over time",
            ema=0.999, caption_dropout=0.1, scheduler=SCHEDULER_KWARGS,
        )
        fig_path.write_text(json.dumps(log.figures, indent=2))
        (args.out / "train.log").write_text("\n".join(log.lines))
    if args.eval:
        log.figures["scorer_accuracy"] = scorer_accuracy(log)
        known = tuple(log.figures.get("shapes", tw.BASE_SHAPES))
        log.figures["eval"] = evaluate(args.out, log, args.eval if args.world == "demo" else 7 * 42,
                                       shapes=known if args.world == "second" else tw.BASE_SHAPES)
        if extra := tuple(log.figures.get("extra_shapes", ())):
            log.figures["eval_extra_shapes"] = evaluate(args.out, log, args.eval, shapes=extra,
                                                        sheet_name="eval_extra_samples.png")
        fig_path.write_text(json.dumps(log.figures, indent=2))
    write_log(args.out, log)


if __name__ == "__main__":
    main()
