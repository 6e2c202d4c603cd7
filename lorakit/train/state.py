"""Resumable training state: adapter, optimizer, scheduler, RNG and position; tensors and JSON, never a pickle.

    save_state(project.state_dir / STATE_FILE, state)     # state.safetensors + state.json, both or neither valid
    state = load_state(project.state_dir / STATE_FILE)    # a pickle (an old state.pt) is refused, never opened

Every tensor goes to ``state.safetensors`` under a dotted key (``optimizer.state.0.exp_avg``); everything else
(position, losses, param groups, scheduler, Python/NumPy RNG) goes to ``state.json``, written last and holding the
sha256 of the tensors file, so a half-written pair is a clear error. Neither format can run code when read.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lorakit.errors import ResumeError
from lorakit.files import atomic_path, atomic_write_text

STATE_FILE = "state.safetensors"
LEGACY_STATE_FILE = "state.pt"  # lorakit before 0.x: a pickle, refused
FORMAT = "lorakit-train-state/1"
REQUIRED = ("network", "optimizer", "scheduler", "rng", "step", "epoch", "batch_in_epoch", "session_id")
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ and torch.save's zip container


def rng_state(noise_gen: torch.Generator) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "noise": noise_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], noise_gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    noise_gen.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def json_path(path: str | Path) -> Path:
    """The JSON half of a state: ``state.safetensors`` -> ``state.json``."""
    return Path(path).with_suffix(".json")


def state_files(path: str | Path) -> list[Path]:
    """The files of the state at ``path`` that exist (to move a run aside): tensors, JSON, an old pickle."""
    path = Path(path)
    return [p for p in (path, json_path(path), path.with_name(LEGACY_STATE_FILE)) if p.is_file()]


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Training state (adapter, optimizer, scheduler, RNG, position) as safetensors + JSON, atomically."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    tree = {key: _encode(value, key, tensors) for key, value in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        digest = _sha256(tmp)
    # the JSON last: until it names the new tensors' digest, the pair reads as unfinished
    atomic_write_text(json_path(path), json.dumps({"format": FORMAT, "tensors": path.name, "sha256": digest,
                                                   "state": tree}, allow_nan=False, ensure_ascii=False))
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """The state ``save_state`` wrote; anything else (a pickle, a half-written or edited pair) is a ResumeError."""
    path = Path(path)
    legacy = path.with_name(LEGACY_STATE_FILE)
    if not path.is_file() and legacy.is_file():
        path = legacy  # only to refuse it by name
    if not path.is_file():
        raise ResumeError(f"--resume: no saved state at {path}; start without --resume.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix in (".pt", ".pth", ".ckpt", ".bin", ".pkl") or head.startswith(_PICKLE_MAGIC):
        raise ResumeError(f"{path} is a pickle (an older lorakit's state, or not lorakit's), which could run code "
                          "if loaded, so lorakit never opens it: start without --resume (or retrain).")
    meta_path = json_path(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        assert isinstance(meta, dict) and meta.get("format") == FORMAT and isinstance(meta.get("state"), dict)
    except (OSError, ValueError, AssertionError):
        raise ResumeError(f"{meta_path} is missing or is not a lorakit training state: start without --resume "
                          "(the checkpoints in output/ are kept).") from None
    if meta.get("sha256") != _sha256(path):
        raise ResumeError(f"{path} does not match {meta_path.name} (saving was interrupted, or a file was replaced): "
                          "start without --resume.")
    try:
        tensors = load_file(str(path), device="cpu")
        state = {key: _decode(value, tensors) for key, value in meta["state"].items()}
    except Exception as e:  # a corrupt header, a missing tensor, a malformed tree
        raise ResumeError(f"{path} cannot be read as a training state ({e}): start without --resume.") from None
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ResumeError(f"{meta_path} lacks {', '.join(missing)}: start without --resume.")
    return state


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- nested values <-> JSON + named tensors -------------------------------------------------------------
# JSON has no tuples, int keys, arrays or inf; these small tagged objects keep them, so a state comes back equal.
def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name, n = key, 1
        while name in tensors:
            name, n = f"{key}#{n}", n + 1
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return _encode(value.item(), key, tensors)
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        items = [[k, _encode(v, f"{key}.{k}", tensors)] for k, v in value.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return dict(items)
        return {"__items__": [[_encode(k, key, tensors), v] for k, v in items]}
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"training state at {key!r}: {type(value).__name__} has no safe file form")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return np.asarray(value["data"], dtype=np.dtype(value["__ndarray__"])).reshape(value["shape"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    return {k: _decode(v, tensors) for k, v in value.items()}
