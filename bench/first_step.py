"""Time to first training step, cold (new process: load model, encode latents) and warm (rerun in the same process).

    python bench/first_step.py [--base-model PATH]

Prints both figures: the warm rerun is what a notebook user sees after changing a hyperparameter. Also the
import time of ``lorakit`` alone and of the libraries a training step needs (torch, diffusers, transformers, peft,
accelerate), each in a fresh process, so what lorakit itself adds to a cold start can be told apart.
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


LIBRARIES = """
import torch
from diffusers import UNet2DConditionModel, AutoencoderKL, DDPMScheduler
from transformers import CLIPTextModel, CLIPTokenizer
from peft import LoraConfig
from accelerate import Accelerator
"""


def fresh_import(code: str, repeats: int = 2) -> float:
    """Seconds a new Python process takes to run ``code`` (the best of ``repeats``), interpreter start included."""
    import subprocess

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="")
    args = parser.parse_args()
    t_import = time.perf_counter()
    import torch

    from lorakit.demo.recipe import copy_demo_dataset, demo_config
    from lorakit.project import Project
    from lorakit.train.loop import train

    torch.set_num_threads(1)
    import_s = time.perf_counter() - t_import
    project = Project.create(Path(tempfile.mkdtemp(prefix="lorakit-bench-")) / "p")
    copy_demo_dataset(project)
    cfg = demo_config()
    cfg.model.base_model = args.base_model
    cfg.training.max_train_steps, cfg.training.max_train_epochs = 2, 1
    cfg.data.cache_latents_to_disk = False
    cold = train(project, cfg)
    cfg.optimizer.unet_lr *= 0.5  # a changed hyperparameter, as in a notebook rerun
    warm = train(project, cfg)
    print(f"import lorakit alone:    {fresh_import('import lorakit'):6.2f} s (new process)")
    print(f"libraries a step needs:  {fresh_import(LIBRARIES):6.2f} s (new process: torch, diffusers, transformers, "
          "peft, accelerate)")
    print(f"lorakit's training loop: {fresh_import('from lorakit.train.loop import train'):6.2f} s (new process)")
    print(f"imports:                 {import_s:6.2f} s")
    print(f"cold time to first step: {cold.time_to_first_step:6.2f} s (load model, encode {len(list(project.dataset_dir.rglob('*.png')))} latents)")
    print(f"warm time to first step: {warm.time_to_first_step:6.2f} s (same process, changed lr)")
    print(f"cold, new process:       {import_s + cold.time_to_first_step:6.2f} s (imports + cold; interpreter start not "
          "included)")


if __name__ == "__main__":
    main()
