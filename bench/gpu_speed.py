"""The GPU speed table: which speed settings pay off for LoRA training, one change at a time, through lorakit's trainer.

    python bench/gpu_speed.py                                   # CUDA: SD 1.5 at 512 and SDXL at 1024, batch 1 and 4
    python bench/gpu_speed.py --family sd15 --batch 1 --steps 10 --warmup 3 --json speed.json
    python bench/gpu_speed.py --skip sdxl:4                     # all but SDXL at batch 4
    python bench/gpu_speed.py --device cpu                      # the dry run: every row on a tiny model, 1 + 1 steps

Rows: a baseline (bf16, SDPA, AdamW foreach, no channels_last, gradient checkpointing on, no compile, text-encoder
outputs not cached), then one change per row: fp16, math attention instead of SDPA, fused AdamW, channels_last,
gradient checkpointing off, torch.compile of each transformer block (regional), cached text-encoder outputs
(``--rows`` picks rows; ``compile-unet``, the whole UNet as training.torch_compile compiles it, is there on request).
Columns: it/s and s/step (median of the timed steps after ``--warmup`` steps), peak VRAM (max_memory_allocated
over the timed steps), MFU (model FLOPs of one step, counted by FlopCounterMode on a meta-device build of the same
setting without checkpointing, math attention, over s/step and the GPU's dense bf16 peak), compile s (the row's
warm-up time beyond its steady steps, less the baseline's), the mean loss (the same seed in every row: a row whose
loss moves away from the baseline's costs quality), and it/s against the baseline.

Every row is a real ``lorakit.train.train()`` run. The settings lorakit has are set in the config: mixed_precision,
sdpa, gradient_checkpointing, torch_compile, and AdamW's ``fused=True`` / ``foreach=True`` in optimizer_args
(lorakit itself picks fused on CUDA when optimizer_args names neither). What lorakit has no setting for is done by
this bench to the run's model right after ``prepare()`` and marked "bench" in the table: channels_last (the UNet's
weights) and the regional compile (``BasicTransformerBlock.compile()``, each block). The text encoder is frozen
(the UNet's LoRA only trains, text_encoder_lr 0), so its outputs can be cached without changing what is learned:
lorakit memoises them per caption by itself; the other rows run the frozen text encoder on every step (no
gradients), as sd-scripts does without --cache_text_encoder_outputs. The four images share one caption, so the
cached row's timed steps are what a long run's are once every caption has been seen. Each row checks that it
changed what it claims and nothing else (its "facts"); a row that did not is FAILED, a row out of memory is OOM.

On CUDA the models are bench/real_size.py's real-size random-weight single files (built once into ``--cache``). On
CPU (``--device cpu``, or when torch sees no CUDA) the same rows run on lorakit's tiny models at 64 px for 1 + 1
steps, so that every code path runs; those figures say nothing about GPUs, lorakit trains in fp32 there (the fp16
row is skipped) and peak VRAM and MFU are not measured. lorakit's defaults follow the CUDA table only.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import importlib.util  # noqa: E402

import torch  # noqa: E402

from lorakit.train.events import Callback  # noqa: E402

# bench/real_size.py: the real-size checkpoints and the GPU peak table (registered first: it holds a dataclass)
_spec = importlib.util.spec_from_file_location("bench_real_size", Path(__file__).resolve().parent / "real_size.py")
real_size = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
if not hasattr(real_size, "checkpoint"):
    _spec.loader.exec_module(real_size)

FAMILIES = {"sd15": ("SD 1.5", "sd1", 512), "sdxl": ("SDXL base 1.0", "sdxl", 1024)}  # key: title, tiny family, px
TINY_RESOLUTION = 64
CAPTION = "zkx, a thing"
BASELINE = {  # the table's baseline, on top of TrainConfig's defaults
    "training.mixed_precision": "bf16", "training.sdpa": True, "optimizer.optimizer_args": "foreach=True",
    "training.gradient_checkpointing": True, "training.torch_compile": False, "optimizer.text_encoder_lr": 0.0,
}


@dataclass(frozen=True)
class Variant:
    name: str
    change: str  # the one change, as the table says it
    how: str  # "lorakit" (a setting) or "bench" (done to the model by this script)
    changes: dict = field(default_factory=dict)  # TrainConfig changes on top of BASELINE
    channels_last: bool = False
    regional_compile: bool = False
    cache_te: bool = False
    claims: dict = field(default_factory=dict)  # the facts that differ from the baseline's (see expected_facts)


VARIANTS = (
    Variant("baseline", "bf16, SDPA, AdamW foreach, ckpt, TE each step", "-"),
    Variant("fp16", "training.mixed_precision = fp16", "lorakit", {"training.mixed_precision": "fp16"},
            claims={"weight_dtype": "float16", "precision": "fp16"}),
    Variant("math-attn", "training.sdpa = false (AttnProcessor)", "lorakit", {"training.sdpa": False},
            claims={"attention": "AttnProcessor"}),
    Variant("fused-adamw", "optimizer_args fused=True", "lorakit", {"optimizer.optimizer_args": "fused=True"},
            claims={"adamw": "fused"}),
    Variant("channels-last", "UNet weights channels_last", "bench", channels_last=True,
            claims={"channels_last": True}),
    Variant("no-ckpt", "training.gradient_checkpointing = false", "lorakit",
            {"training.gradient_checkpointing": False}, claims={"gradient_checkpointing": False}),
    Variant("compile-blocks", "torch.compile each BasicTransformerBlock", "bench", regional_compile=True,
            claims={"compiled_blocks": "all", "dynamo_graphs": "some"}),
    Variant("cached-te", "text-encoder outputs cached per caption", "lorakit", cache_te=True,
            claims={"te_cached": True}),
)
EXTRA_VARIANTS = (
    Variant("compile-unet", "training.torch_compile = true (whole UNet)", "lorakit", {"training.torch_compile": True},
            claims={"unet_compiled": True, "dynamo_graphs": "some"}),
)
ALL_VARIANTS = {v.name: v for v in VARIANTS + EXTRA_VARIANTS}
COMPILED = ("compile-blocks", "compile-unet")


@dataclass
class Row:
    """One variant in one cell (family, batch): its figures, or why it has none."""

    family: str
    batch: int
    resolution: int
    variant: str
    status: str = "ok"  # ok, OOM, skipped, FAILED
    reason: str = ""
    step_s: float | None = None
    warmup_s: float | None = None  # the warm-up steps' time beyond steady steps
    peak_gb: float | None = None
    mfu: float | None = None
    loss: float | None = None
    compile_s: float | None = None
    vs_baseline: float | None = None
    facts: dict = field(default_factory=dict)

    @property
    def it_s(self) -> float | None:
        return 1 / self.step_s if self.step_s else None


# ---- what each row does to the run ---------------------------------------------------------------------
def transformer_blocks(unet) -> list[torch.nn.Module]:
    from diffusers.models.attention import BasicTransformerBlock

    return [m for m in unet.modules() if isinstance(m, BasicTransformerBlock)]


def compile_blocks(unet, backend: str) -> int:
    """Regional compilation: each transformer block compiled on its own (nn.Module.compile, in place); the blocks of
    one shape share their compiled code. The number of blocks."""
    blocks = transformer_blocks(unet)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)  # shapes x levels
    for block in blocks:
        block.compile(backend=backend)
    return len(blocks)


def uncompile(unet) -> None:
    """Undo nn.Module.compile on the UNet and its blocks (the base model is cached for the next row)."""
    for m in unet.modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            m._compiled_call_impl = None
    with contextlib.suppress(AttributeError):
        del unet._lorakit_compiled  # training.torch_compile's mark (lorakit.train.prepare.configure_speed)
    torch._dynamo.reset()


def run_facts(run, accelerator) -> dict[str, Any]:
    """What the run does, read off its objects after prepare(): each row's claims are checked against these (and
    against te_cached: the frozen text encoder ran at most once, for the one caption, over two or more steps)."""
    unet = run.base.unet
    opt = getattr(run.optimizer, "optimizer", run.optimizer)  # accelerate wraps it
    blocks = transformer_blocks(unet)
    compiled = sum(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    processors = sorted({type(p).__name__ for p in unet.attn_processors.values()})
    return {
        "precision": accelerator.mixed_precision, "weight_dtype": str(run.weight_dtype).removeprefix("torch."),
        "attention": ",".join(processors),
        "adamw": "fused" if opt.defaults.get("fused") else "foreach" if opt.defaults.get("foreach") else "for-loop",
        "channels_last": unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last),
        "gradient_checkpointing": bool(unet.is_gradient_checkpointing),
        "blocks": len(blocks), "compiled_blocks": "all" if blocks and compiled == len(blocks) else compiled,
        "unet_compiled": getattr(unet, "_compiled_call_impl", None) is not None,
    }


def expected_facts(variant: Variant, cuda: bool, precision: str) -> dict[str, Any]:
    """The baseline's facts with the variant's claims on top: one change, and nothing else changed."""
    facts = {"attention": "AttnProcessor2_0", "adamw": "foreach", "channels_last": False,
             "gradient_checkpointing": True, "compiled_blocks": 0, "unet_compiled": False, "dynamo_graphs": 0,
             "te_cached": False}
    if cuda:
        facts |= {"precision": precision, "weight_dtype": {"bf16": "bfloat16", "fp16": "float16"}[precision]}
    else:
        facts |= {"precision": "no", "weight_dtype": "float32"}  # lorakit trains in fp32 on the CPU
    return facts | (variant.claims if cuda else {k: v for k, v in variant.claims.items()
                                                 if k not in ("precision", "weight_dtype")})


class _Clock(Callback):
    """Step times of the run (after on_start), the peak memory of the timed steps, the losses."""

    def __init__(self, cuda: bool, warmup: int, total: int):
        self.cuda, self.warmup, self.total = cuda, warmup, total
        self.marks: list[float] = []
        self.losses: list[float] = []
        self.peak = 0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_start(self, info: dict) -> None:
        self.marks = [self._now()]

    def on_step(self, step: int, loss: float, lr: float) -> None:
        self.marks.append(self._now())
        self.losses.append(loss)
        if self.cuda and step == self.warmup:
            torch.cuda.reset_peak_memory_stats()
        if self.cuda and step == self.total:
            self.peak = torch.cuda.max_memory_allocated()

    def figures(self) -> tuple[float, float, float]:
        """(median seconds of the timed steps, warm-up seconds beyond that many steady steps, their mean loss)."""
        timed = sorted(b - a for a, b in zip(self.marks[self.warmup:], self.marks[self.warmup + 1:], strict=False))
        median = timed[len(timed) // 2]
        warm = self.marks[self.warmup] - self.marks[0]
        losses = self.losses[self.warmup:]
        return median, warm - self.warmup * median, sum(losses) / len(losses)


@contextlib.contextmanager
def row_hooks(variant: Variant, compile_backend: str, facts: dict):
    """What the bench does to a run beside its config: after ``prepare()`` the UNet in channels_last or its blocks
    compiled, and the facts read; without ``cache_te``, the frozen text encoder runs on every step (lorakit would
    memoise its outputs per caption). Undone on leaving: the base model stays cached for the next row."""
    from lorakit.train import loop

    real_prepare, real_encode = loop.prepare, loop.encode_text
    torch._dynamo.reset()  # and its counters: this row's graphs only
    torch._dynamo.utils.counters.clear()
    state: dict[str, Any] = {"te_forwards": 0, "steps": 0, "run": None}

    def prepare(project, cfg, accelerator):
        run = real_prepare(project, cfg, accelerator)
        state["run"] = run
        state["hook"] = run.base.text_encoders[0].register_forward_hook(
            lambda *_: state.__setitem__("te_forwards", state["te_forwards"] + 1))
        if variant.channels_last:
            run.base.unet.to(memory_format=torch.channels_last)
        if variant.regional_compile:
            compile_blocks(run.base.unet, compile_backend)
        facts.update(run_facts(run, accelerator))  # now: train() undoes some of them (checkpointing) at its end
        return run

    def encode_text(base, cfg, captions, te_training, memo):
        state["steps"] += 1
        if te_training or variant.cache_te:
            return real_encode(base, cfg, captions, te_training, memo)
        with torch.no_grad():  # the batch's captions through the frozen encoder, every step
            return real_encode(base, cfg, captions, True, memo)

    loop.prepare, loop.encode_text = prepare, encode_text
    try:
        yield state
    finally:
        loop.prepare, loop.encode_text = real_prepare, real_encode
        run = state["run"]
        if run is not None:
            te, steps = state["te_forwards"], state["steps"]
            stats = torch._dynamo.utils.counters
            facts.update({"te_forwards": te, "steps": steps, "te_cached": te <= 1 < steps,
                          "dynamo_graphs": int(stats["stats"]["unique_graphs"]),
                          "graph_breaks": int(sum(stats["graph_break"].values()))})
            state["hook"].remove()
            run.base.unet.to(memory_format=torch.contiguous_format)
            uncompile(run.base.unet)


# ---- one row ------------------------------------------------------------------------------------------
def make_project(root: Path, resolution: int):
    """4 random images with one caption, in a new project."""
    return real_size.random_project(root, resolution, CAPTION)


def row_config(model: Path, resolution: int, batch: int, steps: int, variant: Variant):
    from lorakit.config.schema import TrainConfig

    values = {
        "model.base_model": str(model), "data.resolution": resolution, "data.min_bucket_reso": min(256, resolution),
        "data.max_bucket_reso": max(1024, resolution), "data.bucket_reso_steps": 32 if resolution < 256 else 64,
        "data.cache_latents_to_disk": False, "network.rank": 16, "network.alpha": 16.0,
        "training.train_batch_size": batch, "training.max_train_epochs": 10_000, "training.max_train_steps": steps,
        "training.num_threads": torch.get_num_threads(), "saving.save_every_n_epochs": 0, "saving.save_state": False,
        "sampling.sample_every_n_epochs": 0, **BASELINE, **variant.changes,
    }
    return TrainConfig().replace(values)


def _holds(got: Any, want: Any) -> bool:
    return isinstance(got, int) and got > 0 if want == "some" else got == want


def is_oom(error: BaseException | None) -> bool:
    """torch's out-of-memory error, or lorakit's advice raised from one (train() and prepare() wrap it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, torch.OutOfMemoryError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def free_memory(cuda: bool) -> None:
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()


def measure(key: str, model: Path, batch: int, resolution: int, variant: Variant, args, root: Path) -> Row:
    """One row: a lorakit training run of ``warmup + steps`` steps with the variant's change."""
    from accelerate.state import AcceleratorState

    from lorakit.train.loop import train

    cuda = args.device == "cuda"
    row = Row(key, batch, resolution, variant.name)
    if not cuda and "training.mixed_precision" in variant.changes:
        row.status, row.reason = "skipped", "lorakit trains in fp32 on the CPU: mixed precision is for CUDA"
        return row
    total = args.warmup + args.steps
    cfg = row_config(model, resolution, batch, total, variant)
    project = make_project(root / f"{key}-{batch}-{variant.name}", resolution)
    clock = _Clock(cuda, args.warmup, total)
    AcceleratorState._reset_state()  # a new mixed precision in this process (accelerate keeps the first one)
    free_memory(cuda)
    try:
        with row_hooks(variant, args.compile_backend, row.facts), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(project, cfg, callbacks=[clock])
    except Exception as e:  # noqa: BLE001 - every failure becomes a row, the table goes on
        row.status = "OOM" if is_oom(e) else "FAILED"
        row.reason = "out of memory" if row.status == "OOM" else f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return row
    finally:
        AcceleratorState._reset_state()  # and none left behind for whatever trains next in this process
        free_memory(cuda)
    row.step_s, row.warmup_s, row.loss = clock.figures()
    row.peak_gb = clock.peak / 2**30 if cuda else None
    wrong = {k: (row.facts.get(k), v) for k, v in expected_facts(variant, cuda, cfg.training.mixed_precision).items()
             if not _holds(row.facts.get(k), v)}
    if wrong:
        row.status = "FAILED"
        row.reason = "not what the row claims: " + ", ".join(f"{k} {got!r}, expected {want!r}"
                                                             for k, (got, want) in wrong.items())
    return row


# ---- a cell: one family at one batch size ----------------------------------------------------------
def model_flops(model: Path, resolution: int, batch: int) -> float:
    """FLOPs of one training step of the baseline without checkpointing (model FLOPs: no recomputation), math
    attention, counted by FlopCounterMode on a meta-device build of the model (no memory, no GPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lorakit.train import memory as M

    cfg = row_config(model, resolution, batch, 1, ALL_VARIANTS["baseline"]).replace(
        {"training.gradient_checkpointing": False, "training.sdpa": False})
    base = M.build_meta_base(M.base_architecture(cfg), torch.bfloat16)
    counter = FlopCounterMode(display=False)
    with warnings.catch_warnings(), counter:
        warnings.simplefilter("ignore")
        _, net, *_ = M.run_step(base, cfg, track=False)
    net.detach()
    return float(counter.get_total_flops())


def run_cells(models: dict[str, Path], batches: list[int], variants: list[Variant], args,
              skip: set[tuple[str, int]] = frozenset()) -> list[Row]:
    """Every row of every cell; rows in fp16 after the others (one base model resident at a time)."""
    from lorakit.models.loading import clear_cache

    cuda = args.device == "cuda"
    peak = real_size.peak_flops(torch.cuda.get_device_name()) if cuda else None
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="lorakit-gpu-speed-") as tmp:
        for key, model in models.items():
            resolution = args.resolution or (FAMILIES[key][2] if args.model == "real" else TINY_RESOLUTION)
            cells = [b for b in batches if (key, b) not in skip]
            flops = {b: model_flops(model, resolution, b) for b in cells}
            order = sorted(((b, v) for b in cells for v in variants),
                           key=lambda bv: "training.mixed_precision" in bv[1].changes)
            precision = None
            for batch, variant in order:
                wanted = variant.changes.get("training.mixed_precision", "bf16")
                if wanted != precision:  # the other precision's copy of the base model leaves memory first
                    clear_cache()
                    precision = wanted
                t0 = time.perf_counter()
                row = measure(key, model, batch, resolution, variant, args, Path(tmp))
                row.facts["flops_per_step"] = flops[batch]
                if row.step_s and peak:
                    row.mfu = flops[batch] / row.step_s / peak
                rows.append(row)
                print(f"  {key} batch {batch} {variant.name}: {row.status}"
                      + (f", {row.step_s:.3f} s/step" if row.step_s else f" ({row.reason})")
                      + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
            clear_cache()
            free_memory(cuda)
    compare(rows)
    return rows


def compare(rows: list[Row]) -> None:
    """it/s against the cell's baseline; compile s = the row's warm-up excess less the baseline's."""
    base = {(r.family, r.batch): r for r in rows if r.variant == "baseline" and r.step_s}
    for r in rows:
        b = base.get((r.family, r.batch))
        if r.step_s and b:
            r.vs_baseline = b.step_s / r.step_s
        if r.variant in COMPILED and r.warmup_s is not None:
            r.compile_s = r.warmup_s - (b.warmup_s if b else 0.0)


# ---- the table -----------------------------------------------------------------------------------------
COLUMNS = (("it/s", 7, ".2f"), ("s/step", 7, ".3f"), ("peak GB", 7, ".2f"), ("MFU %", 6, ".1f"),
           ("compile s", 9, ".1f"), ("loss", 7, ".4f"), ("vs base", 7, ".2f"))


def _figures(r: Row) -> list[float | None]:
    return [r.it_s, r.step_s, r.peak_gb, r.mfu and 100 * r.mfu, r.compile_s, r.loss, r.vs_baseline]


def table(rows: list[Row], cuda: bool, args) -> str:
    """The rows as text, a block per cell, in VARIANTS order."""
    device = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}" if cuda else \
        f"CPU, {torch.get_num_threads()} thread(s): a dry run, these figures say nothing about GPUs"
    lines = [f"device: {device}; torch {torch.__version__}; {args.steps} timed step(s) after {args.warmup} "
             f"warm-up step(s); LoRA rank 16 on the UNet, text encoder frozen"]
    head = f"{'row':<15} {'change':<46} {'how':<7} " + " ".join(f"{name:>{w}}" for name, w, _ in COLUMNS)
    for key, batch in dict.fromkeys((r.family, r.batch) for r in rows):
        cell = sorted((r for r in rows if (r.family, r.batch) == (key, batch)),
                      key=lambda r: list(ALL_VARIANTS).index(r.variant))
        title = FAMILIES[key][0] + ("" if args.model == "real" else f" (tiny {FAMILIES[key][1]} model)")
        flops = cell[0].facts.get("flops_per_step")
        lines += ["", f"== {title} at {cell[0].resolution} px, batch {batch}"
                  + (f"; {flops / 1e12:.3f} TFLOP/step" if flops else ""), head, "-" * len(head)]
        for r in cell:
            v = ALL_VARIANTS[r.variant]
            start = f"{r.variant:<15} {v.change:<46} {v.how:<7} "
            if r.status != "ok":
                lines.append(start + f"{r.status}: {r.reason}")
                continue
            lines.append(start + " ".join(f"{'-' if x is None or not math.isfinite(x) else format(x, f):>{w}}"
                                          for x, (_, w, f) in zip(_figures(r), COLUMNS, strict=True)))
    lines += ["", "how: lorakit = a TrainConfig setting; bench = done to the model by bench/gpu_speed.py (no lorakit "
              "setting). vs base: it/s over the baseline's, above 1 is faster. compile s: the row's warm-up beyond "
              "its steady steps, less the baseline's. loss: the timed steps' mean, the same seed in every row."]
    if not cuda:
        lines.append("CPU DRY RUN: every row's code ran; the times are not GPU figures and set no default.")
    return "\n".join(lines)


def tiny_models(folder: Path, keys: list[str]) -> dict[str, Path]:
    from lorakit.models.loading import quiet_loading
    from lorakit.models.tiny import save_tiny_pipeline

    with quiet_loading():
        return {k: save_tiny_pipeline(folder / f"tiny-{FAMILIES[k][1]}", FAMILIES[k][1], seed=0) for k in keys}


def real_models(cache: Path, keys: list[str]) -> dict[str, Path]:
    models = {}
    for key in keys:
        path, how = real_size.checkpoint(cache, key)
        print(f"{FAMILIES[key][0]}: {path} ({path.stat().st_size / 1e9:.2f} GB, random weights, {how})", flush=True)
        models[key] = path
    return models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked and resolved: device, model, steps and warm-up chosen; keys, variants, batches, skip."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sd15,sdxl", help=f"comma-separated, of {', '.join(FAMILIES)}")
    parser.add_argument("--batch", default="1,4", help="batch sizes, comma-separated")
    parser.add_argument("--skip", default="", help="cells to leave out, e.g. sdxl:4")
    parser.add_argument("--rows", default=",".join(v.name for v in VARIANTS),
                        help=f"comma-separated, of {', '.join(ALL_VARIANTS)} (the baseline always runs)")
    parser.add_argument("--steps", type=int, help="timed steps per row (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--warmup", type=int, help="steps before timing, at least 1 (default 2 on CUDA, 1 on CPU)")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--model", default="auto", choices=["auto", "real", "tiny"],
                        help="real-size random checkpoints (CUDA's default) or tiny models (CPU's)")
    parser.add_argument("--resolution", type=int, default=0, help="instead of the family's (512 / 1024; tiny models 64)")
    parser.add_argument("--cache", type=Path, default=real_size.DEFAULT_CACHE, help="where real-size files are kept")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of compile-blocks (compile-unet is lorakit's own: inductor)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    args.keys = list(dict.fromkeys(k.strip() for k in args.family.split(",") if k.strip()))
    if not args.keys or any(k not in FAMILIES for k in args.keys):
        parser.error(f"--family: choose from {', '.join(FAMILIES)}")
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    if any(n not in ALL_VARIANTS for n in names):
        parser.error(f"--rows: choose from {', '.join(ALL_VARIANTS)}")
    args.variants = [ALL_VARIANTS["baseline"]] + [ALL_VARIANTS[n] for n in dict.fromkeys(names) if n != "baseline"]
    try:
        args.batches = list(dict.fromkeys(int(b) for b in args.batch.split(",") if b.strip()))
        args.skip_cells = {(c.split(":")[0].strip(), int(c.split(":")[1])) for c in args.skip.split(",") if c.strip()}
    except (ValueError, IndexError):
        parser.error("--batch takes numbers (1,4), --skip family:batch pairs (sdxl:4)")
    if not args.batches or min(args.batches) < 1:
        parser.error("--batch: at least one batch size of 1 or more")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device == "cuda"
    if args.model == "auto":
        args.model = "real" if cuda else "tiny"
    args.steps = (5 if cuda else 1) if args.steps is None else args.steps
    args.warmup = (2 if cuda else 1) if args.warmup is None else args.warmup
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup: at least 1 (the first step always pays one-off costs)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = args.device == "cuda"
    if not cuda and torch.cuda.is_available():  # lorakit trains on CUDA whenever torch sees it: hide it
        import subprocess

        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
        return subprocess.run(child, env=os.environ | {"CUDA_VISIBLE_DEVICES": ""}).returncode
    if not cuda:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print("CPU DRY RUN: no CUDA here (or --device cpu); the rows run on tiny models so that every code path "
              "runs. These figures say nothing about GPUs; lorakit's defaults stay as they are.", flush=True)
    with tempfile.TemporaryDirectory(prefix="lorakit-gpu-speed-models-") as tmp:
        models = real_models(args.cache.expanduser(), args.keys) if args.model == "real" else \
            tiny_models(Path(tmp), args.keys)
        rows = run_cells(models, args.batches, args.variants, args, args.skip_cells)
    print(table(rows, cuda, args), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"it_s": r.it_s} for r in rows], indent=1), encoding="utf-8")
    return 1 if any(r.status == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
