"""Run training in other processes: several GPUs from a notebook, or any run that must survive the kernel.

    launch_training(project, num_processes=2)    # accelerate launch --multi_gpu ... -m lorakit train PROJECT

``accelerate.notebook_launcher`` hangs inside a Jupyter kernel on CPU, and forking a kernel that has touched
CUDA is unsafe, so lorakit starts ``accelerate launch`` as a subprocess and streams its output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from lorakit.train.events import TrainResult


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(project: str | Path, num_processes: int, resume: bool = False, max_steps: int = 0,
                   cpu: bool = False) -> list[str]:
    """The accelerate command line for a multi-process run (``--multi_gpu`` also works on CPU, with gloo)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--dynamo_backend", "no",
           "--mixed_precision", "no", "--main_process_port", str(free_port())]
    if num_processes > 1:
        cmd += ["--multi_gpu", "--num_processes", str(num_processes)]
    elif cpu:
        cmd += ["--cpu", "--num_processes", "1"]
    cmd += ["-m", "lorakit", "train", str(project)]
    if resume:
        cmd.append("--resume")
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    return cmd


def launch_training(project: str | Path, num_processes: int, resume: bool = False, max_steps: int = 0,
                    echo=print) -> int:
    """Run the command, echo its output line by line, return its exit code (mixed precision comes from the config)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(launch_command(project, num_processes, resume, max_steps), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            echo(line.rstrip("\n"))
    except KeyboardInterrupt:  # stopping the notebook cell stops the run; it saves its state to resume from
        proc.terminate()
    return proc.wait()


def result_from_project(project, output_name: str):
    """A TrainResult read back from the files a run in other processes wrote (checkpoints, loss log)."""
    import json


    result = TrainResult(checkpoints=project.checkpoints(output_name))
    log = project.logs_dir / "loss.jsonl"
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        result.losses = [r["loss"] for r in rows]
        result.steps = rows[-1]["step"] if rows else 0
        result.epochs = rows[-1]["epoch"] if rows else 0
    return result
