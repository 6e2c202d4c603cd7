"""Load a base model and describe its family, so the training loop never asks "which model is this?".

    from lorakit.models.loading import load_base
    base = load_base("")                      # the demo model that ships in data/
    base = load_base("/models/sd15")          # a diffusers folder
    base = load_base("/models/v1-5.safetensors", family="sd1")   # a single file, as in A1111's models folder

Each family (SD1, SD2, SD2-v, SDXL: lorakit/models/families/) exposes the same small interface: tokenize, encode
a prompt, the extra UNet inputs (SDXL's pooled embedding and size/crop ids), the latent scale, and the names
other tools use.
One loaded instance per (source, dtype, device) is kept per process, so a rerun in the same kernel is warm.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lorakit.errors import ModelError
from lorakit.models import families
from lorakit.models.families import Family
from lorakit.shipped import shipped_dir

__all__ = ["FAMILIES", "BaseModel", "Family", "base_model_from_env", "clear_cache", "detect_family",
           "fetch_hub_model", "hub_snapshot", "is_hub_id", "load_base", "quiet_loading", "resolve_source"]

DATA_DIR = shipped_dir("data")  # $LORAKIT_DATA, else the wheel's lorakit/data, else the checkout's data/
DEMO_MODEL_DIR = DATA_DIR / "toy-base"




# ---- families: one file each in lorakit/models/families/, registered there -------------------------------
FAMILIES = families.FAMILIES  # {name: Family}, the registry's own dict


# ---- a loaded model ------------------------------------------------------------------------------------
@dataclass
class BaseModel:
    """The parts of a pipeline that training uses, plus the pipeline itself for sampling."""

    source: str
    family: Family
    pipe: Any
    prediction_type: str
    dtype: torch.dtype
    device: torch.device
    extra: dict = field(default_factory=dict)

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def noise_scheduler(self):
        return self.extra["noise_scheduler"]

    @property
    def text_encoders(self) -> list:
        encs = [self.pipe.text_encoder]
        if getattr(self.pipe, "text_encoder_2", None) is not None:
            encs.append(self.pipe.text_encoder_2)
        return encs

    @property
    def tokenizers(self) -> list:
        toks = [self.pipe.tokenizer]
        if getattr(self.pipe, "tokenizer_2", None) is not None:
            toks.append(self.pipe.tokenizer_2)
        return toks

    @property
    def latent_scale(self) -> float:
        return self.family.latent_scale(self.vae)

    @property
    def vae_shift(self) -> float:
        return self.family.latent_shift(self.vae)

    def describe(self) -> str:
        return f"{self.family.name} ({self.prediction_type}) from {self.source}"


_CACHE: dict[tuple, BaseModel] = {}


def resolve_source(source: str | os.PathLike | None) -> str:
    """Empty means the demo model shipped in data/ (built as a tiny random model if it is missing)."""
    if source:
        return str(source)
    if (DEMO_MODEL_DIR / "model_index.json").is_file():
        return str(DEMO_MODEL_DIR)
    from lorakit.models.tiny import save_tiny_pipeline

    fallback = Path(os.environ.get("LORAKIT_CACHE", Path.home() / ".cache" / "lorakit")) / "tiny-sd1"
    if not (fallback / "model_index.json").is_file():
        save_tiny_pipeline(fallback, "sd1")
    return str(fallback)


def detect_family(pipe) -> str:
    """sd1 / sd2 / sd2-v / sdxl (or a family registered later) from the pipeline's parts."""
    return families.detect_from_pipeline(pipe).name


def load_base(
    source: str | os.PathLike | None = "",
    *,
    family: str = "auto",
    prediction_type: str = "auto",
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
    allow_download: bool = False,
    single_file_config: str | os.PathLike | None = None,
) -> BaseModel:
    """Load (or take from this process's cache) a base model; see the module docstring.

    ``single_file_config``: a diffusers folder whose configs (and tokenizers) describe a single-file checkpoint;
    without it lorakit uses the family's standard architecture and a tokenizer from the local HF cache.
    """
    src = resolve_source(source)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = (src, family, prediction_type, dtype, str(device), str(single_file_config or ""))
    if key in _CACHE:
        return _CACHE[key]
    # a hub id: its local snapshot, from the cache or (only when asked) downloaded with the hub's progress bars,
    # which must show, so this happens before quiet_loading
    local = hub_snapshot(src, download=allow_download) if is_hub_id(src) else src
    with quiet_loading():
        pipe = _load_pipeline(local, family, dtype, allow_pickle, single_file_config)
    detected = families.detect_from_pipeline(pipe)
    fam = detected if family == "auto" else families.get(family)
    if fam.layout != detected.layout:
        warnings.warn(f"{src} looks like {detected.name}, but the config says family = {family!r}.", stacklevel=2)
    model_pred = pipe.scheduler.config.get("prediction_type", "epsilon")
    pred = prediction_type if prediction_type != "auto" else (fam.prediction_type or model_pred)
    if pred != model_pred:
        warnings.warn(
            f"{src}: the model's scheduler predicts {model_pred!r} but training will use {pred!r}. "
            "A v-model (SD 2.x 768) trained as epsilon, or the reverse, learns garbage: check model.prediction_type.",
            stacklevel=2,
        )
    fam = families.with_prediction(fam, pred)
    pipe.to(device)
    for part in [pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)]:
        if part is not None:
            part.requires_grad_(False)
            part.eval()
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type=pred)
    pipe.set_progress_bar_config(disable=True)
    base = BaseModel(src, fam, pipe, pred, dtype, device, {"noise_scheduler": noise_scheduler})
    _CACHE[key] = base
    return base


def _load_pipeline(src: str, family: str, dtype, allow_pickle: bool, single_file_config=None):
    from diffusers import DiffusionPipeline

    path = Path(src).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"{path} is a folder but not a diffusers model (no model_index.json).")
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        extra = {"safety_checker": None} if "safety_checker" in index else {}  # SDXL has none: no warning
        return DiffusionPipeline.from_pretrained(path, dtype=dtype, local_files_only=True, **extra)
    if path.is_file():
        if path.suffix in (".ckpt", ".pt", ".bin") and not allow_pickle:
            raise ModelError(
                f"{path.name} is a pickled checkpoint, which can run arbitrary code when loaded. Convert it to "
                ".safetensors, or set model.allow_pickle = true if you trust where it came from."
            )
        if path.suffix not in (".safetensors", ".ckpt", ".pt", ".bin"):
            raise ModelError(f"{path.name}: expected a .safetensors (or .ckpt) checkpoint file.")
        from lorakit.models.single_file import load_single_file

        return load_single_file(path, family=family, dtype=dtype, config=single_file_config)
    raise ModelError(f"Base model {src!r} not found. Give a diffusers folder or a .safetensors file.")


# ---- hub ids: used from the local cache; downloaded only when the user asks -----------------------------
DOWNLOAD_HINT = ("add --download to the command (notebooks: set DOWNLOAD = True in the parameters cell), "
                 "or give a local folder or .safetensors file")


def is_hub_id(source: str | os.PathLike | None) -> bool:
    """``owner/name`` that is not a local path: a Hugging Face hub id."""
    src = str(source or "")
    parts = src.split("/")
    return (len(parts) == 2 and all(parts) and not src.startswith((".", "~")) and not any(c in src for c in ":\\")
            and not Path(src).expanduser().exists())


def hub_snapshot(repo_id: str, *, download: bool = False, retry: str = "") -> Path:
    """The local folder of hub model ``repo_id``: from the Hugging Face cache, or downloaded when ``download``.

    A download shows the hub's progress bars and prints where the files went. Without ``download`` and with
    nothing cached, the error says what to run: ``retry`` (e.g. "run `lorakit train p --download`").
    """
    from diffusers import DiffusionPipeline

    if not download:
        try:
            with quiet_loading():
                return Path(DiffusionPipeline.download(repo_id, local_files_only=True, safety_checker=None))
        except Exception as e:  # noqa: BLE001 - whatever the cache lookup raises, the answer is the same
            raise ModelError(
                f"{repo_id!r} is a Hugging Face hub id that is not in the local cache, and lorakit never downloads "
                f"unless asked: {retry or DOWNLOAD_HINT}."
            ) from e
    print(f"downloading {repo_id} from the Hugging Face hub (the diffusers files only) ...", flush=True)
    with progress_bars():
        try:
            path = Path(DiffusionPipeline.download(repo_id, safety_checker=None))
        except Exception as e:  # noqa: BLE001 - no network, a typo, a gated or private repo: one sentence
            raise ModelError(f"Could not download {repo_id!r} from the Hugging Face hub: {e}".strip()) from e
    print(f"{repo_id}: files in {path}", flush=True)
    return path


NOTEBOOK_RETRY = "set DOWNLOAD = True in the parameters cell (the first code cell) and run the notebook again"


def fetch_hub_model(source: str | os.PathLike | None, *, download: bool = False, retry: str = "") -> Path | None:
    """For a hub id, its local snapshot (see hub_snapshot: downloaded only when ``download``); None for a local
    path or the demo model, which need nothing fetched."""
    return hub_snapshot(str(source), download=download, retry=retry) if is_hub_id(source) else None


@contextlib.contextmanager
def progress_bars():
    """The hub's download bars on (unless HF_HUB_DISABLE_PROGRESS_BARS says otherwise), as before afterwards."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if was_disabled and os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").upper() not in ("1", "ON", "YES", "TRUE"):
        enable_progress_bars()
    try:
        yield
    finally:
        if was_disabled:
            disable_progress_bars()


@contextlib.contextmanager
def quiet_loading():
    """No per-file progress bars or library chatter while loading: a notebook shows what matters."""
    from diffusers.utils import logging as d_logging
    from transformers.utils import logging as t_logging

    levels = (d_logging.get_verbosity(), t_logging.get_verbosity())
    bars = (d_logging.is_progress_bar_enabled(), t_logging.is_progress_bar_enabled())
    d_logging.set_verbosity_error()
    t_logging.set_verbosity_error()
    d_logging.disable_progress_bar()
    t_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:  # back to what the user had, bars included
        d_logging.set_verbosity(levels[0])
        t_logging.set_verbosity(levels[1])
        for module, enabled in zip((d_logging, t_logging), bars, strict=True):
            if enabled:
                module.enable_progress_bar()


def clear_cache() -> None:
    _CACHE.clear()


def base_model_from_env(default: str = "") -> str:
    """The notebooks' rule: $LORAKIT_BASE_MODEL if set, else ``default`` (empty = the demo model)."""
    return os.environ.get("LORAKIT_BASE_MODEL") or default
