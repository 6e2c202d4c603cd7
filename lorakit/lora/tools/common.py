"""What the LoRA tools share: a LoRA file read into modules, the family it was made for, low-rank SVD and rank
choice (sd-scripts' ``sv_ratio`` / ``sv_fro`` / ``sv_cumulative``), and writing a new file that never replaces one.

    data = read_lora("a.safetensors")            # data.modules["lora_unet_…_to_q"].delta() -> ΔW at strength 1
    u, s, vh = lowrank_svd(up, down)              # SVD of up @ down from the factors, O((out + in)·r²)
    k = choose_rank(s, 16, "sv_fro", 0.9)         # the smallest rank keeping 90 % of the Frobenius norm
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lorakit.errors import LoraToolError
from lorakit.files import create_new, printable
from lorakit.lora.embeddings import BUNDLE, bundled_embeddings
from lorakit.lora.file import SAVE_DTYPES, open_lora
from lorakit.models import families

METHODS = ("fixed", "sv_ratio", "sv_fro", "sv_cumulative")
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


@dataclass
class LoraModule:
    """The tensors of one adapted layer (``lora_down.weight``, ``lora_up.weight``, ``alpha``, ``hada_w1_a`` …)."""

    key: str
    tensors: dict[str, torch.Tensor]

    @property
    def kind(self) -> str:
        t = self.tensors
        if "lora_down.weight" in t:
            return "dora" if "dora_scale" in t else "lora"
        if "hada_w1_a" in t:
            return "loha"
        if any(s.startswith("lokr_") for s in t):
            return "lokr"
        return "unknown"

    def _get(self, name: str) -> torch.Tensor:
        return self.tensors[name].float()

    @property
    def rank(self) -> int:
        t = self.tensors
        for name in ("lora_down.weight", "hada_w1_b", "lokr_w1_b", "lokr_w2_b"):
            if name in t:
                return int(t[name].shape[0])
        return 0  # LoKr with two full factors: no rank

    @property
    def alpha(self) -> float:
        a = self.tensors.get("alpha")
        return float(a.item()) if a is not None else float(self.rank)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank if self.rank else 1.0

    @property
    def is_conv(self) -> bool:
        down = self.tensors.get("lora_down.weight")
        return down is not None and down.dim() == 4 and tuple(down.shape[2:]) != (1, 1)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the layer's weight (LoRA/LoCon/DoRA); LoHa/LoKr: the flattened (out, in·k·k)."""
        t = self.tensors
        if "lora_down.weight" in t:
            return (t["lora_up.weight"].shape[0], *t["lora_down.weight"].shape[1:])
        rows, cols = self._lycoris_shape()
        return rows, cols

    def _lycoris_shape(self) -> tuple[int, int]:
        t = self.tensors
        if "hada_w1_a" in t:
            return t["hada_w1_a"].shape[0], math.prod(t["hada_w1_b"].shape[1:])
        r1, c1 = (t["lokr_w1"].shape if "lokr_w1" in t else (t["lokr_w1_a"].shape[0], t["lokr_w1_b"].shape[1]))
        w2 = t.get("lokr_w2")
        r2, c2 = (w2.shape[0], math.prod(w2.shape[1:])) if w2 is not None else (
            t["lokr_w2_a"].shape[0], math.prod(t["lokr_w2_b"].shape[1:]))
        return r1 * r2, c1 * c2

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale · up, down), both flattened to 2-D fp32: ΔW = up @ down at strength 1 (LoRA/LoCon only)."""
        up, down = self._get("lora_up.weight"), self._get("lora_down.weight")
        return up.flatten(1) * self.scale, down.flatten(1)

    def delta(self) -> torch.Tensor | None:
        """ΔW at strength 1, fp32, flattened to (out, in·k·k); None where it cannot be formed (Tucker factors)."""
        if self.kind in ("lora", "dora"):  # DoRA: the direction change only (its magnitude needs the base weight)
            up, down = self.factors()
            return up @ down
        from lorakit.errors import PatchError
        from lorakit.lora.patching import layer_delta

        try:
            return layer_delta({f"{self.key}.{k}": v for k, v in self.tensors.items()}, self.key,
                               torch.zeros(self._lycoris_shape())).flatten(1)
        except (PatchError, RuntimeError, KeyError):
            return None


@dataclass
class LoraData:
    """A LoRA file read whole: its modules by kohya key and its metadata."""

    path: Path
    modules: dict[str, LoraModule]
    metadata: dict[str, str] = field(default_factory=dict)
    bundle: dict[str, torch.Tensor] = field(default_factory=dict)  # kohya's bundle_emb.* keys, as in the file

    @property
    def bundled_words(self) -> list[str]:
        """The textual-inversion words bundled in the file (pivotal tuning), sorted."""
        return sorted(bundled_embeddings(self.bundle))

    @property
    def name(self) -> str:
        return printable(self.path.name)

    @property
    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.modules.values():
            out[m.kind] = out.get(m.kind, 0) + 1
        return out

    def only_lora(self, what: str) -> None:
        """Refuse LoHa / LoKr / DoRA files, which ``what`` cannot handle."""
        other = {k: n for k, n in self.kinds.items() if k != "lora"}
        if other:
            kind = next(iter(other))
            raise LoraToolError(f"{self.name} holds {other[kind]} {kind_name(kind)} modules; {what} works on "
                                "LoRA / LoCon files only (lora_down / lora_up). Use the tool of the trainer that "
                                "made it (LyCORIS), or a LoRA version of the file.")


def kind_name(kind: str) -> str:
    return {"lora": "LoRA", "dora": "DoRA", "loha": "LoHa", "lokr": "LoKr"}.get(kind, "unknown")


def read_lora(path: str | Path) -> LoraData:
    """A kohya / LyCORIS .safetensors file into modules; a file with no LoRA keys is a sentence."""
    path = Path(path)
    if not path.is_file():
        raise LoraToolError(f"{printable(path)} does not exist: give the path of a LoRA .safetensors file.")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    with open_lora(path) as f:
        names = f.keys()  # a safetensors handle, not a dict
        for k in names:
            group, _, suffix = k.partition(".")
            groups.setdefault(group, {})[suffix] = f.get_tensor(k)
        metadata = dict(f.metadata() or {})
    modules = {g: LoraModule(g, t) for g, t in groups.items() if g.startswith(("lora_unet_", "lora_te"))}
    bundle = {f"{BUNDLE}.{suffix}": t for suffix, t in groups.get(BUNDLE, {}).items()}
    if not modules or all(m.kind == "unknown" for m in modules.values()):
        raise LoraToolError(f"{printable(path.name)} has no kohya LoRA keys (lora_unet_… / lora_te_…): is it a "
                            "checkpoint, an embedding or a diffusers-format LoRA?")
    return LoraData(path, modules, metadata, bundle)


def lora_families(data: LoraData) -> set[str]:
    """The families the file can be for ({'sd1'}, {'sd2'}, {'sd1', 'sd2'}, {'sdxl'}): metadata, then key names
    (SDXL's lora_te1_/lora_te2_ and original block names), then the cross-attention width (768 SD1, 1024 SD2)."""
    version = data.metadata.get("ss_base_model_version", "")
    if data.metadata.get("ss_v2") == "True" and not version:
        version = families.get("sd2").ss_base_model_version
    # kohya's value without its release part: sd_v1, sd_v2(_768_v), sdxl(_base_v1-0, _base_v0-9)
    named = {fam.layout for fam in families.FAMILIES.values()
             if version.startswith(fam.ss_base_model_version.split("_base")[0])} if version else set()
    if named:
        return named
    keys = data.modules
    if any(k.startswith(("lora_te1_", "lora_te2_", "lora_unet_input_blocks", "lora_unet_output_blocks")) for k in keys):
        return {"sdxl"}
    for k, m in keys.items():
        if k.endswith("attn2_to_k") and m.kind == "lora":
            width = m.weight_shape[1]
            return {768: {"sd1"}, 1024: {"sd2"}}.get(width, {"sd1", "sd2"})
    return {"sd1", "sd2"}


def family_label(fams: set[str]) -> str:
    return " or ".join(FAMILY_NAMES[f] for f in sorted(fams))


@dataclass
class ModuleChange:
    """One module of a resize / merge / extract: its rank before and after and the relative error ‖ΔW − ΔW'‖/‖ΔW‖."""

    key: str
    old_rank: int
    new_rank: int
    error: float


@dataclass
class ToolReport:
    """What a tool wrote: per-module ranks and errors, and the file sizes."""

    output: Path
    modules: list[ModuleChange] = field(default_factory=list)
    old_bytes: int = 0
    new_bytes: int = 0
    what: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def max_error(self) -> float:
        return max((m.error for m in self.modules), default=0.0)

    @property
    def mean_error(self) -> float:
        return sum(m.error for m in self.modules) / len(self.modules) if self.modules else 0.0

    def format(self, limit: int = 20) -> str:
        """The worst modules first, then one summary line."""
        rows = sorted(self.modules, key=lambda m: -m.error)
        lines = [f"{'module':<72} {'rank':>11} {'error':>8}"]
        for m in rows[:limit]:
            lines.append(f"{m.key:<72} {m.old_rank:>4} -> {m.new_rank:<4} {m.error:>8.2%}")
        if len(rows) > limit:
            lines.append(f"... {len(rows) - limit} more modules")
        size = f"{self.old_bytes / 1e6:.1f} MB -> {self.new_bytes / 1e6:.1f} MB" if self.old_bytes else \
            f"{self.new_bytes / 1e6:.1f} MB"
        lines.append(f"{self.what}: {printable(self.output.name)} written, {len(rows)} modules, relative error mean "
                     f"{self.mean_error:.2%}, max {self.max_error:.2%}; {size}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def carried_bundle(items: list[tuple[LoraData, float]]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The bundled words of the inputs, to be written unchanged into the output, and a note naming them: a word
    is a token's vectors, not a weight change, so a merge weight or a resize does not apply to it. The same word
    with other vectors in two files cannot be carried: one file could hold only one of them."""
    out: dict[str, torch.Tensor] = {}
    owner: dict[str, str] = {}
    for data, _ in items:
        for word in bundled_embeddings(data.bundle):
            keys = {k: v for k, v in data.bundle.items() if k.startswith(f"{BUNDLE}.{word}.")}
            if word in owner:
                same = all(k in out and out[k].shape == v.shape and torch.equal(out[k], v) for k, v in keys.items())
                if not same:
                    raise LoraToolError(f"{owner[word]} and {data.name} both bundle the word {word!r} with other "
                                        "vectors: one file can carry only one of them. Merge files that do not "
                                        "share a bundled word, or keep them apart.")
                continue
            owner[word] = data.name
            out |= keys
    words = sorted(owner)
    notes = [f"bundled word{'s' if len(words) > 1 else ''} {', '.join(words)} carried over unchanged (a word's "
             "vectors are not scaled by a weight or a rank)"] if words else []
    return out, notes


# ---- SVD and rank choice -------------------------------------------------------------------------------
def lowrank_svd(up: torch.Tensor, down: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """U, S, Vh of ``up @ down`` (out×r, r×in) through two QRs and an r×r SVD: exact, and cheap for small r."""
    qu, ru = torch.linalg.qr(up.double())
    qd, rd = torch.linalg.qr(down.double().T)
    u, s, vh = torch.linalg.svd(ru @ rd.T)
    return (qu @ u).float(), s.float(), (vh @ qd.T).float()


def full_svd(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.linalg.svd(delta.float(), full_matrices=False)


def choose_rank(s: torch.Tensor, rank: int, method: str = "fixed", param: float | None = None) -> int:
    """How many singular values to keep: ``rank`` (fixed), or sd-scripts' dynamic rules capped at ``rank``:
    sv_ratio keeps s_i > s_max / param; sv_fro keeps the fewest with Σs_i² ≥ param² Σs²; sv_cumulative the fewest
    with Σs_i ≥ param Σs."""
    n = int(s.numel())
    if method == "fixed":
        k = rank
    elif float(s[0]) <= 1e-12:  # a module that learned nothing
        k = 1
    elif method == "sv_ratio":
        k = int((s > s[0] / param).sum())
    elif method == "sv_fro":
        share = torch.cumsum(s.double() ** 2, 0) / (s.double() ** 2).sum()
        k = int(torch.searchsorted(share, torch.tensor(param**2 - 1e-12, dtype=share.dtype))) + 1
    elif method == "sv_cumulative":
        share = torch.cumsum(s.double(), 0) / s.double().sum()
        k = int(torch.searchsorted(share, torch.tensor(param - 1e-12, dtype=share.dtype))) + 1
    else:
        raise LoraToolError(f"unknown resize method {method!r}: use one of {', '.join(METHODS)}.")
    return max(1, min(k, rank, n))


def check_method(method: str, param: float | None) -> None:
    """Refuse a dynamic method without a sensible parameter, before any work."""
    if method not in METHODS:
        raise LoraToolError(f"unknown resize method {method!r}: use one of {', '.join(METHODS)}.")
    if method == "fixed":
        return
    if param is None:
        raise LoraToolError(f"{method} needs a parameter (--param): e.g. 2 for sv_ratio, 0.9 for sv_fro or "
                            "sv_cumulative.")
    if method == "sv_ratio" and param < 1:
        raise LoraToolError(f"sv_ratio {param}: the ratio s_max / s_min kept must be 1 or more (2 is typical).")
    if method in ("sv_fro", "sv_cumulative") and not 0 < param <= 1:
        raise LoraToolError(f"{method} {param}: give the share of the spectrum to keep, between 0 and 1 (e.g. 0.9).")


def split_factors(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, k: int, out_tail: tuple[int, ...],
                  down_tail: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(up, down) of rank k with up @ down = U_k S_k Vh_k; √S goes to each side (balanced, fp16-friendly). Conv
    layouts: down (k, in, kh, kw), up (out, k, 1, 1)."""
    root = s[:k].clamp_min(0).sqrt()
    up = (u[:, :k] * root).reshape(u.shape[0], k, *out_tail)
    down = (root[:, None] * vh[:k]).reshape(k, *down_tail)
    return up.contiguous(), down.contiguous()


def module_tensors(key: str, up: torch.Tensor, down: torch.Tensor, alpha: float, dtype: torch.dtype) -> dict:
    return {f"{key}.lora_down.weight": down.to(dtype).contiguous(), f"{key}.lora_up.weight": up.to(dtype).contiguous(),
            f"{key}.alpha": torch.tensor(float(alpha), dtype=torch.float32)}


def relative_error(s: torch.Tensor, k: int) -> float:
    """‖ΔW − ΔW_k‖_F / ‖ΔW‖_F of the best rank-k approximation: the tail of the spectrum."""
    total = float((s.double() ** 2).sum())
    return math.sqrt(float((s[k:].double() ** 2).sum()) / total) if total > 0 else 0.0


# ---- writing -------------------------------------------------------------------------------------------
def save_dtype(name: str) -> torch.dtype:
    if name not in SAVE_DTYPES:
        raise LoraToolError(f"precision {name!r}: use one of {', '.join(SAVE_DTYPES)}.")
    return SAVE_DTYPES[name]


def check_output(out: str | Path, *inputs: str | Path) -> Path:
    """The output path, refused if it exists (never overwritten) or is one of the inputs; parent made."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise LoraToolError(f"{printable(out.name)}: the output must be a .safetensors file.")
    if any(Path(i).resolve() == out.resolve() for i in inputs):
        raise LoraToolError(f"{printable(out.name)} is also an input: choose a new name for the output.")
    if out.exists():
        raise LoraToolError(f"{printable(out)} already exists: lorakit never overwrites a file; choose a new name.")
    if not out.parent.is_dir():
        raise LoraToolError(f"{printable(out.parent)} is not a folder: create it or choose another output path.")
    return out


def free_path(folder: str | Path, name: str) -> Path:
    """``folder/name``, or the first free ``stem-1``, ``stem-2``, … beside it (the folder is made): for reruns."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, stem = folder / name, Path(name).stem
    n = 0
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{Path(name).suffix}"
    return path


def write_new(out: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a new .safetensors atomically; refuse if the name was taken meanwhile, or if a tensor is inf/nan."""
    from safetensors.torch import save_file

    broken = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise LoraToolError(f"not writing {printable(out.name)}: {len(broken)} tensors hold inf or nan (first: "
                            f"{broken[0]}); in fp16 the values overflow: save with --precision float or bf16.")
    meta = {k: str(v) for k, v in metadata.items()}
    if not create_new(out, lambda tmp: save_file(tensors, str(tmp), metadata=meta)):
        raise LoraToolError(f"{printable(out)} appeared while writing: nothing overwritten; choose a new name.")
    return out


def derived_metadata(source: dict[str, str], out: Path, comment: str, dims: set[int], alphas: set[float]) -> dict:
    """The source's ss_* recipe with the new network dim / alpha (kohya writes 'Dynamic' when they vary), the
    output name and what was done; stale hashes dropped."""
    meta = {k: v for k, v in source.items() if k not in ("sshs_model_hash", "sshs_legacy_hash")}
    meta["ss_network_dim"] = str(next(iter(dims))) if len(dims) == 1 else "Dynamic"
    meta["ss_network_alpha"] = str(next(iter(alphas))) if len(alphas) == 1 else "Dynamic"
    meta["ss_output_name"] = out.stem
    meta["modelspec.title"] = out.stem
    previous = source.get("ss_training_comment", "")
    meta["ss_training_comment"] = f"{previous}; {comment}" if previous and previous != "None" else comment
    meta["lorakit_tool"] = json.dumps({"comment": comment})
    return meta
