"""Atomic file writes: a crash mid-write never leaves a broken file under the final name."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
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


def _temp_prefix(name: str) -> str:
    """``.name.`` for the temporary file, shortened so that a name near the 255-byte limit still gets one."""
    raw = os.fsencode(name)
    if len(raw) <= _NAME_MAX - 32:  # room for mkstemp's 8 random characters, the dots and ".tmp"
        return f".{name}."
    return "." + os.fsdecode(raw[: _NAME_MAX - 32]).encode("utf-8", "ignore").decode("utf-8", "ignore") + "."


_NAME_MAX = 255  # bytes in one file name on ext4, NTFS, APFS and most other file systems


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
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
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


def explain_os_error(error: OSError) -> str:
    """One sentence for a file-system error: what failed, on which file, and what to do about it."""
    where = printable(error.filename) if error.filename is not None else "a file"
    reason = error.strerror or type(error).__name__
    advice = {
        errno.EACCES: "give yourself access to it, or choose a folder of your own",
        errno.EPERM: "give yourself access to it, or choose a folder of your own",
        errno.EROFS: "the drive is mounted read-only; choose a project folder on a writable drive",
        errno.ENAMETOOLONG: f"file names may have at most {_NAME_MAX} bytes here; rename the file shorter",
        errno.ENOSPC: "the disk is full; free some space (old checkpoints in output/ are large) and run again",
        errno.EDQUOT: "your disk quota is used up; free some space and run again",
        errno.ENOENT: "check the path",
        errno.EISDIR: "give a file, not a folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    }.get(error.errno or 0)
    sentence = f"{reason}: {where}"
    return f"{sentence}; {advice}." if advice else f"{sentence}."
