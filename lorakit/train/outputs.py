"""Where a run's files go: an earlier run's files are kept aside, old numbered checkpoints pruned.

    moved = keep_previous_run(project, "mylora")   # output/previous/<stamp>/...
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from lorakit.project import Project, checkpoint_index, raw_stem


def keep_previous_run(project: Project, output_name: str) -> list[Path]:
    """A new run never overwrites an earlier one: its checkpoints and state move to output/previous/<stamp>/."""
    old: list[Path] = project.checkpoints(output_name)
    if not old:
        return []
    state = sorted(project.state_dir.glob("*")) if project.state_dir.is_dir() else []
    old += [p for p in (*state, project.logs_dir / "loss.jsonl", project.validation_log) if p.is_file()]
    old += [p for p in project.samples_dir.glob("*") if p.is_dir()]
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
