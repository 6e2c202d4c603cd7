"""GPU memory estimates without a GPU (lorakit.train.memory): monotone where they must be, exact where they can be."""

from __future__ import annotations

import pytest
import torch

from lorakit.config.schema import TrainConfig
from lorakit.models import families
from lorakit.models.tiny import build_tiny_pipeline
from lorakit.train import memory as M

BASE = {"training.mixed_precision": "bf16", "data.resolution": 128, "data.min_bucket_reso": 64,
        "optimizer.text_encoder_lr": 0.0}


@pytest.fixture(scope="module")
def tiny_arch() -> M.Architecture:
    pipe = build_tiny_pipeline("sd1")
    return M._arch("sd1", {"unet": dict(pipe.unet.config), "vae": dict(pipe.vae.config),
                           "text_encoder": pipe.text_encoder.config.to_dict()})


def est(arch, **changes) -> M.MemoryEstimate:
    return M.estimate_memory(TrainConfig().replace({**BASE, **changes}), arch)


def test_estimates_are_monotone(tiny_arch):
    one = est(tiny_arch)
    assert est(tiny_arch, **{"training.train_batch_size": 2}).total > one.total
    assert est(tiny_arch, **{"training.gradient_checkpointing": True}).activations < one.activations
    assert est(tiny_arch, **{"network.rank": 128}).total > est(tiny_arch, **{"network.rank": 16}).total
    adamw8 = est(tiny_arch, **{"optimizer.optimizer": "AdamW8bit"})
    assert adamw8.optimizer_state < one.optimizer_state and adamw8.total < one.total
    trained_te = est(tiny_arch, **{"optimizer.text_encoder_lr": 5e-5})
    assert trained_te.total > one.total and trained_te.gradients > one.gradients
    assert est(tiny_arch, **{"data.resolution": 256}).activations > one.activations
    # kohya's max_token_length: a trained text encoder keeps three windows' activations for the backward pass
    te = {"optimizer.text_encoder_lr": 5e-5}
    assert est(tiny_arch, **te, **{"data.max_token_length": 225}).total > trained_te.total


def test_parameters_gradients_and_state_are_the_real_counts(tiny_arch):
    from lorakit.lora.network import Network

    cfg = TrainConfig().replace(BASE)
    e = M.estimate_memory(cfg, tiny_arch)
    base = M.build_meta_base(tiny_arch, torch.bfloat16)
    frozen = sum(p.numel() * 2 for m in (base.unet, base.vae, *base.text_encoders) for p in m.parameters())
    frozen += sum(b.numel() * b.element_size() for m in (base.unet, base.vae, *base.text_encoders) for b in m.buffers())
    net = Network.attach(base, cfg)
    lora = sum(p.numel() for p in net.parameters("lora_unet"))
    net.detach()
    assert lora > 0
    assert e.gradients == 4 * lora  # fp32 adapter gradients
    assert e.parameters == frozen + 4 * lora  # bf16 base, fp32 adapter
    assert 8 * lora <= e.optimizer_state <= 8 * lora + 64 * 1024  # AdamW: two fp32 moments (+ step counters)
    assert e.step_peak == e.parameters + e.gradients + e.optimizer_state + e.activations
    assert e.total == e.step_peak + M.CUDA_CONTEXT + int(M.ALLOCATOR_SHARE * e.step_peak)


def test_analytic_optimizer_state():
    big, small = torch.empty(16, 320, device="meta"), torch.empty(100, device="meta")
    assert M.analytic_optimizer_state("AdamW8bit", [big, small], {}) == 2 * 5120 + 8 * 20 + 8 * 100
    assert M.analytic_optimizer_state("AdamW8bit", [small], {"min_8bit_size": 0}) == 2 * 100 + 8
    assert M.analytic_optimizer_state("DAdaptAdam", [big], {}) == 12 * 5120
    assert M.analytic_optimizer_state("Prodigy", [big], {"slice_p": 11}) == 8 * 5120 + 8 * 466
    assert M.analytic_optimizer_state("AdamW", [big], {}) is None  # it runs for real


def test_fixes_are_ordered_and_each_lowers_the_estimate(tiny_arch):
    cfg = TrainConfig().replace({**BASE, "training.train_batch_size": 4, "data.resolution": 256,
                                 "optimizer.text_encoder_lr": 5e-5})
    start = M.estimate_memory(cfg, tiny_arch).total
    fixes = M.memory_fixes(cfg, 1, tiny_arch)  # nothing fits one byte: every useful change is listed
    order = [c for c, _ in M.candidate_fixes(cfg)]
    assert [f.changes for f in fixes] == [c for c in order if c in [f.changes for f in fixes]]
    assert fixes[0].changes == {"training.gradient_checkpointing": True}
    previous = start
    for f in fixes:
        assert f.saving >= M.MIN_SAVING and f.total_after == previous - f.saving
        previous = f.total_after
    assert M.memory_fixes(cfg, start, tiny_arch) == []  # it fits: nothing to change
    # a budget reached after the first fix stops there
    assert len(M.memory_fixes(cfg, fixes[0].total_after, tiny_arch)) == 1


def test_report_lines(tiny_arch):
    cfg = TrainConfig().replace(BASE)
    e = M.estimate_memory(cfg, tiny_arch)
    lines = M.report(cfg, 24 * M.GB, tiny_arch)
    assert lines[0] == f"memory: sd1 training needs about {e.total / M.GB:.1f} GB of your 24.0 GB"
    short = M.report(cfg, e.total - 1, tiny_arch)
    assert short[0].endswith(f"of your {(e.total - 1) / M.GB:.1f} GB: it does not fit.")
    assert M.report(cfg, None, tiny_arch)[0].startswith(f"memory: sd1 training {e.line()} (fits a 8 GB card)")


def test_unreadable_base_falls_back_to_the_config_family():
    cfg = TrainConfig().replace({"model.base_model": "/nowhere/model.safetensors", "model.family": "sdxl"})
    arch = M.base_architecture(cfg)
    assert arch.family == "sdxl" and "not found" in arch.note
    assert arch.configs["unet"] == families.get("sdxl").architecture_configs()["unet"]


def test_single_file_family_from_its_header(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"  # the header is all the estimate reads: two tensor names suffice
    save_file({"model.diffusion_model.out.0.weight": torch.zeros(1),
               "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(1)}, path)
    arch = M.base_architecture(TrainConfig().replace({"model.base_model": str(path)}))
    assert arch.family == "sd1" and not arch.note


def test_config_check_prints_the_estimate(tmp_path, capsys):
    from lorakit.cli.main import main

    path = tmp_path / "lorakit.toml"
    TrainConfig().replace({"data.resolution": 128, "data.min_bucket_reso": 64}).save(path)
    assert main(["config", "check", str(path), "--vram", "8"]) == 0
    out = capsys.readouterr().out
    # the default base is the demo's toy model, which trains as sd2-v (one CLIP encoder, v-prediction): the
    # estimate names the family training will use
    assert "memory: sd2-v training needs about" in out and "of your 8.0 GB" in out


def test_form_shows_the_memory_line(tiny_arch, monkeypatch):
    pytest.importorskip("ipywidgets")
    from lorakit.ui.hyperparameters import HyperparameterForm

    monkeypatch.setattr(M, "base_architecture", lambda cfg: tiny_arch)
    form = HyperparameterForm(TrainConfig().replace(BASE))
    text = form.memory(16 * M.GB)
    assert text.startswith("memory: sd1 training needs about") and "of your 16.0 GB" in text
    assert "needs about" in form.memory_out.value


def test_real_size_sd15_reference_point():
    """SD 1.5, 512 px, batch 1, bf16, gradient checkpointing, UNet only: sd-scripts trains it in about 6 GB."""
    arch = M._arch("sd1", families.get("sd1").architecture_configs())
    e = est(arch, **{"data.resolution": 512, "data.min_bucket_reso": 256, "training.gradient_checkpointing": True})
    assert 1.9 * M.GB < e.parameters < 2.1 * M.GB  # UNet 860 M + CLIP-L 123 M + VAE 84 M parameters in bf16
    assert e.total < 6 * M.GB


def test_bench_reference_points_are_valid_configs():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_vram", Path(__file__).parents[1] / "bench" / "vram.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for _, family, changes, _ in bench.POINTS:
        cfg = bench.point_config(changes)
        assert cfg.training.mixed_precision == "bf16" and not cfg.train_text_encoder and family in families.FAMILIES
