"""GPU memory of a training setting, known before the run and without a GPU (nor weights, nor network).

    est = estimate_memory(cfg)                  # one training step of the real architecture, on the meta device
    est.line(24 * GB)                           # 'needs about 7.9 GB of your 24.0 GB'
    for fix in memory_fixes(cfg, 8 * GB): print(fix.text)   # the cheapest changes that make it fit, in order

How: the base model's architecture (read from its configs or single-file header, else the config's family) is
built on the ``meta`` device in the precision training loads it in, lorakit's own adapter is attached
(``Network.attach``, as training does) and one step runs as ``lorakit.train.loop`` runs it: the text encoder(s)
(with gradients when they train, else once without), the UNet under autocast, the loss, backward, gradient
clipping, the optimizer step. ``torch.distributed._tools.mem_tracker.MemTracker`` follows every tensor and
reports the peak. What meta tensors cannot show is emulated and said here:

- CUDA autocast has no meta backend: ``_Autocast`` casts the inputs of matmuls/convs to the compute dtype and of
  norms, softmax and the loss to fp32, as autocast's op lists do on CUDA.
- SDPA on meta takes the math path (a full attention matrix); on CUDA it takes a fused kernel, so with
  ``training.sdpa`` the estimate calls the memory-efficient kernel's meta function instead.
- Optimizers that cannot step on meta tensors (AdamW8bit needs CUDA; Prodigy and DAdaptAdam read values) get
  their state counted from their source: AdamW8bit 2 bytes per element for tensors of at least ``min_8bit_size``
  (4096) elements plus one fp32 scale per 256, else 8 bytes; Prodigy 8 bytes (+4 without beta1 = 0) plus 8 per
  ``slice_p`` element; DAdaptAdam 12 bytes. AdamW, Adafactor (factored) and SGD run for real.
- What the allocator and CUDA itself take: ``CUDA_CONTEXT`` bytes plus ``ALLOCATOR_SHARE`` of the step's peak.

What lorakit's trainer keeps on the GPU is counted, not what it could drop: the VAE and text encoders stay
resident (``load_base`` moves the whole pipeline); with ``data.cache_latents`` off the VAE encodes each batch;
with the text encoder frozen its outputs are memoised per caption (one no-grad pass). The estimate is cached per
setting; a real-size SD 1.5 step takes about 4 s on one CPU core, SDXL about 10 s (``bench/vram.py``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from lorakit.config.schema import TrainConfig, parse_optimizer_args
from lorakit.errors import LorakitError
from lorakit.models.families.base import square_sizes

GB = 2**30  # cards are sold in GiB ("24 GB" holds 24 GiB); lorakit doctor prints the same unit
CUDA_CONTEXT = int(0.5 * GB)  # the CUDA context, cuBLAS/cuDNN workspaces: outside torch's allocator
ALLOCATOR_SHARE = 0.10  # the caching allocator's rounding and fragmentation, as a share of the step's peak
COMMON_CARDS = (8, 12, 16, 24)  # GB, what `lorakit config check` compares with when there is no GPU
WEIGHT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "no": torch.float32}


# ---- the result ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """Peak GPU memory of one training step, in bytes, by what holds it."""

    parameters: int  # base weights in the training precision, plus the adapter (fp32)
    gradients: int  # the adapter's gradients (fp32)
    optimizer_state: int
    activations: int  # the rest of the step's peak: activations, their gradients, temporaries
    allowance: int  # CUDA context and allocator overhead (see CUDA_CONTEXT, ALLOCATOR_SHARE)
    family: str = ""
    notes: tuple[str, ...] = ()  # what the estimate assumed (family from the config, analytic optimizer state)

    @property
    def step_peak(self) -> int:
        """What torch.cuda.max_memory_allocated should show for the step."""
        return self.parameters + self.gradients + self.optimizer_state + self.activations

    @property
    def total(self) -> int:
        return self.step_peak + self.allowance

    def fits(self, budget_bytes: int) -> bool:
        return self.total <= budget_bytes

    def line(self, budget_bytes: int | None = None) -> str:
        """'needs about 7.9 GB of your 24.0 GB' (or 'needs about 7.9 GB' with no budget)."""
        text = f"needs about {self.total / GB:.1f} GB"
        return text + (f" of your {budget_bytes / GB:.1f} GB" if budget_bytes else "")

    def breakdown(self) -> str:
        parts = [("weights", self.parameters), ("gradients", self.gradients), ("optimizer", self.optimizer_state),
                 ("activations", self.activations), ("CUDA + allocator", self.allowance)]
        return ", ".join(f"{name} {value / GB:.2f}" for name, value in parts) + " GB"


@dataclass(frozen=True)
class Fix:
    """One change to the config, and the memory it saves on top of the fixes before it."""

    changes: dict  # {"training.gradient_checkpointing": True}
    what: str  # 'turn on gradient checkpointing'
    saving: int  # bytes
    total_after: int

    @property
    def text(self) -> str:
        return f"{self.what}: saves about {self.saving / GB:.1f} GB (then {self.total_after / GB:.1f} GB)"


# ---- which architecture --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Architecture:
    family: str
    configs_json: str  # {"unet": {...}, "vae": {...}, "text_encoder": {...}, ...} as JSON (hashable, cacheable)
    note: str = ""

    @property
    def configs(self) -> dict:
        return json.loads(self.configs_json)


def _arch(family: str, configs: dict, note: str = "") -> Architecture:
    parts = {k: v for k, v in configs.items() if k in ("unet", "vae", "text_encoder", "text_encoder_2")}
    return Architecture(family, json.dumps(parts, sort_keys=True), note)


def base_architecture(cfg: TrainConfig) -> Architecture:
    """The configured base model's architecture, read from its configs or header (no weights); else the config's
    family (sd1 when that is 'auto' too), with a note saying so."""
    m = cfg.model
    return _base_architecture(m.base_model, m.family, m.single_file_config)


@functools.lru_cache(maxsize=16)
def _base_architecture(base_model: str, family: str, single_file_config: str) -> Architecture:
    from lorakit.models import families
    from lorakit.models.loading import hub_snapshot, is_hub_id, resolve_source

    m = SimpleNamespace(base_model=base_model, family=family, single_file_config=single_file_config)
    fallback = m.family if m.family != "auto" else "sd1"
    src = resolve_source(m.base_model)
    try:
        path = hub_snapshot(src, download=False) if is_hub_id(src) else Path(src).expanduser()
        if path.is_dir():
            return _folder_architecture(path, m.family)
        if path.suffix == ".safetensors" and path.is_file():
            from lorakit.models.single_file import checkpoint_shapes, detect_checkpoint_family, resolve_family

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                name = resolve_family(path, detect_checkpoint_family(checkpoint_shapes(path)), m.family)
            if m.single_file_config:
                return _folder_architecture(Path(m.single_file_config).expanduser(), name)
            return _arch(name, families.get(name).architecture_configs())
    except (LorakitError, OSError, ValueError) as e:
        reason = str(e).split(". ")[0]
    else:
        reason = "not found" if not path.exists() else "it is not a diffusers folder or a .safetensors file"
    return _arch(fallback, families.get(fallback).architecture_configs(),
                 f"the base model could not be read ({reason}): estimated for the {fallback} architecture")


def _folder_architecture(path: Path, family: str) -> Architecture:
    from lorakit.models.inspection import inspect_folder

    configs = {}
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        cfg_file = path / part / "config.json"
        if cfg_file.is_file():
            configs[part] = json.loads(cfg_file.read_text(encoding="utf-8"))
    if "unet" not in configs or "text_encoder" not in configs:
        raise ValueError(f"{path} has no unet/ or text_encoder/ config")
    name = family if family != "auto" else inspect_folder(path).family
    return _arch(name if name != "?" else "sd1", configs)


# ---- autocast and fused attention, emulated on meta tensors ---------------------------------------------
_LOW = {F.linear, torch.conv2d, F.conv2d, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm,
        torch.Tensor.bmm, torch.baddbmm, torch.Tensor.baddbmm, torch.addmm, torch.mm}
_FP32 = {F.group_norm, F.layer_norm, F.softmax, torch.softmax, torch.Tensor.softmax, F.mse_loss}


def _cast(values, dtype: torch.dtype):
    return [v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != dtype else v
            for v in values]


class _Autocast(TorchFunctionMode):
    """CUDA autocast (while ``enabled``) and fused SDPA (``sdpa``) for meta tensors; see the module docstring."""

    def __init__(self, dtype: torch.dtype | None, sdpa: bool):
        super().__init__()
        self.dtype, self.sdpa, self.enabled = dtype, sdpa, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        low = self.dtype if self.enabled else None
        if func is F.scaled_dot_product_attention and self.sdpa and kwargs.get("attn_mask") is None \
                and len(args) == 3 and not kwargs.get("dropout_p"):
            q, k, v = _cast(args, low) if low else args
            return torch.ops.aten._scaled_dot_product_efficient_attention(
                q, k, v, None, True, 0.0, bool(kwargs.get("is_causal")), scale=kwargs.get("scale"))[0]
        if low is not None and func in _LOW:
            args, kwargs = _cast(args, low), dict(zip(kwargs, _cast(kwargs.values(), low), strict=True))
        elif low is not None and func in _FP32:
            args = _cast(args, torch.float32)
        return func(*args, **kwargs)


@contextlib.contextmanager
def _autocast_everywhere(mode: _Autocast, unet: torch.nn.Module):
    """``mode`` also in the forward that gradient checkpointing recomputes during backward, where torch leaves
    function modes out: each module call re-enters it (autocast on inside the UNet only, as in the loop)."""
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
    from torch.overrides import _get_current_function_mode_stack

    in_unet = {id(m) for m in unet.modules()}
    entered: list[tuple[torch.nn.Module, _Autocast]] = []

    def pre(module, args):
        if not any(isinstance(m, _Autocast) for m in _get_current_function_mode_stack()):
            inner = _Autocast(mode.dtype, mode.sdpa)
            inner.enabled = id(module) in in_unet
            inner.__enter__()
            entered.append((module, inner))

    def post(module, args, output):
        if entered and entered[-1][0] is module:
            entered.pop()[1].__exit__(None, None, None)

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, always_call=True)]
    try:
        with mode:
            yield mode
    finally:
        for h in handles:
            h.remove()


def _tracker():
    """torch's MemTracker, made to work with frozen parameters and to keep only the overall peak (fast).

    torch 2.14's MemTracker puts a gradient hook on every parameter, which fails on a frozen one (a LoRA's base
    weights); and it updates a per-module peak after every op, which makes a UNet step take a minute.
    """
    from torch.distributed._tools.mem_tracker import MemTracker

    class _NoHook:
        def remove(self) -> None:
            pass

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            for p in module.parameters():
                if not p.requires_grad and self._param_to_grad_hook_handles.get(p) is None:
                    self._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
            return super()._track_module_params_and_buffers(module, install_grad_hooks)

        def _update_peak_stats(self, peak_state) -> None:
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap["Total"]:
                    self._peak_mem[dev] = snap["Total"]
                    self._peak_mem_snap[dev] = dict(snap)

        def peak_bytes(self) -> int:
            return max(self._peak_mem.values(), default=0)

    return Tracker()


# ---- the model on meta ---------------------------------------------------------------------------------
def build_meta_base(arch: Architecture, dtype: torch.dtype, device: str | torch.device = "meta"):
    """A lorakit BaseModel of the architecture with empty weights in ``dtype`` (no pipeline, no tokenizers).

    On ``meta`` it costs nothing; ``bench/vram.py`` builds the same on ``cuda`` to measure a real step.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from lorakit.models import families
    from lorakit.models.loading import BaseModel, quiet_loading

    cfgs = arch.configs
    with quiet_loading(), warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        unet = UNet2DConditionModel.from_config(cfgs["unet"])
        vae = AutoencoderKL.from_config(cfgs["vae"])
        encoders = []
        for name in ("text_encoder", "text_encoder_2"):
            if name in cfgs:
                c = {k: v for k, v in cfgs[name].items() if not k.startswith("_")}
                cls = CLIPTextModelWithProjection if "WithProjection" in str(c.get("architectures")) else CLIPTextModel
                encoders.append(cls(CLIPTextConfig(**c)))
        for part in (unet, vae, *encoders):
            part.to(dtype).requires_grad_(False).eval()
    pipe = SimpleNamespace(unet=unet, vae=vae, text_encoder=encoders[0],
                           text_encoder_2=encoders[1] if len(encoders) > 1 else None)
    fam = families.get(arch.family)
    pred = fam.prediction_type or "epsilon"
    return BaseModel(f"{arch.family} architecture ({device})", fam, pipe, pred, dtype, torch.device(device), {})


def analytic_optimizer_state(name: str, params: list[torch.Tensor], args: dict) -> int | None:
    """Bytes of optimizer state, from each optimizer's source, for those that cannot step on meta; else None."""
    if name == "AdamW8bit":
        small = int(args.get("min_8bit_size", 4096))
        return sum(2 * p.numel() + 2 * 4 * math.ceil(p.numel() / 256) if p.numel() >= small else 8 * p.numel()
                   for p in params)
    if name == "Prodigy":
        betas = args.get("betas", (0.9, 0.999))
        slice_p = int(args.get("slice_p", 1))
        return sum((4 if betas[0] > 0 else 0) * p.numel() + 4 * p.numel() + 8 * math.ceil(p.numel() / slice_p)
                   for p in params)
    if name in ("DAdaptAdam", "DAdaptAdamPreprint"):  # exp_avg, exp_avg_sq, s
        return sum(12 * p.numel() for p in params)
    if name in ("PagedAdamW", "PagedAdamW32bit"):  # two fp32 moments, paged
        return sum(8 * p.numel() for p in params)
    if name == "PagedAdamW8bit":
        return analytic_optimizer_state("AdamW8bit", params, args)
    if name in ("Lion8bit", "PagedLion8bit"):  # one 8-bit moment (fp32 below min_8bit_size)
        small = int(args.get("min_8bit_size", 4096))
        return sum(p.numel() + 4 * math.ceil(p.numel() / 256) if p.numel() >= small else 4 * p.numel()
                   for p in params)
    if name == "Lion":  # one fp32 moment
        return sum(4 * p.numel() for p in params)
    if name in ("AdEMAMix8bit", "PagedAdEMAMix8bit"):  # three 8-bit moments (two fast/slow means, one variance)
        small = int(args.get("min_8bit_size", 4096))
        return sum(3 * p.numel() + 12 * math.ceil(p.numel() / 256) if p.numel() >= small else 12 * p.numel()
                   for p in params)
    if name in ("DAdaptAdaGrad", "DAdaptSGD", "DAdaptLion", "DAdaptAdan", "DAdaptAdanIP"):  # per-parameter state
        per = {"DAdaptAdaGrad": 12, "DAdaptSGD": 12, "DAdaptLion": 8, "DAdaptAdan": 20, "DAdaptAdanIP": 20}[name]
        return sum(per * p.numel() for p in params)
    return None


def adapter_groups(net, cfg: TrainConfig) -> list[dict]:
    """The optimizer's parameter groups for an attached adapter: the UNet's LoRA at unet_lr, the text encoders'
    at text_encoder_lr (the UNet's when that is 0 but they train)."""
    groups = [{"params": net.parameters("lora_unet"), "lr": cfg.optimizer.unet_lr}] if "lora_unet" in net.parts else []
    te_params = [p for k in net.parts if k.startswith("lora_te") for p in net.parameters(k)]
    if te_params:
        groups.append({"params": te_params, "lr": cfg.optimizer.text_encoder_lr or cfg.optimizer.unet_lr})
    return groups


def enable_checkpointing(base, net) -> None:
    """Gradient checkpointing for the UNet and the text encoders the adapter trains, as the loop sets it."""
    base.unet.enable_gradient_checkpointing()
    for te in base.text_encoders:
        if te in net.parts.values():
            te.gradient_checkpointing_enable()


def run_step(base, cfg: TrainConfig, *, track: bool = True):
    """One training step as lorakit's loop takes it, on ``base``'s device; (tracker or None, net, optimizer, notes).

    The optimizer steps once before the tracked step, so its state is resident as from the second step on.
    """
    from lorakit.lora.network import Network
    from lorakit.train.optimizers import build_optimizer

    t, d, notes = cfg.training, cfg.data, []
    dev, dtype, fam = base.device, base.dtype, base.family
    net = Network.attach(base, cfg)
    groups = adapter_groups(net, cfg)
    params = [p for g in groups for p in g["params"]]
    name, args = cfg.optimizer.optimizer, parse_optimizer_args(cfg.optimizer.optimizer_args)
    extra_state = analytic_optimizer_state(name, params, args) if dev.type == "meta" else None
    if extra_state is None:
        optimizer = build_optimizer(cfg, groups)
    else:  # the step's own temporaries as a plain update; the state as tensors of its size
        optimizer = torch.optim.SGD(groups, lr=cfg.optimizer.unet_lr)
        notes.append(f"{name}'s state is counted from its source (it cannot step on meta tensors)")
    if t.gradient_checkpointing:
        enable_checkpointing(base, net)
    for m in net.parts.values():
        m.train()
    for p in params:  # a first step, untracked: the optimizer's state exists from the second step on
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    tracker = _tracker() if track else None
    state = [torch.empty(extra_state, dtype=torch.uint8, device=dev)] if extra_state else []
    autocast = _Autocast(dtype if t.mixed_precision != "no" else None, t.sdpa) if dev.type == "meta" else None
    if tracker is not None:
        tracker.track_external(base.unet, base.vae, *base.text_encoders, optimizer, *state)
    emulate = _autocast_everywhere(autocast, base.unet) if autocast is not None else _nothing()
    with tracker if tracker is not None else _nothing(), emulate:
        _step(base, cfg, net, params, optimizer, autocast, dev, dtype, fam, d, t)
    for m in net.parts.values():
        m.eval()
    if t.gradient_checkpointing:
        base.unet.disable_gradient_checkpointing()
    return tracker, net, optimizer, extra_state or 0, notes


_nothing = contextlib.nullcontext


def _step(base, cfg, net, params, optimizer, autocast, dev, dtype, fam, d, t, real: bool = False,
          text_memo: dict | None = None) -> None:
    """The loop's stages (lorakit.train.loop.batch_loss), with empty tensors for the data (``real``: random values,
    for a step that runs on a real device, as lorakit.train.speed_probe times it; ``text_memo``: a frozen text
    encoder's outputs kept per batch size, as the loop keeps them per caption)."""
    b, res = t.train_batch_size, d.resolution

    def new(*shape, dtype=dtype):
        return torch.randn(*shape, device=dev, dtype=dtype) if real else torch.empty(*shape, device=dev, dtype=dtype)

    vae_down = 2 ** (len(base.vae.config.block_out_channels) - 1)
    shape = (b, base.unet.config.in_channels, res // vae_down, res // vae_down)
    if d.cache_latents:
        latents = new(*shape)
    else:  # the VAE encodes the batch every step
        with torch.no_grad():
            pixels = new(b, 3, res, res)
            latents = base.vae.encode(pixels).latent_dist.mean.to(dtype)
            del pixels
    noise = new(*shape)
    timesteps = (torch.randint(0, 1000, (b,), device=dev) if real else torch.empty(b, device=dev, dtype=torch.long))
    noisy = new(*shape)
    length = [te.config.max_position_embeddings for te in base.text_encoders]
    windows = max(1, d.max_token_length // max(1, length[0] - 2))  # kohya's max_token_length: windows of 75
    ids = [torch.zeros(b, *((windows,) if windows > 1 else ()), n, device=dev, dtype=torch.long) for n in length]
    if net.has_text_encoder:
        hidden, pooled = fam.encode_windows(base, ids, cfg.model.clip_skip)
    elif text_memo is not None and b in text_memo:
        hidden, pooled = text_memo[b]
    else:  # frozen: lorakit memoises each caption's embedding after one pass without gradients
        with torch.no_grad():
            hidden, pooled = fam.encode_windows(base, ids, cfg.model.clip_skip)
        if text_memo is not None:
            text_memo[b] = hidden, pooled
    added = fam.added_cond(pooled, [square_sizes(res)] * b, dev, dtype)  # the ids' values cost no memory
    target = new(*shape, dtype=torch.float32)
    if autocast is not None:
        autocast.enabled = True
    ctx = torch.autocast(dev.type, dtype=dtype) if dev.type == "cuda" and t.mixed_precision != "no" else _nothing()
    with ctx:
        pred = base.unet(noisy, timesteps, hidden.to(dtype), added_cond_kwargs=added).sample
    del noisy, hidden, added, noise
    loss = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3)).mean()
    if autocast is not None:
        autocast.enabled = False
    loss.backward()
    del loss, pred, target, latents
    if cfg.optimizer.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, cfg.optimizer.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# ---- the estimate --------------------------------------------------------------------------------------
def setting_key(cfg: TrainConfig) -> tuple:
    """The settings that change memory (the cache key)."""
    n, o, d, t = cfg.network, cfg.optimizer, cfg.data, cfg.training
    return (n.type, n.rank, n.conv_rank, n.train_unet, cfg.train_text_encoder, o.optimizer, o.optimizer_args,
            bool(o.max_grad_norm), d.resolution, d.cache_latents, t.train_batch_size, t.mixed_precision,
            t.gradient_checkpointing, t.sdpa, cfg.model.clip_skip, d.max_token_length)


_ESTIMATES: dict[tuple, MemoryEstimate] = {}


def estimate_memory(cfg: TrainConfig, arch: Architecture | None = None) -> MemoryEstimate:
    """Peak GPU memory of ``cfg``'s training step for its base model (or ``arch``); cached per setting."""
    arch = arch or base_architecture(cfg)
    key = (arch, setting_key(cfg))
    if key not in _ESTIMATES:
        _ESTIMATES[key] = _estimate(arch, cfg)
    return _ESTIMATES[key]


def _estimate(arch: Architecture, cfg: TrainConfig) -> MemoryEstimate:
    dtype = WEIGHT_DTYPES[cfg.training.mixed_precision]
    base = build_meta_base(arch, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker, net, optimizer, extra_state, notes = run_step(base, cfg)
    trained = [p for part in net.parts.values() for p in part.parameters() if p.requires_grad]
    modules = [base.unet, base.vae, *base.text_encoders]
    parameters = sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])
    gradients = sum(p.numel() * p.element_size() for p in trained)
    opt_state = extra_state + sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                                  if isinstance(v, torch.Tensor) and v.device.type == "meta")
    net.detach()
    peak = max(tracker.peak_bytes(), parameters + gradients + opt_state)
    activations = peak - parameters - gradients - opt_state
    allowance = CUDA_CONTEXT + int(ALLOCATOR_SHARE * peak)
    return MemoryEstimate(parameters, gradients, opt_state, activations, allowance, arch.family,
                          tuple(([arch.note] if arch.note else []) + notes))


# ---- what to change when it does not fit ---------------------------------------------------------------
MIN_SAVING = 64 * 2**20  # a change that saves less is not worth offering
RESOLUTION_STEPS = (2048, 1536, 1280, 1024, 896, 768, 640, 512)


def candidate_fixes(cfg: TrainConfig) -> list[tuple[dict, str]]:
    """The changes to try, cheapest for the result first (each one step; they add up)."""
    n, o, d, t = cfg.network, cfg.optimizer, cfg.data, cfg.training
    out: list[tuple[dict, str]] = []
    if not t.gradient_checkpointing:
        out.append(({"training.gradient_checkpointing": True}, "turn on training.gradient_checkpointing (~20% slower)"))
    if t.mixed_precision == "no":
        out.append(({"training.mixed_precision": "bf16"}, "set training.mixed_precision = 'bf16' ('fp16' before RTX 30xx)"))
    if cfg.train_text_encoder and n.train_unet:
        out.append(({"optimizer.text_encoder_lr": 0.0},
                    "train the UNet only (optimizer.text_encoder_lr = 0): the text encoder's outputs are then cached"))
    if t.train_batch_size > 1:
        accum = o.gradient_accumulation_steps * t.train_batch_size
        out.append(({"training.train_batch_size": 1, "optimizer.gradient_accumulation_steps": accum},
                    f"set training.train_batch_size = 1 with optimizer.gradient_accumulation_steps = {accum} "
                    "(the same effective batch)"))
    lower = [r for r in RESOLUTION_STEPS if r < d.resolution and r >= 512]
    if lower:
        res = lower[0]
        changes = {"data.resolution": res}
        if d.enable_bucket and d.min_bucket_reso > res:
            changes["data.min_bucket_reso"] = res
        out.append((changes, f"lower data.resolution to {res}"))
    if n.rank > 8:
        out.append(({"network.rank": n.rank // 2, "network.alpha": n.alpha / 2},
                    f"halve network.rank to {n.rank // 2} (alpha {n.alpha / 2:g}, the same alpha/rank)"))
    if o.optimizer in ("AdamW", "Prodigy", "DAdaptAdam"):
        out.append(({"optimizer.optimizer": "AdamW8bit", "optimizer.optimizer_args": ""},
                    "use optimizer AdamW8bit (pip install bitsandbytes; CUDA only)"))
    elif o.optimizer == "AdamW8bit":
        out.append(({"optimizer.optimizer": "Adafactor", "optimizer.optimizer_args": ""},
                    "use optimizer Adafactor (factored state)"))
    return out


def memory_fixes(cfg: TrainConfig, budget_bytes: int, arch: Architecture | None = None) -> list[Fix]:
    """The cheapest changes that make ``cfg`` fit ``budget_bytes``, in order, each with its saving; [] if it fits.

    lorakit cannot load an fp8 base model, so that is not offered. When even all changes do not fit, the list
    holds them all: the last ``total_after`` says how far it stays above the budget.
    """
    arch = arch or base_architecture(cfg)
    now = estimate_memory(cfg, arch).total
    fixes: list[Fix] = []
    for changes, what in candidate_fixes(cfg):
        if now <= budget_bytes:
            break
        try:
            trial = cfg.replace(changes)
        except LorakitError:
            continue
        after = estimate_memory(trial, arch).total
        if now - after < MIN_SAVING:
            continue
        fixes.append(Fix(changes, what, now - after, after))
        cfg, now = trial, after
    return fixes


def gpu_memory() -> tuple[str, int] | None:
    """(name, total bytes) of the first CUDA GPU, or None."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return props.name, int(props.total_memory)


def report(cfg: TrainConfig, budget_bytes: int | None = None, arch: Architecture | None = None) -> list[str]:
    """Lines for `lorakit config check` and notebook 02: the estimate against the card (or common cards), the fixes."""
    arch = arch or base_architecture(cfg)
    est = estimate_memory(cfg, arch)
    lines = []
    gpu = None if budget_bytes else gpu_memory()
    budget = budget_bytes or (gpu[1] if gpu else None)
    if budget:
        where = f" ({gpu[0]})" if gpu else ""
        lines.append(f"memory: {arch.family} training {est.line(budget)}{where}"
                     + ("" if est.fits(budget) else ": it does not fit."))
    else:
        fits = [c for c in COMMON_CARDS if est.fits(c * GB)]
        cards = f"fits a {fits[0]} GB card" if fits else f"does not fit a {COMMON_CARDS[-1]} GB card"
        lines.append(f"memory: {arch.family} training {est.line()} ({cards}); no GPU found here: "
                     "give --vram GB to compare with yours.")
    lines.append(f"  {est.breakdown()}")
    lines += [f"  note: {n}" for n in est.notes]
    if budget and not est.fits(budget):
        fixes = memory_fixes(cfg, budget, arch)
        if fixes:
            lines.append("  to make it fit, in this order:")
            lines += [f"  {i}. {f.text}" for i, f in enumerate(fixes, 1)]
            if fixes[-1].total_after > budget:
                lines.append(f"  even with all of these it needs about {fixes[-1].total_after / GB:.1f} GB.")
    return lines
