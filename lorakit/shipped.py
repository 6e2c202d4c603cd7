"""The files that ship with lorakit: the demo (``data/``) and the five notebooks, in a checkout or an installed wheel.

    from lorakit.shipped import shipped_dir
    shipped_dir("data") / "toy-base"       # the toy base model
    shipped_dir("notebooks")               # 00_setup_check.ipynb ... 04_evaluate_xy_grid.ipynb

The repository keeps ``data/`` and ``notebooks/`` beside the package; the wheel carries them inside it as
``lorakit/data`` and ``lorakit/notebooks`` (setup.py's build step). Both are found the same way: first inside the
package (importlib.resources), then beside it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lorakit.files import atomic_write_bytes, atomic_write_text

__all__ = ["SHIPPED", "NotebookCopy", "copy_notebooks", "shipped_dir"]

SHIPPED = ("data", "notebooks")  # folder names, the same in the repository and inside the installed package


def shipped_dir(name: str) -> Path:
    """The folder ``name`` ("data" or "notebooks"): $LORAKIT_DATA for data if set, else inside the package, else beside it."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped folder {name!r}; there are {', '.join(SHIPPED)}")
    if name == "data" and os.environ.get("LORAKIT_DATA"):
        return Path(os.environ["LORAKIT_DATA"])
    inside = Path(str(resources.files("lorakit") / name))  # a wheel unpacks to real files, so this is a plain path
    if inside.is_dir():
        return inside
    return Path(__file__).resolve().parent.parent / name  # a checkout: the repository's top level


MANIFEST = ".lorakit-notebooks.json"  # in the copy's folder: {name: sha256 of the version lorakit wrote there}


@dataclass
class NotebookCopy:
    """What ``copy_notebooks`` did, one list of file names per outcome."""

    folder: Path
    copied: list[str] = field(default_factory=list)  # new in the folder
    updated: list[str] = field(default_factory=list)  # lorakit's older copy, unchanged since, replaced
    up_to_date: list[str] = field(default_factory=list)  # already the shipped version
    skipped: list[str] = field(default_factory=list)  # changed by the user: kept as it is

    def summary(self) -> str:
        lines = [f"{label}: {', '.join(names)}" for label, names in (
            ("copied", self.copied), ("updated", self.updated), ("up to date", self.up_to_date)) if names]
        if self.skipped:
            lines.append(f"skipped (you changed them; kept as they are): {', '.join(self.skipped)} - to get lorakit's "
                         "version, rename or delete yours and run this again")
        lines.append(f"open them: jupyter lab {self.folder}")
        return "\n".join(lines)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copy_notebooks(folder: str | os.PathLike) -> NotebookCopy:
    """Copy the five notebooks into ``folder`` (created if missing); a notebook there that differs from every version
    lorakit wrote is never overwritten: it is listed in ``skipped``."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(errno.EEXIST, "not a folder; give a folder for the notebooks", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    try:
        written: dict[str, str] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        written = {}
    done = NotebookCopy(folder)
    for source in sorted(shipped_dir("notebooks").glob("[0-9][0-9]_*.ipynb")):
        data, target = source.read_bytes(), folder / source.name
        if not target.exists():
            atomic_write_bytes(target, data)
            done.copied.append(source.name)
        else:
            current = _sha256(target.read_bytes())
            if current == _sha256(data):
                done.up_to_date.append(source.name)
            elif current == written.get(source.name):
                atomic_write_bytes(target, data)
                done.updated.append(source.name)
            else:
                done.skipped.append(source.name)
                continue
        written[source.name] = _sha256(data)
    atomic_write_text(manifest_path, json.dumps(written, indent=1, sort_keys=True) + "\n")
    return done
