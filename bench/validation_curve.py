"""Does the validation loss point at the best checkpoint? The demo recipe with validation on, scored per checkpoint.

    OMP_NUM_THREADS=1 python bench/validation_curve.py                  # the demo recipe, strength 1, all checkpoints
    OMP_NUM_THREADS=1 python bench/validation_curve.py --n 16 --set validation.timesteps=8

It trains the demo LoRA (bench/learning.py's recipe and project) with ``validation.enabled``: one cross in ten held
out, never trained on, its loss measured with fixed noise at step 0 and at every checkpoint. Each checkpoint is then
scored by lorakit.demo.scorer (likeness, adaptability) at one strength. Printed per epoch: validation loss,
likeness, adaptability and likeness × adaptability, then the epoch where the loss bottoms out, the epoch where
likeness × adaptability is best, and how many checkpoints apart they are.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from learning import BASE_MODEL, apply_override, epoch_of, eval_spec, evaluate, prepare_project

from lorakit.demo.recipe import demo_config
from lorakit.evaluate.validation import checkpoint_losses
from lorakit.train.events import Callback
from lorakit.train.loop import train


class StartInfo(Callback):
    def on_start(self, info: dict) -> None:
        self.info = info


def curves(workdir: Path, cfg, strength: float, spec) -> list[dict]:
    """Train with validation on; per checkpoint epoch: validation loss and the scorer's figures."""
    from lorakit.evaluate.generate import Generator

    project = prepare_project(workdir)
    cfg.model.base_model = str(BASE_MODEL)
    t0 = time.time()
    start = StartInfo()
    result = train(project, cfg, callbacks=[start])
    print(f"trained {result.steps} steps in {time.time() - t0:.0f}s; validation images (never trained on): "
          f"{', '.join(Path(p).name for p in start.info['validation'])}", flush=True)
    losses = {row["checkpoint"]: row["loss"] for row in checkpoint_losses(result.validation)}
    base_loss = next(r["loss"] for r in result.validation if r["step"] == 0)
    gen = Generator(str(BASE_MODEL))
    base = evaluate(gen, None, 0.0, spec)
    rows = [{"epoch": 0, "validation_loss": base_loss, "likeness": base.likeness, "adaptability": base.adaptability}]
    n_epochs = cfg.training.max_train_epochs
    for path in result.checkpoints:
        cell = evaluate(gen, path, strength, spec, epoch_of(path, n_epochs))
        rows.append({"epoch": cell.epoch, "validation_loss": losses[path.name], "likeness": cell.likeness,
                     "adaptability": cell.adaptability})
        print(format_rows(rows[-1:]).splitlines()[1], flush=True)
    for r in rows:
        r["product"] = r["likeness"] * r["adaptability"]
    return sorted(rows, key=lambda r: r["epoch"])


def format_rows(rows: list[dict]) -> str:
    out = [f"{'epoch':>5} {'val loss':>9} {'likeness':>9} {'adapt':>6} {'like×adapt':>10}"]
    for r in rows:
        product = r.get("product", r["likeness"] * r["adaptability"])
        out.append(f"{r['epoch']:>5} {r['validation_loss']:>9.5f} {r['likeness']:>9.2f} {r['adaptability']:>6.2f} "
                   f"{product:>10.2f}")
    return "\n".join(out)


def optima(rows: list[dict]) -> dict:
    """Where each curve is best among the checkpoints (epoch > 0); ties in the score go to the earlier epoch."""
    trained = [r for r in rows if r["epoch"] > 0]
    low = min(trained, key=lambda r: r["validation_loss"])
    top = max(r["product"] for r in trained)
    best = [r["epoch"] for r in trained if r["product"] == top]
    order = [r["epoch"] for r in trained]
    apart = min(abs(order.index(low["epoch"]) - order.index(e)) for e in best)
    return {"validation_min_epoch": low["epoch"], "best_score_epochs": best, "checkpoints_apart": apart}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--n", type=int, default=0, help="scale the number of prompts (0 = bench/learning's default)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = demo_config()
    cfg.validation.enabled = True
    for item in args.set:
        apply_override(cfg, item)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lorakit-valcurve-"))
    rows = curves(workdir, cfg, args.strength, eval_spec(args.n))
    found = optima(rows)
    print()
    print(format_rows(rows))
    print(f"\nvalidation loss lowest at epoch {found['validation_min_epoch']}; likeness × adaptability best at epoch "
          f"{', '.join(map(str, found['best_score_epochs']))}; {found['checkpoints_apart']} checkpoint(s) apart")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, **found}, indent=2))


if __name__ == "__main__":
    main()
