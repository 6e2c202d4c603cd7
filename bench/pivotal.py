"""Pivotal tuning in the toy world: the LoRA alone, the new word alone, and both, scored the same way.

    OMP_NUM_THREADS=1 python bench/pivotal.py --epochs 8 --n 16    # three runs of the demo recipe, ~10 min on 2 cores
    OMP_NUM_THREADS=1 python bench/pivotal.py --vectors 1          # one vector per new word

Three runs of the demo recipe on the demo's concept (the cross, trigger `blicket`), scored at the last epoch at
strength 1 with bench/learning.py's scorer (likeness, adaptability, ordinary prompts):
  lora        the recipe as shipped
  embedding   only the new word trains (network.embedding_vectors); the LoRA's learning rates are 1e-9, so its
              delta stays at zero (lorakit always attaches a LoRA) and the file is in effect a textual inversion
  both        the recipe with the new word beside it (pivotal tuning)
The previews load the word bundled in each LoRA file, as AUTOMATIC1111 does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning import BASE_MODEL, eval_spec, evaluate, prepare_project  # noqa: E402

from lorakit.demo.recipe import demo_config  # noqa: E402

RUNS = ("lora", "embedding", "both")


def config(kind: str, epochs: int, vectors: int, lr: float, share: float = 1.0):
    cfg = demo_config()
    cfg.model.base_model = str(BASE_MODEL)
    cfg.training.max_train_epochs = epochs
    cfg.saving.save_every_n_epochs = 0
    cfg.sampling.sample_every_n_epochs = 0
    if kind != "lora":
        cfg.network.embedding_vectors, cfg.network.embedding_lr = vectors, lr
        cfg.network.embedding_train_share = share
        cfg.network.embedding_replace_word = True  # the toy vocabulary has `blicket` as a spare, untrained word
    if kind == "embedding":
        cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr = 1e-9, 0.0
    return cfg.validate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--vectors", type=int, default=2)
    parser.add_argument("--embedding-lr", type=float, default=5e-3)
    parser.add_argument("--share", type=float, default=1.0, help="network.embedding_train_share")
    parser.add_argument("--n", type=int, default=16, help="trigger prompts scored per run")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from lorakit.evaluate.generate import Generator
    from lorakit.train.loop import train

    spec = eval_spec(args.n)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lorakit-pivotal-"))
    gen = Generator(str(BASE_MODEL))
    rows = [("base model", 0.0, evaluate(gen, None, 0.0, spec))]
    for kind in args.runs.split(","):
        project = prepare_project(workdir / kind)
        t0 = time.time()
        result = train(project, config(kind, args.epochs, args.vectors, args.embedding_lr, args.share))
        seconds = time.time() - t0
        cell = evaluate(gen, result.final, 1.0, spec, epoch=args.epochs)
        rows.append((kind, seconds, cell))
        print(f"{kind}: {result.steps} steps in {seconds:.0f}s, likeness {cell.likeness:.2f}, adaptability "
              f"{cell.adaptability:.2f}, ordinary {cell.ordinary:.2f}", flush=True)
    print(f"\n{'run':<11} {'train s':>7} {'likeness':>9} {'adapt':>6} {'unseen':>7} {'ordinary':>9}")
    for kind, seconds, c in rows:
        print(f"{kind:<11} {seconds:>7.0f} {c.likeness:>9.2f} {c.adaptability:>6.2f} {c.unseen_adaptability:>7.2f} "
              f"{c.ordinary:>9.2f}")


if __name__ == "__main__":
    main()
