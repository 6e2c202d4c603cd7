"""The user's own AUTOMATIC1111, Forge and ComfyUI installs: their checkpoints to train on, their LoRA folder.

    from lorakit.models.user_folders import find_user_folders, list_checkpoints, lora_destination
    for ckpt in list_checkpoints():            # every install found, largest files first
        print(ckpt.label())                    # "v1-5.safetensors  2.0 GB  (AUTOMATIC1111: ~/stable-diffusion-webui)"
    folder = lora_destination("~/ComfyUI/models/loras")   # refuses a folder that is not a LoRA models folder

Where lorakit looks (a short list, in this order; the first match of each install wins):
1. the paths given as arguments, then ``$LORAKIT_WEBUI_DIR`` (AUTOMATIC1111 or Forge) and ``$LORAKIT_COMFYUI_DIR``
   (each may hold several paths, separated by ``os.pathsep``): an install folder or its ``models`` folder;
2. ``stable-diffusion-webui``, ``stable-diffusion-webui-forge``, ``sd.webui/webui`` (A1111's Windows package),
   ``ComfyUI`` and ``ComfyUI_windows_portable/ComfyUI`` in the home folder, ``~/Documents``, ``~/AI``,
   ``~/Desktop``, ``/opt`` and, on Windows, ``C:\\``;
3. the folders named in each ComfyUI install's ``extra_model_paths.yaml`` (``base_path`` + ``checkpoints`` /
   ``loras``, one path per line), which is how ComfyUI users share A1111's models.

Layouts: A1111 and Forge keep checkpoints in ``models/Stable-diffusion`` and LoRAs in ``models/Lora``; ComfyUI in
``models/checkpoints`` and ``models/loras``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import ModelError

__all__ = ["Checkpoint", "UserFolder", "find_user_folders", "install_app", "list_checkpoints", "lora_destination",
           "search_places"]

WEBUI = ("models/Stable-diffusion", "models/Lora")  # AUTOMATIC1111 and Forge
COMFYUI = ("models/checkpoints", "models/loras")
INSTALL_NAMES = ("stable-diffusion-webui", "stable-diffusion-webui-forge", "sd.webui/webui", "ComfyUI",
                 "ComfyUI_windows_portable/ComfyUI")
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
LORA_FOLDER_NAMES = ("lora", "loras")  # the last part of a LoRA models folder, in any case


@dataclass(frozen=True)
class UserFolder:
    """One install's model folders (either may be None: an extra_model_paths.yaml entry may name only one)."""

    app: str  # "AUTOMATIC1111", "Forge" or "ComfyUI" (", extra_model_paths.yaml: <section>" for those)
    root: Path
    checkpoints: Path | None
    loras: Path | None

    def describe(self) -> str:
        return f"{self.app}: {_short(self.root)}"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file in a user folder; ``pickled`` ones (.ckpt) load only with model.allow_pickle."""

    path: Path
    size: int
    folder: UserFolder

    @property
    def pickled(self) -> bool:
        return self.path.suffix.lower() != ".safetensors"

    def label(self) -> str:
        warn = "  pickled: needs model.allow_pickle" if self.pickled else ""
        return f"{self.path.name}  {self.size / 1e9:.1f} GB  ({self.folder.describe()}){warn}"


def search_places(home: Path | None = None) -> list[Path]:
    """The usual install locations, in the order they are searched (see the module docstring)."""
    home = Path(home) if home else Path.home()
    bases = [home, home / "Documents", home / "AI", home / "Desktop", Path("/opt")]
    if sys.platform == "win32":
        bases.insert(0, Path("C:\\"))
    return [base / name for base in bases for name in INSTALL_NAMES]


def find_user_folders(*paths: str | os.PathLike, home: Path | None = None, search: bool = True) -> list[UserFolder]:
    """The installs at ``paths``, in ``$LORAKIT_WEBUI_DIR`` / ``$LORAKIT_COMFYUI_DIR`` and (``search``) at the usual
    places, plus the folders their ComfyUI ``extra_model_paths.yaml`` names; each folder once."""
    given = [Path(p).expanduser() for p in paths if str(p)]
    for var in ("LORAKIT_WEBUI_DIR", "LORAKIT_COMFYUI_DIR"):
        given += [Path(p).expanduser() for p in os.environ.get(var, "").split(os.pathsep) if p.strip()]
    found: list[UserFolder] = []
    for place in given + (search_places(home) if search else []):
        folder = _install_at(place)
        if folder is None:
            continue
        for f in [folder, *(_extra_model_paths(folder) if folder.app == "ComfyUI" else [])]:
            if not any(_same(f.checkpoints, g.checkpoints) and _same(f.loras, g.loras) for g in found):
                found.append(f)
    return found


def list_checkpoints(folders: list[UserFolder] | None = None) -> list[Checkpoint]:
    """The ``.safetensors`` and ``.ckpt`` files in the folders' checkpoint folders (subfolders too), largest first."""
    folders = find_user_folders() if folders is None else folders
    seen: set[Path] = set()
    out = []
    for folder in folders:
        if folder.checkpoints is None or not folder.checkpoints.is_dir():
            continue
        for path in sorted(folder.checkpoints.rglob("*")):
            if path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file() and path.resolve() not in seen:
                seen.add(path.resolve())
                out.append(Checkpoint(path, path.stat().st_size, folder))
    return sorted(out, key=lambda c: -c.size)


def lora_destination(path: str | os.PathLike) -> Path:
    """``path`` as the LoRA folder to copy into: a ``models/Lora`` or ``models/loras`` folder, or an install
    folder that has one; anything else is refused (nothing is written)."""
    path = Path(path).expanduser()
    folder = _install_at(path)
    if folder is not None and folder.loras is not None and folder.loras.is_dir():
        return folder.loras
    if path.is_dir() and path.name.lower() in LORA_FOLDER_NAMES and path.parent.name.lower() == "models":
        return path
    raise ModelError(
        f"{path} is not the LoRA folder of an AUTOMATIC1111, Forge or ComfyUI install (expected "
        "<install>/models/Lora or <install>/models/loras, which the program creates on its first start); "
        "nothing was written."
    )


def install_app(lora_folder: str | os.PathLike) -> str | None:
    """"AUTOMATIC1111", "Forge" or "ComfyUI" for an install's LoRA folder (``<install>/models/Lora``), else None."""
    folder = _install_at(Path(lora_folder).parent)
    return folder.app if folder is not None else None


# ---- helpers ----------------------------------------------------------------------------------------------
def _install_at(place: Path) -> UserFolder | None:
    """The install at ``place`` (its folder, or its ``models`` folder), or None."""
    root = place.parent if place.name.lower() == "models" else place
    if (root / WEBUI[0]).is_dir() or (root / WEBUI[1]).is_dir():
        app = "Forge" if "forge" in root.name.lower() or (root / "modules_forge").is_dir() else "AUTOMATIC1111"
        layout = WEBUI
    elif (root / COMFYUI[0]).is_dir() or (root / COMFYUI[1]).is_dir():
        app, layout = "ComfyUI", COMFYUI
    else:
        return None
    ckpt, lora = (root / rel for rel in layout)
    return UserFolder(app, root, ckpt if ckpt.is_dir() else None, lora if lora.is_dir() else None)


def _extra_model_paths(comfy: UserFolder) -> list[UserFolder]:
    """The checkpoint and LoRA folders a ComfyUI install's extra_model_paths.yaml adds (unreadable: none)."""
    config = comfy.root / "extra_model_paths.yaml"
    if not config.is_file():
        return []
    import yaml

    try:
        sections = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeError, yaml.YAMLError):
        return []
    out = []
    for name, section in sections.items() if isinstance(sections, dict) else []:
        if not isinstance(section, dict):
            continue
        base = Path(str(section.get("base_path") or comfy.root)).expanduser()
        base = base if base.is_absolute() else comfy.root / base
        ckpts, loras = (_first_dir(base, section.get(key)) for key in ("checkpoints", "loras"))
        if ckpts or loras:
            out.append(UserFolder(f"ComfyUI, extra_model_paths.yaml: {name}", base, ckpts, loras))
    return out


def _first_dir(base: Path, value) -> Path | None:
    for line in str(value or "").splitlines():
        if line.strip():
            path = Path(line.strip()).expanduser()
            path = path if path.is_absolute() else base / path
            if path.is_dir():
                return path
    return None


def _same(a: Path | None, b: Path | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.resolve() == b.resolve())


def _short(path: Path) -> str:
    """``~/...`` for paths in the home folder."""
    try:
        return "~/" + Path(path).resolve().relative_to(Path.home().resolve()).as_posix()
    except ValueError:
        return str(path)
