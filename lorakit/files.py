"""Atomic file writes: a crash mid-write never leaves a broken file under the final name."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; a saved LoRA gets the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def printable(name: str | os.PathLike) -> str:
    """A file name as valid UTF-8 text: bytes that are not UTF-8 shown escaped (``caf\\xe9.png``), never an error."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def create_new(path: str | Path, write) -> bool:
    """Write a new file atomically with ``write(tmp_path)``, never replacing one: False (nothing written) when
    ``path`` already exists, even if another program creates it meanwhile."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # the usual permissions (0644), not mkstemp's 0600
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(tmp_path, path)  # a hard link fails if the name is taken: the one step that cannot overwrite
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links (FAT, exFAT, some network drives)
            if path.exists():
                return False
            os.replace(tmp_path, path)
        return True
    finally:
        tmp_path.unlink(missing_ok=True)
