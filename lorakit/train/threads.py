"""How many CPU threads a run uses: chosen from the model's size and the cores that are free, never left to chance.

    threads = choose_threads(unet_parameters=860_000_000)   # every free physical core for a real SD 1.5
    threads = choose_threads(unet_parameters=2_000_000)     # 1 for the demo's toy model

On a 2-core machine a 2-thread torch process slows down many times over as soon as anything else runs (each
step waits for the slower thread), and a tiny model gains nothing from a second thread anyway; a real model's
large matrix products do use every core. On a GPU the CPU threads hardly matter and are left as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

TINY_UNET_PARAMETERS = 50_000_000  # below this (the toy and test models) one thread is fastest


def usable_cores() -> int:
    """Physical cores this process may run on (logical ones halved when simultaneous multithreading is on)."""
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        logical = os.cpu_count() or 1
    smt = Path("/sys/devices/system/cpu/smt/active")
    try:
        if smt.read_text().strip() == "1":
            return max(1, logical // 2)
    except OSError:
        pass
    return max(1, logical)


def busy_cores() -> int:
    """Cores other work keeps busy now (the 1-minute load average, rounded down); 0 where it is unknown."""
    try:
        return int(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0


def choose_threads(unet_parameters: int, requested: int = 0, cores: int | None = None, busy: int | None = None) -> int:
    """``requested`` if set; else 1 for a tiny model, else the free physical cores (at least 1)."""
    if requested:
        return requested
    if unet_parameters < TINY_UNET_PARAMETERS:
        return 1
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    return max(1, cores - busy)


def configure_threads(base, cfg, device) -> int:
    """Set torch's thread count for a CPU run (returns it); on a GPU, change nothing (returns 0)."""
    if torch.device(device).type != "cpu":
        return 0
    threads = choose_threads(sum(p.numel() for p in base.unet.parameters()), cfg.training.num_threads)
    torch.set_num_threads(threads)
    return threads
