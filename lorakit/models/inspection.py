"""Look at a base model without loading its weights: what the setup check (doctor) reports.

    report = inspect_base_model(Path("models/sd_xl_base_1.0.safetensors"))
    report.family, report.prediction_type, report.precision, report.params   # 'sdxl', 'epsilon', 'fp16', {...}
    report.problems      # what would make training fail, each with what to do; empty when it can start
    report.not_checked   # what this look cannot tell

A single file is read through its safetensors header (key names, dtypes, shapes, metadata; a few kB), a
diffusers folder through its configs and its weight files' headers. Tokenizers are built or loaded (they are
small) and checked against the text encoder they feed, as loading would. Peak memory stays far below 1 GB.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.errors import ModelError

DTYPE_NAMES = {"F16": "fp16", "BF16": "bf16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8", "F8_E5M2": "fp8"}


@dataclass
class ModelReport:
    source: str
    family: str = "?"
    prediction_type: str = "?"
    precision: str = "?"
    size_bytes: int = 0
    params: dict[str, int] = field(default_factory=dict)  # component -> parameter count
    tokenizers: list[str] = field(default_factory=list)  # one line per tokenizer: where from, vocab size
    problems: list[str] = field(default_factory=list)  # training would fail: what to do
    warnings: list[str] = field(default_factory=list)  # training would start, but check this
    not_checked: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = sum(self.params.values())
        return (f"{self.family} ({self.prediction_type}), {self.precision}, {total / 1e9:.2f} B parameters, "
                f"{self.size_bytes / 1e9:.2f} GB")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _precision(counts: dict[str, int]) -> str:
    """The dtype holding most parameters, with the others named if they hold over 1%."""
    total = sum(counts.values()) or 1
    names = sorted(counts, key=counts.get, reverse=True)
    main = DTYPE_NAMES.get(names[0], names[0].lower()) if names else "?"
    rest = [DTYPE_NAMES.get(n, n.lower()) for n in names[1:] if counts[n] / total > 0.01]
    return main + (f" (+{', '.join(rest)})" if rest else "")


def inspect_base_model(path: Path, single_file_config: str | Path | None = None) -> ModelReport:
    """A report on a single .safetensors file or a diffusers folder (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        return inspect_folder(path)
    return inspect_single_file(path, single_file_config)


def inspect_single_file(path: Path, config: str | Path | None = None) -> ModelReport:
    from lorakit.models import families
    from lorakit.models.families.base import ORIGINAL_UNET, ORIGINAL_VAE
    from lorakit.models.single_file import (
        detect_checkpoint_family,
        read_header,
        resolve_family,
        single_file_tokenizers,
        text_encoder_embeddings,
    )

    report = ModelReport(str(path), size_bytes=path.stat().st_size)
    if path.suffix != ".safetensors":
        report.problems.append(f"{path.name} is not a .safetensors file; the check reads only safetensors headers "
                               "(a pickled .ckpt would have to be loaded). Convert it to .safetensors.")
        return report
    try:
        header, metadata = read_header(path)
        shapes = {k: tuple(v["shape"]) for k, v in header.items()}
        layout = detect_checkpoint_family(shapes)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report.family = resolve_family(path, layout, "auto")
    except ModelError as e:
        report.problems.append(f"{path.name}: {e}")
        return report
    fam = families.get(report.family)
    report.prediction_type = fam.prediction_type or "epsilon"
    report.warnings += [str(w.message) for w in caught]

    counts: dict[str, int] = {}
    prefixes = {"unet": ORIGINAL_UNET, "vae": ORIGINAL_VAE}
    for i, (prefix, _) in enumerate(fam.original_text_encoders):
        prefixes["text_encoder" if i == 0 else f"text_encoder_{i + 1}"] = prefix
    report.params = {name: 0 for name in prefixes}
    for key, info in header.items():
        n = _numel(info["shape"])
        counts[info["dtype"]] = counts.get(info["dtype"], 0) + n
        for name, prefix in prefixes.items():
            if key.startswith(prefix):
                report.params[name] += n
    report.precision = _precision(counts)
    for name, n in report.params.items():
        if not n:
            report.problems.append(f"{path.name} has no {name} ({prefixes[name]}*): it is not a full checkpoint "
                                   f"(a UNet-only or pruned file?). Give a full {report.family} checkpoint.")
    if metadata.get("ss_network_module") or metadata.get("ss_network_dim"):
        report.problems.append(f"{path.name} is a LoRA (it has ss_network_* metadata), not a base model.")

    try:
        toks = single_file_tokenizers(path, shapes, report.family, Path(config) if config else None)
        for (name, kind, tok_key, _), tok in zip(text_encoder_embeddings(report.family), toks.values(), strict=True):
            origin = f"from {config}" if config and (Path(config) / name).is_dir() else f"shipped {kind}"
            report.tokenizers.append(f"{name}: {origin}, {len(tok)} tokens (encoder: {shapes[tok_key][0]})")
    except ModelError as e:
        report.problems.append(str(e))
    if not config:
        report.problems += _architecture_problems(path, shapes, report.family)
    report.not_checked += ["the weights' values (NaN/inf, whether it was trained well): no tensor data is read"]
    if config:
        report.not_checked.append(f"that {path.name} matches the configs in {config}")
    return report


def _architecture_problems(path: Path, shapes: dict[str, tuple], family: str) -> list[str]:
    """Whether the UNet and VAE tensors are exactly those of the family's standard architecture (on the meta
    device: names and shapes only), as loading without a config folder needs."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    from lorakit.models.single_file import architecture_configs

    cfgs = architecture_configs(family)
    sd = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    problems = []
    for name, cls, convert in (("unet", UNet2DConditionModel, sfu.convert_ldm_unet_checkpoint),
                               ("vae", AutoencoderKL, sfu.convert_ldm_vae_checkpoint)):
        try:
            with init_empty_weights():
                ref = cls.from_config(cfgs[name]).state_dict()
            got = convert(sd, cfgs[name])
            bad = sorted(set(ref) ^ set(got)) or [k for k in ref if tuple(got[k].shape) != tuple(ref[k].shape)]
        except (KeyError, RuntimeError, ValueError, IndexError) as e:
            bad = [f"{type(e).__name__}: {e}"]
        if bad:
            problems.append(f"{path.name}: its {name} is not the standard {family} architecture (e.g. {bad[0]}). If "
                            "it is a fine-tune with another shape, give its diffusers folder as model.single_file_config.")
    return problems


# ---- diffusers folders -----------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path} is missing or not valid JSON ({e}).") from e


def _weights_header(folder: Path) -> dict[str, dict] | None:
    """The tensors of a component folder, from its safetensors headers (sharded or not); None if only .bin."""
    from lorakit.models.single_file import read_header

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    out: dict[str, dict] = {}
    for f in files:
        out |= read_header(f)[0]
    return out


def inspect_folder(path: Path) -> ModelReport:
    """A diffusers folder: configs, weight headers and tokenizers, nothing loaded."""
    from lorakit.models.tokenizers import check_tokenizer

    report = ModelReport(str(path))
    try:
        index = _read_json(path / "model_index.json")
    except ModelError as e:
        report.problems.append(f"{path} is a folder but not a diffusers model: {e}")
        return report
    report.size_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    encoders = [n for n in ("text_encoder", "text_encoder_2") if index.get(n) and index[n][0]]
    counts: dict[str, int] = {}
    for name in ["unet", "vae", *encoders]:
        if not (path / name / "config.json").is_file():
            report.problems.append(f"{path}: {name}/config.json is missing; the folder is incomplete.")
            continue
        try:
            header = _weights_header(path / name)
        except ModelError as e:
            report.problems.append(str(e))
            continue
        if header is None:
            if any((path / name).glob("*.bin")):
                report.warnings.append(f"{name} holds only pickled .bin weights: not inspected")
            else:
                report.problems.append(f"{path}: {name}/ has no weights. Give a complete diffusers folder.")
            continue
        report.params[name] = sum(_numel(t["shape"]) for t in header.values())
        for t in header.values():
            counts[t["dtype"]] = counts.get(t["dtype"], 0) + _numel(t["shape"])
    report.precision = _precision(counts) if counts else "?"
    scheduler = path / "scheduler" / "scheduler_config.json"
    report.prediction_type = _read_json(scheduler).get("prediction_type", "epsilon") if scheduler.is_file() else "?"
    te_cfgs = {n: _read_json(path / n / "config.json") for n in encoders if (path / n / "config.json").is_file()}
    if te_cfgs.get("text_encoder"):  # the registry's rule, as for a loaded pipeline (training says the same)
        from types import SimpleNamespace

        from lorakit.models import families

        def part(name: str):
            return SimpleNamespace(config=SimpleNamespace(**te_cfgs[name])) if name in te_cfgs else None

        configs = SimpleNamespace(text_encoder=part("text_encoder"), text_encoder_2=part("text_encoder_2"),
                                  scheduler=SimpleNamespace(config={"prediction_type": report.prediction_type}))
        try:
            report.family = families.detect_from_pipeline(configs).name
        except ModelError as e:
            report.problems.append(f"{path}: {e}")
    for n, cfg in te_cfgs.items():
        tok_name = n.replace("text_encoder", "tokenizer")
        try:
            tok = _folder_tokenizer(path / tok_name)
            check_tokenizer(tok, int(cfg.get("vocab_size", 49408)), int(cfg.get("max_position_embeddings", 77)),
                            tok_name, str(path / tok_name))
            report.tokenizers.append(f"{tok_name}: {len(tok)} tokens (encoder: {cfg.get('vocab_size')})")
        except ModelError as e:
            report.problems.append(str(e))
    report.not_checked += ["the weights' values (NaN/inf, whether it was trained well): no tensor data is read",
                           "that each weight file's tensors match its config (loading checks that)"]
    return report


def _folder_tokenizer(folder: Path):
    from lorakit.models.single_file import folder_tokenizer

    return folder_tokenizer(folder) if folder.is_dir() else None
