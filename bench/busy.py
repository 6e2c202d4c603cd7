"""Training speed on a busy machine: the demo's first steps alone, then beside a CPU hog, with lorakit's thread
choice and with a fixed thread count (what torch picks by itself on this machine).

    python bench/busy.py [--steps 100] [--threads 0,2]

Prints steps/s alone and beside the hog, and their ratio, for each thread setting (0 = lorakit chooses). A ratio
near 0.5 means the run slows to half speed when half the machine is taken; far below that, each step waits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOG = "while True: pass"  # one core kept busy, as a pip install or a browser tab would


def steps_per_second(steps: int, threads: int) -> float:
    """The demo recipe's first ``steps`` steps in a fresh project; the first step (loading, latents) excluded."""
    from lorakit.demo.recipe import copy_demo_dataset, demo_config
    from lorakit.project import Project
    from lorakit.train.events import Callback
    from lorakit.train.loop import train

    class Clock(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step(self, step, loss, lr):
            self.times.append(time.perf_counter())

    project = Project.create(Path(tempfile.mkdtemp(prefix="lorakit-busy-")) / "p")
    copy_demo_dataset(project)
    cfg = demo_config()
    cfg.training.max_train_steps, cfg.training.num_threads = steps, threads
    cfg.sampling.sample_every_n_epochs = cfg.saving.save_every_n_epochs = 0
    clock = Clock()
    train(project, cfg, callbacks=[clock])
    return (len(clock.times) - 1) / (clock.times[-1] - clock.times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", default=f"0,{os.cpu_count() or 2}",
                        help="thread settings to compare (0 = lorakit chooses; default: also torch's own count)")
    args = parser.parse_args()
    print(f"{'threads':>8} {'alone':>10} {'beside hog':>11} {'ratio':>6}")
    for threads in (int(x) for x in args.threads.split(",")):
        alone = steps_per_second(args.steps, threads)
        hog = subprocess.Popen([sys.executable, "-c", HOG])
        try:
            time.sleep(1.0)
            busy = steps_per_second(args.steps, threads)
        finally:
            hog.kill()
            hog.wait()
        label = "auto" if threads == 0 else str(threads)
        print(f"{label:>8} {alone:8.2f}/s {busy:9.2f}/s {busy / alone:6.2f}")


if __name__ == "__main__":
    main()
