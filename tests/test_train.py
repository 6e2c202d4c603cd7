"""Training runs: determinism, resume after interruption, never overwriting, logs, multi-process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from lorakit.lora.file import read_lora_metadata
from lorakit.train.loop import train
from lorakit.train.state import STATE_FILE, load_state


def _tensors(path):
    return load_file(path)


def _same_tensors(a, b) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_same_seed_same_lora_bytes(tiny_project, tmp_path):
    project, cfg = tiny_project
    first = train(project, cfg)
    copy = tmp_path / "first.safetensors"
    copy.write_bytes(first.final.read_bytes())
    second = train(project, cfg)
    assert _same_tensors(copy, second.final), "same seed, data and settings must give the same tensors"
    cfg.training.seed += 1
    third = train(project, cfg)
    assert not _same_tensors(copy, third.final)


def test_interrupted_run_resumes_to_the_same_lora(tiny_project, tmp_path):
    """Stop mid-epoch, resume from the saved state: the final LoRA is bit-identical to an uninterrupted run."""
    project, cfg = tiny_project
    cfg.training.max_train_epochs = 3
    full = train(project, cfg)
    reference = tmp_path / "reference.safetensors"
    reference.write_bytes(full.final.read_bytes())
    assert full.steps == 24  # 4 images x 2 repeats x 3 epochs

    part = train(project, cfg, stop_after_steps=11)  # 11 of 24 steps: stops inside epoch 2
    assert part.interrupted and part.steps == 11
    assert (project.state_dir / STATE_FILE).is_file()
    assert [p.name for p in part.checkpoints] == ["zkx-000001.safetensors"]
    resumed = train(project, cfg, resume=True)
    assert not resumed.interrupted and resumed.steps == 24
    assert [p.name for p in resumed.checkpoints] == ["zkx-000001.safetensors", "zkx-000002.safetensors",
                                                     "zkx.safetensors"]
    assert _same_tensors(reference, resumed.final)
    meta = read_lora_metadata(resumed.final)
    assert meta["ss_steps"] == "24" and meta["ss_epoch"] == "3"


def test_resume_without_state_is_a_clear_error(tiny_project):
    project, cfg = tiny_project
    with pytest.raises(FileNotFoundError, match="no saved state"):
        train(project, cfg, resume=True)


def test_a_new_run_keeps_the_previous_runs_files(tiny_project):
    project, cfg = tiny_project
    first = train(project, cfg)
    old_bytes = first.final.read_bytes()
    second = train(project, cfg)
    assert second.moved_aside, "the earlier checkpoints were moved aside, not overwritten"
    kept = [p for p in second.moved_aside if p.name == "zkx.safetensors"]
    assert kept and kept[0].read_bytes() == old_bytes
    assert kept[0].parent.parent == project.output_dir / "previous"


def test_loss_log_and_save_last_k(tiny_project):
    project, cfg = tiny_project
    cfg.training.max_train_epochs = 3
    cfg.saving.save_last_k = 1
    result = train(project, cfg)
    rows = [json.loads(line) for line in (project.logs_dir / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, result.steps + 1))
    assert all(r["loss"] > 0 for r in rows)
    names = sorted(p.name for p in project.output_dir.glob("*.safetensors"))
    assert names == ["zkx-000002.safetensors", "zkx.safetensors"]


def test_rerun_in_the_same_process_is_warm(tiny_project):
    """The base model and latent cache stay loaded: the second run starts without loading anything again."""
    from lorakit.models import loading as models

    project, cfg = tiny_project
    models.clear_cache()
    train(project, cfg)
    cached = dict(models._CACHE)
    cfg.optimizer.unet_lr = 5e-4
    train(project, cfg)
    assert dict(models._CACHE) == cached and len(cached) == 1
    base = next(iter(cached.values()))
    from peft.tuners.tuners_utils import BaseTunerLayer

    assert not any(isinstance(m, BaseTunerLayer) for m in base.unet.modules()), "adapters removed after the run"


@pytest.mark.slow
def test_two_processes_agree_and_only_the_main_one_writes(tiny_project):
    """accelerate launch --multi_gpu --num_processes 2 on CPU (gloo): two real processes, one set of files."""
    from lorakit.train.launch import launch_command

    project, cfg = tiny_project
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = launch_command(project.root, num_processes=2, max_steps=3) + ["--print-checksum"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # the two processes share one pipe, so a line may be cut into by the other's output: match, don't split
    ranks = dict(re.findall(r"rank (\d/2) weights checksum: ([0-9a-f]{16})", out.stdout))
    assert set(ranks) == {"0/2", "1/2"}, out.stdout
    assert len(set(ranks.values())) == 1, f"processes disagree: {ranks}"
    files = sorted(p.name for p in project.output_dir.glob("*.safetensors"))
    assert files == ["zkx.safetensors"]
    rows = (project.logs_dir / "loss.jsonl").read_text().splitlines()
    assert len(rows) == 3, "one log line per step: only the main process writes"
    meta = read_lora_metadata(project.output_dir / "zkx.safetensors")
    assert meta["ss_total_batch_size"] == "2"


def test_sigterm_saves_state_and_resume_finishes(tiny_project):
    """The CLI stops cleanly on SIGTERM (state saved at the current step), and --resume completes the run."""
    project, cfg = tiny_project
    cfg.training.max_train_epochs = 40  # long enough to be stopped
    cfg.save(project.config_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lorakit", "train", str(project.root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    log = project.logs_dir / "loss.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr[-3000:]
    assert "--resume" in stdout
    state = load_state(project.state_dir / STATE_FILE)
    stopped_at = state["step"]
    assert 3 <= stopped_at < 320
    cfg.training.max_train_epochs = 2  # finish quickly: the resumed run completes epochs 1-2 (16 steps)
    cfg.save(project.config_path)
    if stopped_at >= 16:
        return  # stopped after the shortened run's end: nothing left to resume (still a valid outcome)
    done = subprocess.run([sys.executable, "-m", "lorakit", "train", str(project.root), "--resume"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (project.output_dir / "zkx.safetensors").is_file()
    assert read_lora_metadata(project.output_dir / "zkx.safetensors")["ss_steps"] == "16"


@pytest.mark.gpu
def test_cuda_bf16_checkpointing_run(tiny_project):
    """On CUDA: bf16 autocast over a bf16 base, fp32 adapter weights, gradient checkpointing, fused AdamW."""
    project, cfg = tiny_project
    cfg.training.mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    cfg.training.gradient_checkpointing = True
    torch.cuda.reset_peak_memory_stats()
    result = train(project, cfg)
    assert result.final.is_file() and all(torch.isfinite(torch.tensor(result.losses)))
    assert torch.cuda.max_memory_allocated() > 0
    tensors = load_file(result.final)
    assert all(t.dtype == torch.float32 for k, t in tensors.items() if k.endswith(".weight"))  # save_precision float
