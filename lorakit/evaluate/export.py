"""Copy a trained LoRA into the user's AUTOMATIC1111, Forge or ComfyUI LoRA folder, with A1111's sidecar.

    from lorakit.evaluate.export import export_lora
    done = export_lora(project, strength=0.8)                       # the last LoRA, into the first install found
    done = export_lora(project, "output/x-000004.safetensors", to="~/ComfyUI/models/loras")
    print(done.summary())

    lorakit export PROJECT [--lora FILE] [--to DIR] [--strength S]

A file already there is never replaced: the copy takes the next free name (``x-1.safetensors``, ``x-2``, ...); the
same bytes already there are not copied twice. Beside the copy goes ``<name>.json``, the file A1111's Lora tab
reads and its metadata editor writes: "activation text" (the trigger words, added to the prompt with the LoRA),
"preferred weight" (the strength it inserts), "sd version" (which base models it lists the LoRA for) and a
description. ComfyUI ignores the sidecar; it reads the LoRA file's own ss_* metadata.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import ExportError
from lorakit.evaluate.grid_spec import Cell
from lorakit.evaluate.judge import trigger_words
from lorakit.files import create_new
from lorakit.lora.file import dora_layout, read_lora_metadata
from lorakit.models.loading import DEMO_MODEL_DIR
from lorakit.models.user_folders import find_user_folders, install_app, lora_destination
from lorakit.project import Project

__all__ = ["Exported", "a1111_sidecar", "export_choice", "export_lora", "sd_version"]

NOT_FOUND = ("No AUTOMATIC1111, Forge or ComfyUI install was found (lorakit looks for stable-diffusion-webui, "
             "stable-diffusion-webui-forge and ComfyUI in the home folder, ~/Documents, ~/AI, ~/Desktop and /opt)")


@dataclass
class Exported:
    """What an export did: the copy and its sidecar (None when nothing was copied, with the reason in ``note``)."""

    lora: Path | None = None
    sidecar: Path | None = None
    note: str = ""

    def summary(self) -> str:
        if self.lora is None:
            return self.note
        lines = [f"LoRA: {self.lora}", f"A1111 card: {self.sidecar}" if self.sidecar else "", self.note]
        return "\n".join(line for line in lines if line)


def sd_version(metadata: dict[str, str]) -> str:
    """A1111's name for the base model family of a LoRA ("SD1", "SD2", "SDXL"), told from its ss_* metadata the
    way A1111 tells it (an sdxl_* ss_base_model_version, else ss_v2), "Unknown" without metadata."""
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):  # kohya: sdxl_base_v1-0
        return "SDXL"
    if str(metadata.get("ss_v2", "")).lower() == "true":
        return "SD2"
    return "SD1" if metadata else "Unknown"


def a1111_sidecar(metadata: dict[str, str], triggers: list[str], strength: float, source: str = "") -> dict:
    """The ``<name>.json`` A1111's Lora tab reads, with the keys its metadata editor writes."""
    facts = [f"{metadata[k]} {label}" for k, label in (("ss_num_train_images", "images"), ("ss_epoch", "epochs"),
                                                        ("ss_steps", "steps")) if metadata.get(k)]
    base = metadata.get("ss_sd_model_name", "")
    on = f" on {base}" if base else ""
    counts = f" ({', '.join(facts)})" if facts else ""
    return {
        "description": f"Trained with lorakit{on}{counts}.",
        "sd version": sd_version(metadata),
        "activation text": ", ".join(triggers),
        "preferred weight": float(strength),
        "negative text": "",
        "notes": f"Copied from {source}." if source else "",
    }


def export_lora(project: Project, lora: str | Path | None = None, *, to: str | Path | None = None,
                strength: float | None = None) -> Exported:
    """Copy ``lora`` (default: the project's last LoRA) into the LoRA folder ``to`` (default: the first install
    found), with its A1111 sidecar; ``strength`` is the suggested weight (None or 0: 1.0)."""
    src = _lora_file(project, lora)
    metadata = _metadata(src)
    folder = lora_destination(to) if to else _first_lora_folder()
    dora_note = _check_dora_reader(src, folder)
    sidecar = a1111_sidecar(metadata, trigger_words(project), strength or 1.0, str(src))
    text = json.dumps(sidecar, indent=4, ensure_ascii=False) + "\n"
    for n in range(1000):
        dest = folder / (f"{src.stem}-{n}{src.suffix}" if n else src.name)
        card = dest.with_suffix(".json")
        if dest.exists():
            if filecmp.cmp(src, dest, shallow=False):  # the same file, copied before: once is enough
                made = not card.exists() and create_new(card, lambda tmp: tmp.write_text(text, encoding="utf-8"))
                return Exported(dest, card if card.exists() else None, f"already in {folder}: not copied again"
                                + ("; its A1111 card was added" if made else ""))
            continue
        if card.exists() or not create_new(dest, lambda tmp: shutil.copyfile(src, tmp)):
            continue  # taken (a card of another file, or a file made meanwhile): the next name
        made = create_new(card, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        taken = f" ({src.name} was taken there)" if n else ""
        return Exported(dest, card if made else None, f"copied to {folder}{taken}; in A1111 or Forge: "
                        f"<lora:{dest.stem}:{sidecar['preferred weight']:g}> {sidecar['activation text']}".rstrip()
                        + dora_note)
    raise ExportError(f"{folder} already holds {src.stem}-1 ... {src.stem}-999: tidy it up, or give another --to.")


def export_choice(project: Project, cell: Cell | None, to: str = "auto", base_model: str = "") -> Exported:
    """Notebook 04: copy the chosen cell's LoRA at its strength. ``to``: "auto" (the first install found; not for
    the demo's LoRA, which only the demo's tiny model can use), a LoRA folder, or "" (do not copy)."""
    if not to:
        return Exported(note="not copied (EXPORT_TO is empty)")
    if to == "auto":
        if not base_model or Path(base_model).expanduser().resolve() == DEMO_MODEL_DIR.resolve():
            return Exported(note="not copied: the demo's LoRA works only with the demo's tiny model "
                                 "(set EXPORT_TO to a models/Lora folder to copy it anyway)")
        if not any(f.loras for f in find_user_folders()):
            return Exported(note=NOT_FOUND + ": set EXPORT_TO to your models/Lora (or models/loras) folder, or "
                                             "$LORAKIT_WEBUI_DIR / $LORAKIT_COMFYUI_DIR to your install.")
    checkpoint, strength = (cell.checkpoint, cell.strength) if cell else (None, None)
    return export_lora(project, checkpoint, to=None if to == "auto" else to, strength=strength)


# ---- helpers ----------------------------------------------------------------------------------------------
def _lora_file(project: Project, lora: str | Path | None) -> Path:
    if lora is None:
        files = project.checkpoints()
        if not files:
            raise ExportError(f"No LoRA in {project.output_dir}: train first (notebook 03, or lorakit train).")
        return files[-1]
    path = Path(lora).expanduser()
    path = path if path.is_absolute() or path.exists() else project.root / path
    if not path.is_file():
        raise ExportError(f"{path} is not a file: give a LoRA .safetensors file (see {project.output_dir}).")
    if path.suffix.lower() != ".safetensors":
        raise ExportError(f"{path.name}: only .safetensors LoRA files are copied (the format A1111 and ComfyUI read).")
    return path


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import SafetensorError

    try:
        return read_lora_metadata(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ExportError(f"{path.name} is not a readable .safetensors file ({e}); nothing was copied.") from e


def _check_dora_reader(src: Path, folder: Path) -> str:
    """A DoRA file with one magnitude per output row (lorakit's) drawn by a client that normalises per input
    column comes out wrong: refuse AUTOMATIC1111 before copying; for Forge, whose builds differ, say so."""
    if dora_layout(src) != "output":
        return ""
    app = install_app(folder)
    if app == "AUTOMATIC1111":
        raise ExportError(f"{src.name} is a DoRA file with one magnitude per output row (PEFT's and LyCORIS' "
                          "wd_on_out layout); AUTOMATIC1111 always normalises DoRA per input column and would draw "
                          "it wrongly. Use it in ComfyUI (pass --to its models/loras), or train with "
                          "network.type = \"lora\" or \"locon\" for A1111; nothing was copied.")
    if app == "Forge":
        return ("; note: a DoRA file — Forge builds on ComfyUI's code read its per-output magnitudes, older ones "
                "normalise per input column and draw it wrongly: compare with lorakit's preview")
    return ""


def _first_lora_folder() -> Path:
    for folder in find_user_folders():
        if folder.loras is not None:
            return folder.loras
    raise ExportError(NOT_FOUND + ": give the folder with --to (its models/Lora or models/loras), or set "
                      "LORAKIT_WEBUI_DIR / LORAKIT_COMFYUI_DIR to your install; nothing was copied.")
