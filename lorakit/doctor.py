"""Setup check: device, VRAM, bf16, disk, library versions, base model -> rows of (check, status, advice).

    python -m lorakit doctor
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

REQUIRED = {"torch": "2.13", "diffusers": "0.35.2", "transformers": "5.0", "peft": "0.18", "accelerate": "1.0.1",
            "safetensors": "0.4", "ipywidgets": "8.0"}
OPTIONAL = {"bitsandbytes": "8-bit AdamW (saves VRAM on CUDA)", "prodigyopt": "the Prodigy optimizer",
            "dadaptation": "DAdaptation optimizers", "tensorboard": "TensorBoard logs (training.log_with)",
            "wandb": "Weights & Biases logs, offline by default", "trackio": "trackio logs",
            "pillow-heif": "HEIC photos from phones"}


@dataclass
class Row:
    check: str
    status: str  # ok | warn | fail | info
    value: str
    advice: str = ""


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def check_device() -> list[Row]:
    rows = [Row("python", "ok" if sys.version_info >= (3, 10) else "fail", platform.python_version(),
                "" if sys.version_info >= (3, 10) else "lorakit needs Python 3.10 or newer.")]
    cuda_build = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        vram = props.total_memory / 2**30
        rows.append(Row("gpu", "ok", f"{props.name} (CUDA {cuda_build}), {torch.cuda.device_count()} device(s)"))
        advice = ""
        status = "ok"
        if vram < 6:
            status, advice = "warn", "Under 6 GB: SD1.5 LoRA at 512 px with batch 1, gradient checkpointing, AdamW8bit."
        elif vram < 12:
            advice = "SD1.5/SD2 fine; for SDXL use gradient checkpointing, batch 1, AdamW8bit or Adafactor."
        rows.append(Row("vram", status, f"{vram:.1f} GB", advice))
        bf16 = torch.cuda.is_bf16_supported()
        rows.append(Row("bf16", "ok" if bf16 else "info", "supported" if bf16 else "not supported",
                        "" if bf16 else "Use mixed_precision = 'fp16' on this GPU."))
    else:
        hint = ("PyTorch is a CPU-only build: reinstall with CUDA, e.g. "
                "`pip install torch --index-url https://download.pytorch.org/whl/cu124` (Windows needs this)."
                if cuda_build is None else "No CUDA device visible: check the NVIDIA driver (`nvidia-smi`).")
        rows.append(Row("gpu", "warn", "none (CPU only)", hint + " The demo runs on CPU; real models need a GPU."))
    return rows


def check_disk(path: Path) -> Row:
    free = shutil.disk_usage(path if path.exists() else Path.cwd()).free / 2**30
    status = "ok" if free > 20 else "warn" if free > 5 else "fail"
    return Row("disk", status, f"{free:.0f} GB free at {path}",
               "" if status == "ok" else "Checkpoints, latent caches and base models need space: free 20 GB or more.")


def check_libraries() -> list[Row]:
    rows = []
    for name, minimum in REQUIRED.items():
        try:
            v = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            rows.append(Row(name, "fail", "missing", f"pip install '{name}>={minimum}'"))
            continue
        ok = _version_tuple(v) >= _version_tuple(minimum)
        rows.append(Row(name, "ok" if ok else "fail", v, "" if ok else f"pip install -U '{name}>={minimum}'"))
    for name, what in OPTIONAL.items():
        try:
            rows.append(Row(name, "ok", importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append(Row(name, "info", "not installed", f"optional, for {what}: pip install {name}"))
    return rows


def check_base_model(source: str, single_file_config: str | Path | None = None, download: bool = False) -> Row:
    """The base model as training would load it, read from its header and configs (weights never loaded)."""
    from lorakit.errors import ModelError
    from lorakit.models.inspection import inspect_base_model
    from lorakit.models.loading import hub_snapshot, is_hub_id, load_base, resolve_source

    try:
        src = resolve_source(source)
        path = Path(src).expanduser()
        if is_hub_id(src):  # from the local cache, or downloaded when asked (--download)
            path = hub_snapshot(src, download=download, retry=f"run `lorakit doctor --base-model {src} --download` "
                                "(notebook 00: tick 'download')")
        elif not path.exists():  # a typo: load_base says so, before it loads anything
            load_base(src, device="cpu")
        report = inspect_base_model(path, single_file_config)
    except (ModelError, OSError, ValueError) as e:
        return Row("base model", "fail", source or "(demo)", str(e))
    value = f"{report.summary()}; " + "; ".join(report.tokenizers) if report.tokenizers else report.summary()
    unchecked = "Not checked: " + "; ".join(report.not_checked) + "." if report.not_checked else ""
    if report.problems:
        return Row("base model", "fail", value, " ".join(report.problems))
    if report.warnings:
        return Row("base model", "warn", value, " ".join([*report.warnings, unchecked]))
    return Row("base model", "ok", value, unchecked)


def run_checks(base_model: str = "", project: str | Path | None = None,
               single_file_config: str | Path | None = None, download: bool = False) -> list[Row]:
    """All checks, in the order the setup notebook shows them."""
    rows = check_device()
    rows.append(check_disk(Path(project) if project else Path.cwd()))
    rows += check_libraries()
    rows.append(check_base_model(base_model, single_file_config, download))
    return rows
