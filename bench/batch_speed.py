"""Does the speed probe tell batch sizes apart as training does? The probe's steps/s beside a real training run's,
per batch size, on the same model, and the batch the suggestion picks from each.

    OMP_NUM_THREADS=1 python bench/batch_speed.py [--world demo|second] [--batches 1,2,4,8,16] [--steps 60]
    python bench/batch_speed.py --real sd15 --device cuda --resolution 512 --precision bf16 --batches 1,2,4,8 --steps 20

``--real KEY``: instead of a toy world, bench/real_size.py's real-size random-weight checkpoint of that architecture
(built once into its cache) and 8 random images at ``--resolution`` (what bench/gpu_check.sh runs on a GPU).

For each batch size: lorakit.train.speed_probe (random latents, a few seconds), then lorakit's trainer on the
world's dataset for ``--steps`` steps, timed from its 5th step to its last (model loading and latent caching left
out, as the probe leaves them out). Prints both in steps/s and images/s, their ratio, and the batch size
lorakit.train.batch_size suggests from each set of speeds (a 20-image character dataset: 3600 samples in the run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="demo", choices=["demo", "second"])
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--steps", type=int, default=60, help="training steps per batch size")
    parser.add_argument("--real", default="", help="a bench/real_size.py architecture (sd15, sd21, sdxl) instead")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="with --real")
    parser.add_argument("--resolution", type=int, default=512, help="with --real")
    parser.add_argument("--precision", default="bf16", choices=["no", "fp16", "bf16"], help="with --real, on CUDA")
    args = parser.parse_args()
    os.environ["LORAKIT_SPEED_FILE"] = str(Path(tempfile.mkdtemp(prefix="lorakit-speed-")) / "speed.json")

    import torch

    from lorakit.demo.recipe import demo_config
    from lorakit.demo.worlds import WORLDS
    from lorakit.train.batch_size import suggest_batch
    from lorakit.train.loop import train
    from lorakit.train.speed_probe import measure_batch_speeds

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from learning import carry_over, prepare_project  # the worlds' projects, as bench/learning.py builds them
    from real_size import StepClock

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    batches = tuple(int(b) for b in args.batches.split(","))
    root = Path(tempfile.mkdtemp(prefix="lorakit-batch-"))
    if args.real:
        import real_size

        model, how = real_size.checkpoint(real_size.DEFAULT_CACHE, args.real)
        print(f"{args.real}: {model} ({how})")
        args.steps = max(args.steps, 6)
        project, cfg = real_size.project_and_config(root, model, args)
        project = real_size.random_project(root / "many", args.resolution, numbered=True, images=max(batches))
        cfg.training.mixed_precision = args.precision if args.device == "cuda" else "no"
        name = f"{args.real} at {args.resolution} px"
    else:
        world = WORLDS[args.world]
        cfg = carry_over(demo_config(), world)
        project = prepare_project(root / "p", world)
        name = f"{args.world} world"
    cfg.saving.save_every_n_epochs, cfg.sampling.sample_every_n_epochs = 0, 0  # nothing but steps is timed
    cfg.sampling.sample_at_start, cfg.validation.enabled = False, False

    probe = measure_batch_speeds(cfg, batches, record=False, device=args.device if args.real else None)

    trained = {}
    for b in batches:
        if b in probe.out_of_memory:
            print(f"batch {b}: out of GPU memory in the probe, not trained")
            break
        clock = StepClock(cuda=probe.device != "cpu", reset_peak=False)  # marks the start, then each step
        run = cfg.replace({"training.train_batch_size": b, "training.max_train_steps": args.steps,
                           "training.max_train_epochs": 0})
        train(project, run, callbacks=[clock])
        times = clock.marks[1:]  # after each step
        first = min(4, len(times) - 2)  # timed from the 5th step (the 2nd of a short run)
        trained[b] = (len(times) - 1 - first) / (times[-1] - times[first])

    print(f"{name}, {probe.device}, {probe.threads} thread(s); probe took {probe.seconds:.0f} s")
    print(f"{'batch':>5} {'probe steps/s':>14} {'train steps/s':>14} {'probe img/s':>12} {'train img/s':>12} "
          f"{'probe/train':>12}")
    for b in batches:
        if b not in trained:
            continue
        p, t = probe.steps_per_second.get(b, 0.0), trained[b]
        print(f"{b:>5} {p:>14.2f} {t:>14.2f} {p * b:>12.1f} {t * b:>12.1f} {p / t:>12.2f}")
    for name, speeds in (("probe", probe.steps_per_second), ("training", trained)):
        choice = suggest_batch(images=20, seen=3600, current=1, speeds=speeds)
        print(f"suggested from the {name} speeds: batch {choice.batch_size} (x{choice.lr_scale:.2f} lr)")


if __name__ == "__main__":
    main()
