"""bench/gpu_speed.py, the GPU speed table: on the CPU every row runs on a tiny model, changes what it claims and
nothing else, leaves the cached base model as it found it; an out-of-memory row is a row, not a crash. On CUDA
(marked gpu) a short real table."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from lorakit.models.loading import load_base

_spec = importlib.util.spec_from_file_location("bench_gpu_speed", Path(__file__).parents[1] / "bench" / "gpu_speed.py")
bench = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))  # its dataclasses need it there
_spec.loader.exec_module(bench)

# aot_eager: dynamo and AOT autograd as inductor gets them, without compiling kernels (seconds, not a minute)
CPU_ARGS = ["--device", "cpu", "--family", "sd15", "--batch", "2", "--compile-backend", "aot_eager"]


@pytest.fixture(scope="module")
def cpu_rows(tiny_sd1):
    args = bench.parse_args(CPU_ARGS)
    rows = bench.run_cells({"sd15": tiny_sd1}, args.batches, args.variants, args)
    return {r.variant: r for r in rows}, args


def test_every_row_has_a_time_or_a_reason(cpu_rows):
    rows, args = cpu_rows
    assert list(rows) != [] and set(rows) == {v.name for v in bench.VARIANTS}
    for name, r in rows.items():
        if r.status == "skipped":
            assert name == "fp16" and "CPU" in r.reason  # lorakit trains in fp32 on the CPU
            continue
        assert r.status == "ok", (name, r.reason)
        assert r.step_s > 0 and math.isfinite(r.step_s) and math.isfinite(r.loss), name
        assert r.vs_baseline > 0 and r.peak_gb is None and r.mfu is None  # no VRAM, no GPU peak on the CPU
        assert r.facts["steps"] == args.warmup + args.steps and r.facts["flops_per_step"] > 0
    # the same seed, fp32: every row trains the same numbers (a row that moved them would cost quality)
    assert len({round(r.loss, 4) for r in rows.values() if r.loss is not None}) == 1
    assert rows["compile-blocks"].compile_s is not None and rows["no-ckpt"].compile_s is None
    text = bench.table(list(rows.values()), False, args)
    assert "CPU DRY RUN" in text and "say nothing about GPUs" in text
    assert all(name in text for name in rows) and "skipped: lorakit trains in fp32" in text


def test_each_row_changed_what_it_claims(cpu_rows):
    rows, _ = cpu_rows
    base = rows["baseline"].facts
    assert (base["attention"], base["adamw"], base["channels_last"], base["gradient_checkpointing"]) == \
        ("AttnProcessor2_0", "foreach", False, True)
    assert base["compiled_blocks"] == 0 and base["te_forwards"] == base["steps"]  # the encoder ran every step
    assert rows["math-attn"].facts["attention"] == "AttnProcessor"
    assert rows["fused-adamw"].facts["adamw"] == "fused"
    assert rows["channels-last"].facts["channels_last"] is True  # the UNet's conv weight, as training saw it
    assert rows["no-ckpt"].facts["gradient_checkpointing"] is False
    compiled = rows["compile-blocks"].facts
    assert compiled["blocks"] > 0 and compiled["compiled_blocks"] == "all" and compiled["dynamo_graphs"] > 0
    assert rows["cached-te"].facts["te_forwards"] <= 1  # one caption: at most one pass of the text encoder
    for name, r in rows.items():  # and nothing else changed: the bench's own check of each row passed
        if r.status == "ok":
            wrong = {k: v for k, v in bench.expected_facts(bench.ALL_VARIANTS[name], False, "bf16").items()
                     if not bench._holds(r.facts[k], v)}
            assert not wrong, (name, wrong)


def test_the_cached_base_model_is_left_as_it_was(tmp_path, tiny_sd1):
    from lorakit.models import loading

    both = bench.Variant("both", "channels_last and compiled blocks", "bench", channels_last=True,
                         regional_compile=True, claims={"channels_last": True, "compiled_blocks": "all",
                                                        "dynamo_graphs": "some"})
    row = bench.measure("sd15", tiny_sd1, 1, 64, both, bench.parse_args(CPU_ARGS), tmp_path)
    assert row.status == "ok", row.reason
    cached = list(loading._CACHE.values())
    base = load_base(str(tiny_sd1), dtype=torch.float32, device="cpu")
    assert any(b is base for b in cached), "the copy the row trained, not a fresh load"
    assert base.unet.conv_in.weight.is_contiguous()
    assert all(getattr(b, "_compiled_call_impl", None) is None for b in bench.transformer_blocks(base.unet))
    assert not base.unet.is_gradient_checkpointing


def test_a_claim_that_does_not_hold_fails_the_row():
    facts = {"attention": "AttnProcessor2_0", "adamw": "foreach", "channels_last": False,
             "gradient_checkpointing": True, "compiled_blocks": 0, "unet_compiled": False, "dynamo_graphs": 0,
             "te_cached": False, "precision": "no", "weight_dtype": "float32"}
    want = bench.expected_facts(bench.ALL_VARIANTS["channels-last"], False, "bf16")
    assert [k for k, v in want.items() if not bench._holds(facts[k], v)] == ["channels_last"]
    assert not bench._holds(0, "some") and bench._holds(3, "some")


def test_out_of_memory_is_a_row(tmp_path, tiny_sd1, monkeypatch):
    from lorakit.train import loop

    def step(*_a, **_k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(loop, "batch_loss", step)
    args = bench.parse_args(CPU_ARGS)
    row = bench.measure("sd15", tiny_sd1, 1, 64, bench.ALL_VARIANTS["no-ckpt"], args, tmp_path)
    assert (row.status, row.reason, row.step_s) == ("OOM", "out of memory", None)
    assert "no-ckpt" in (text := bench.table([row], False, args)) and "OOM: out of memory" in text
    assert bench.is_oom(RuntimeError("advice")) is False
    wrapped = RuntimeError("CUDA ran out of memory. In order of effect: ...")
    wrapped.__cause__ = torch.OutOfMemoryError("x")  # as train() and prepare() raise it
    assert bench.is_oom(wrapped)


def test_options():
    args = bench.parse_args(["--device", "cpu", "--batch", "1,4", "--skip", "sdxl:4", "--rows", "fp16,compile-unet"])
    assert (args.keys, args.batches, args.skip_cells) == (["sd15", "sdxl"], [1, 4], {("sdxl", 4)})
    assert [v.name for v in args.variants] == ["baseline", "fp16", "compile-unet"]
    assert (args.model, args.steps, args.warmup) == ("tiny", 1, 1)
    for bad in (["--rows", "turbo"], ["--family", "sd3"], ["--batch", "0"], ["--skip", "sdxl"], ["--warmup", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(["--device", "cpu", *bad])


@pytest.mark.gpu
def test_a_short_cuda_table(tmp_path):
    """The whole path on a real GPU, quickly: tiny SD 1.5 at batch 1 and 2, every row, 2 timed steps (the real-size
    table is gpu_check.sh's next part)."""
    out = tmp_path / "rows.json"
    rc = bench.main(["--device", "cuda", "--model", "tiny", "--family", "sd15", "--batch", "1,2", "--steps", "2",
                     "--warmup", "1",
                     "--rows", ",".join([v.name for v in bench.VARIANTS] + ["compile-unet"]), "--json", str(out)])
    rows = json.loads(out.read_text())
    assert rc == 0, [(r["variant"], r["reason"]) for r in rows if r["status"] != "ok"]
    assert len(rows) == 2 * (len(bench.VARIANTS) + 1)
    for r in rows:
        assert r["status"] == "ok" and r["step_s"] > 0 and r["peak_gb"] > 0, r
        assert math.isfinite(r["loss"])
        if bench.real_size.peak_flops(torch.cuda.get_device_name()):
            assert 0 < r["mfu"] < 1
    fp16 = [r for r in rows if r["variant"] == "fp16"]
    assert all(r["facts"]["weight_dtype"] == "float16" for r in fp16)
    assert all(r["facts"]["weight_dtype"] == "bfloat16" for r in rows if r["variant"] == "baseline")
