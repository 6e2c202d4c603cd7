"""Where a run's files go: an earlier run's files are kept aside, old numbered checkpoints pruned, an interrupted
run's weights kept as ``name-interrupted.safetensors`` (a LoRA to try until a resumed run finishes).

    moved = keep_previous_run(project, "mylora")   # output/previous/<stamp>/...
    print(interrupted_message(project, "mylora", result, "lorakit train my-project --resume"))
"""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path

from lorakit.project import EMA_SUFFIX, Project, checkpoint_index, raw_stem
from lorakit.train.events import TrainResult

INTERRUPTED_SUFFIX = "-interrupted"  # not a number: Project.checkpoints lists it after the final file, last


EMBEDDINGS_DIR = "embeddings"  # output/embeddings/<trigger>.safetensors (pivotal tuning)


def keep_previous_run(project: Project, output_name: str) -> list[Path]:
    """A new run never overwrites an earlier one: its checkpoints and state move to output/previous/<stamp>/."""
    old: list[Path] = project.checkpoints(output_name)
    if not old:
        return []
    state = sorted(project.state_dir.glob("*")) if project.state_dir.is_dir() else []
    old += [p for p in (*state, project.logs_dir / "loss.jsonl", project.validation_log) if p.is_file()]
    old += [p for p in project.samples_dir.glob("*") if p.is_dir()]
    old += [d for d in (project.output_dir / EMBEDDINGS_DIR,) if d.is_dir()]  # pivotal tuning's embedding files
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, n = project.output_dir / "previous" / stamp, 1
    while dest.exists():
        dest, n = project.output_dir / "previous" / f"{stamp}-{n}", n + 1
    dest.mkdir(parents=True)
    return [p.rename(dest / p.name) for p in old]


def prune(paths: list[Path], keep: int) -> None:
    """Keep only the newest ``keep`` numbered checkpoints (the final file is never pruned); an EMA file goes with
    its raw one (both count as one checkpoint)."""
    if not keep:
        return
    numbered = [p for p in paths if checkpoint_index(p.stem) is not None]  # epoch and step saves alike
    saves = list(dict.fromkeys(raw_stem(p.stem) for p in numbered))  # in the order they were written
    for old in [p for p in numbered if raw_stem(p.stem) in saves[:-keep]]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
        paths.remove(old)


def interrupted_path(output_dir: Path, output_name: str) -> Path:
    """The raw weights of an interrupted run: output/name-interrupted.safetensors (its EMA twin: ema_path)."""
    return Path(output_dir) / f"{output_name}{INTERRUPTED_SUFFIX}.safetensors"


def interrupted_files(output_dir: Path, output_name: str) -> list[Path]:
    """The interrupted run's LoRA files that exist: raw, then -ema."""
    raw = interrupted_path(output_dir, output_name)
    return [p for p in (raw, raw.with_name(f"{raw.stem}{EMA_SUFFIX}{raw.suffix}")) if p.is_file()]


def drop_interrupted(output_dir: Path, output_name: str) -> list[Path]:
    """Delete the -interrupted file(s) of ``output_name`` once a resumed run has finished: its final file
    supersedes them, and left there they would sort after it as 'the last LoRA'. Nothing else is touched."""
    gone = interrupted_files(output_dir, output_name)
    for p in gone:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return gone


def interrupted_message(project: Project, output_name: str, result: TrainResult, resume_command: str) -> str:
    """What an interrupted run tells the user: where it stopped, the state, the LoRA to try, how to resume."""
    lines = [f"Training stopped at step {result.steps} (epoch {result.epochs}): interrupted."]
    if result.state_path is not None:
        lines.append(f"  state to resume from: {result.state_path}")
    loras = interrupted_files(project.output_dir, output_name)
    lines += [f"  LoRA to try now:      {p}" for p in loras]
    if not loras and result.steps == 0:
        lines.append("  no LoRA file written: it stopped before the first optimizer step, nothing was learned yet")
    if result.state_path is not None:
        lines.append(f"  resume with:          {resume_command}")
    else:  # saving.save_state = false: nothing to continue from
        lines.append("  no state saved (saving.save_state is off): a new run starts again from step 0")
    return "\n".join(lines)


def resume_command(project: Path | str) -> str:
    """The exact command that continues an interrupted run of ``project`` (quoted for a shell)."""
    return f"lorakit train {shlex.quote(str(project))} --resume"
