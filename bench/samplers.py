"""Every A1111 sampler name on the toy base model: does it draw what the prompt asks, and how fast?

    OMP_NUM_THREADS=1 python bench/samplers.py                 # 12 ordinary prompts, 25 steps, CFG 4
    OMP_NUM_THREADS=1 python bench/samplers.py --n 6 --steps 20

Draws the same prompts and seeds with each sampler in one batch and scores them with lorakit.demo.scorer: shape
right, colour and background right ("colours"), all three right ("correct"). Without data/toy-base it falls back to the tiny random model and
only checks that each sampler runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.demo import toyworld as tw  # noqa: E402
from lorakit.demo.scorer import score_batch  # noqa: E402
from lorakit.evaluate.generate import Generator  # noqa: E402
from lorakit.models.loading import DEMO_MODEL_DIR  # noqa: E402
from lorakit.models.samplers import SAMPLERS  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="prompts (ordinary shapes, colours and backgrounds)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=4.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    toy = (DEMO_MODEL_DIR / "model_index.json").is_file()
    gen = Generator(str(DEMO_MODEL_DIR) if toy else "")
    expected = tw.base_eval_set(args.n)
    prompts = [e.prompt() for e in expected]
    gen.generate_batch(prompts[:1], seeds=[0], steps=2, cfg=args.cfg)  # warm-up
    print(f"{gen.base.describe()}: {args.n} prompts, {args.steps} steps, CFG {args.cfg:g}")
    print(f"{'sampler':<18} {'shape':>6} {'colours':>8} {'correct':>8} {'s/image':>8}  note")
    for name in SAMPLERS:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            images = gen.generate_batch(prompts, seeds=list(range(args.n)), steps=args.steps, cfg=args.cfg,
                                        sampler=name)
        seconds = (time.perf_counter() - t0) / args.n
        s = score_batch(images, expected) if toy else None
        scores = f"{s.likeness:6.0%} {s.adaptability:8.0%} {s.correct:8.0%}" if s else f"{'n/a':>6} {'n/a':>8} {'n/a':>8}"
        notes = {str(w.message).split(";")[0].split(": ", 1)[-1] for w in caught if "zero-terminal" in str(w.message)}
        print(f"{name:<18} {scores} {seconds:8.2f}  {'; '.join(sorted(notes))}")


if __name__ == "__main__":
    main()
