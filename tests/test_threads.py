"""lorakit chooses the CPU thread count from the model size and the free cores, and says so."""

from __future__ import annotations

import torch

from lorakit.train.loop import train
from lorakit.train.progress import start_line
from lorakit.train.threads import TINY_UNET_PARAMETERS, choose_threads


def test_tiny_models_get_one_thread_and_real_ones_the_free_cores():
    assert choose_threads(2_000_000, cores=8, busy=0) == 1
    assert choose_threads(860_000_000, cores=8, busy=0) == 8
    assert choose_threads(860_000_000, cores=8, busy=3) == 5, "cores other work keeps busy are left to it"
    assert choose_threads(860_000_000, cores=2, busy=5) == 1, "never below one"
    assert choose_threads(TINY_UNET_PARAMETERS, cores=4, busy=0) == 4
    assert choose_threads(2_000_000, requested=3, cores=8, busy=0) == 3, "training.num_threads overrides"


def test_a_cpu_run_sets_and_reports_its_threads(tiny_project, capsys):
    from lorakit.train.progress import TqdmCallback

    project, cfg = tiny_project
    torch.set_num_threads(2)
    try:
        train(project, cfg, callbacks=[TqdmCallback()])
        assert torch.get_num_threads() == 1, "the tiny test model trains on one thread"
        assert "1 CPU thread" in capsys.readouterr().out.splitlines()[0]
        cfg.training.num_threads = 2
        train(project, cfg)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert "2 CPU threads" in start_line({"total_steps": 4, "threads": 2})
