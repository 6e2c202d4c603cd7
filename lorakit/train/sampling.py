"""Sample images during training, from prompts with kohya's options (--n --w --h --s --l --d).

    parse_sample_prompt("a fr3dd!e cat --n blurry --w 512 --h 768 --s 28 --l 6.5 --d 42")
"""

from __future__ import annotations

from pathlib import Path

import torch

from lorakit.config.sample_prompts import parse_sample_prompt
from lorakit.models.samplers import make_scheduler


@torch.no_grad()
def draw_samples(base, cfg, out_dir: Path, step: int) -> list[Path]:
    """Draw every sample prompt with the adapter as it is now; returns the PNG paths."""

    pipe = base.pipe
    saved_scheduler = pipe.scheduler
    pipe.scheduler = make_scheduler(pipe.scheduler.config, cfg.sampling.sample_sampler)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for i, line in enumerate(cfg.sampling.sample_prompts):
            sp = parse_sample_prompt(line)
            seed = sp.seed if sp.seed is not None else cfg.training.seed + i
            image = pipe(
                prompt=sp.prompt, negative_prompt=sp.negative or None, width=sp.width, height=sp.height,
                num_inference_steps=sp.steps or cfg.sampling.sample_steps,
                guidance_scale=sp.cfg if sp.cfg is not None else cfg.sampling.sample_cfg,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
            path = out_dir / f"{cfg.saving.output_name}_{step:06d}_{i:02d}.png"
            image.save(path)
            paths.append(path)
    finally:
        pipe.scheduler = saved_scheduler
    return paths
