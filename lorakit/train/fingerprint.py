"""What a saved state was trained on, so that ``--resume`` continues the same run or says what changed.

    fp = run_fingerprint(project, cfg, world=1)    # settings, dataset, base model: plain JSON, saved in the state
    problems = changes(saved_fp, fp)               # ["network.rank 16 -> 32", "2 images changed (a.png, b.png)"]

Three parts, each compared on its own:

* **settings**: the ones that shape the network (type, ranks, alphas, which models get adapters) or the order
  and size of the batches (batch size, seed, repeats, flips, buckets, accumulation, processes) or the
  optimizer's state (its name). A changed learning rate, sample prompt or epoch count is not one of them:
  resuming with those is how a run is extended or tuned, and the state still fits.
* **dataset**: every training, regularization and validation image by its path in the project, with the
  sha256 of its bytes, the digest of its caption and its repeats.
* **base model**: its path, and for a single file A1111's short hash (64 KiB read, not the whole file), so a
  model that was moved still matches and one that was replaced under the same name does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lorakit.config.schema import TrainConfig
from lorakit.dataset.scan import IMAGE_EXTENSIONS, scan_dataset
from lorakit.lora.file import model_hash_short
from lorakit.project import Project

SETTINGS = (  # (section, field): what a resumed run must share with the saved one
    ("network", "type"), ("network", "rank"), ("network", "alpha"), ("network", "conv_rank"),
    ("network", "conv_alpha"), ("network", "train_unet"), ("network", "embedding_vectors"),
    ("training", "train_batch_size"), ("training", "seed"),
    ("data", "repeats"), ("data", "flip_aug"), ("data", "resolution"), ("data", "enable_bucket"),
    ("data", "min_bucket_reso"), ("data", "max_bucket_reso"), ("data", "bucket_reso_steps"),
    ("data", "bucket_no_upscale"), ("data", "caption_extension"), ("data", "max_token_length"),
    ("optimizer", "optimizer"), ("optimizer", "gradient_accumulation_steps"),
    ("validation", "enabled"), ("validation", "split"), ("validation", "dir"), ("validation", "noise_seed"),
)
SHOWN = 3  # file names named in a message; the rest are counted


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def settings_part(cfg: TrainConfig, world: int = 1) -> dict[str, Any]:
    out = {f"{section}.{name}": getattr(getattr(cfg, section), name) for section, name in SETTINGS}
    out["text encoder trained"] = cfg.train_text_encoder
    out["processes"] = world
    return out


def dataset_part(project: Project, cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """{image path in the project: {"sha256", "caption", "repeats"}} for every image a run could read."""
    d, v = cfg.data, cfg.validation
    files: dict[str, dict[str, Any]] = {}
    root = project.root.resolve()

    def add(path: Path, caption: str, repeats: int) -> None:
        full = path.resolve()
        name = full.relative_to(root).as_posix() if full.is_relative_to(root) else str(full)
        files[name] = {"sha256": _sha256(path), "repeats": repeats,
                       "caption": hashlib.sha256(caption.encode("utf-8")).hexdigest()[:16]}

    for folder, is_reg in ((d.dataset_dir, False), (d.reg_dir, True)):
        if folder and project.resolve(folder).is_dir():
            for it in scan_dataset(project.resolve(folder), d.caption_extension, is_reg=is_reg,
                                   repeats_override=d.repeats).items:
                add(Path(it.path), it.caption, it.repeats)
    if v.enabled and v.dir and project.resolve(v.dir).is_dir():  # images in it or one folder down, as validation reads
        folder = project.resolve(v.dir)
        for path in sorted(p for p in [*folder.glob("*"), *folder.glob("*/*")]
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")):
            cap = path.with_suffix(d.caption_extension)
            add(path, cap.read_text(encoding="utf-8", errors="replace") if cap.is_file() else "", 1)
    return files


def base_part(cfg: TrainConfig) -> dict[str, str]:
    source = cfg.model.base_model
    return {"model": source, "hash": model_hash_short(source)}


def run_fingerprint(project: Project, cfg: TrainConfig, world: int = 1) -> dict[str, Any]:
    return {"settings": settings_part(cfg, world), "dataset": dataset_part(project, cfg), "base": base_part(cfg)}


def _names(names: list[str]) -> str:
    shown = ", ".join(Path(n).name for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a saved fingerprint and this run's, one short phrase each (empty: the same run)."""
    out: list[str] = []
    old_s, new_s = saved.get("settings", {}), now.get("settings", {})
    for key in sorted(set(old_s) | set(new_s)):
        if old_s.get(key) != new_s.get(key):
            out.append(f"{key} {old_s.get(key)!r} -> {new_s.get(key)!r}")
    old_d, new_d = saved.get("dataset", {}), now.get("dataset", {})
    gone = sorted(set(old_d) - set(new_d))
    added = sorted(set(new_d) - set(old_d))
    both = sorted(set(old_d) & set(new_d))
    edited = [n for n in both if old_d[n]["sha256"] != new_d[n]["sha256"]]
    recaptioned = [n for n in both if n not in edited and old_d[n]["caption"] != new_d[n]["caption"]]
    repeated = [n for n in both if old_d[n]["repeats"] != new_d[n]["repeats"]]
    for names, what in ((gone, "removed"), (added, "added"), (edited, "changed")):
        if names:
            out.append(f"{len(names)} image{'s' if len(names) != 1 else ''} {what} ({_names(names)})")
    if recaptioned:
        out.append(f"{len(recaptioned)} caption{'s' if len(recaptioned) != 1 else ''} changed ({_names(recaptioned)})")
    if repeated:
        out.append(f"the repeats of {len(repeated)} image{'s' if len(repeated) != 1 else ''} changed "
                   f"({_names(repeated)})")
    old_b, new_b = saved.get("base", {}), now.get("base", {})
    if old_b.get("hash") and new_b.get("hash"):
        if old_b["hash"] != new_b["hash"]:
            out.append(f"the base model is another file ({old_b.get('model')} had hash {old_b['hash']}, "
                       f"{new_b.get('model')} has {new_b['hash']})")
    elif old_b.get("model") != new_b.get("model"):
        out.append(f"the base model {old_b.get('model')!r} -> {new_b.get('model')!r}")
    return out


def check_resumable(state_json: Path, now: dict[str, Any], project_arg: str = "PROJECT") -> str:
    """Raise ResumeError with one sentence when the saved state at ``state_json`` was trained on something else
    than ``now``; returns a note for a state saved before fingerprints (not checked), else "". A missing or
    unreadable state is left to load_state, which says so."""
    import json

    from lorakit.errors import ResumeError

    try:
        state = json.loads(Path(state_json).read_text(encoding="utf-8"))["state"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    saved = state.get("fingerprint")
    if not isinstance(saved, dict):
        return "the saved state predates resume checks: settings and dataset were not compared"
    found = changes(saved, now)
    if not found:
        return ""
    lora = next((Path(p) for p in reversed(state.get("checkpoints") or []) if Path(p).is_file()), None)
    keep = (f", or keep what it learned in a new run with `lorakit train {project_arg} --init-from {lora}`"
            if lora is not None and not any(c.startswith("network.") for c in found) else "")
    raise ResumeError(f"--resume: the saved state was trained with something else, so it cannot go on: "
                      f"{'; '.join(found)}. Put {'it' if len(found) == 1 else 'them'} back to continue that run, "
                      f"or start a new one without --resume (the old run's files are moved aside){keep}.")
