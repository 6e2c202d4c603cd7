"""Precision and memory options: fp32 adapters on a half base, checkpointing, accumulation, clipping, OOM advice."""

from __future__ import annotations

import pytest
import torch
from test_families import _project

import lorakit.train.prepare as prepare_mod
from lorakit.config.schema import TrainConfig
from lorakit.lora.network import Network
from lorakit.models.loading import load_base
from lorakit.train.loop import Callback, train


@pytest.fixture(scope="module")
def sd1(tiny_sd1):
    return tiny_sd1


def test_oom_is_answered_with_advice(sd1, tmp_path, monkeypatch):
    project, cfg = _project(tmp_path, sd1, steps=2)
    base = load_base(str(sd1))

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(base.unet, "forward", out_of_memory)
    with pytest.raises(RuntimeError) as err:
        train(project, cfg)
    message = str(err.value)
    for advice in ("train_batch_size", "gradient_checkpointing", "cache_latents", "AdamW8bit", "resolution"):
        assert advice in message
    assert isinstance(err.value.__cause__, torch.cuda.OutOfMemoryError)
    monkeypatch.undo()
    assert not any("lora" in n for n, _ in base.unet.named_modules()), "the cached base model is left clean"


def test_half_base_with_fp32_adapter_under_autocast(sd1):
    """The CUDA recipe (frozen bf16 base, fp32 LoRA, autocast as accelerate's bf16 mode does), run on the CPU."""
    base = load_base(str(sd1), dtype=torch.bfloat16, device="cpu")
    cfg = TrainConfig()
    cfg.network.rank, cfg.optimizer.text_encoder_lr = 4, 0.0
    net = Network.attach(base, cfg)
    try:
        params = net.parameters("lora_unet")
        assert params and all(p.dtype == torch.float32 for p in params)
        assert all(p.dtype == torch.bfloat16 for n, p in base.unet.named_parameters() if "lora" not in n)
        latents = torch.randn(1, 4, 8, 8, dtype=torch.bfloat16)
        hidden = torch.randn(1, 77, 32, dtype=torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = base.unet(latents, torch.tensor([500]), hidden).sample
        loss = pred.float().pow(2).mean()
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
        assert all(p.grad is None for n, p in base.unet.named_parameters() if "lora" not in n), "base stays frozen"
    finally:
        net.detach()


def test_gradient_checkpointing_gives_the_same_lora(sd1, tmp_path):
    from safetensors.torch import load_file

    files = []
    for on in (False, True):
        project, cfg = _project(tmp_path / str(on), sd1, steps=2, training__gradient_checkpointing=on)
        files.append(load_file(train(project, cfg).final))
    for key in files[0]:
        torch.testing.assert_close(files[0][key], files[1][key], rtol=1e-4, atol=1e-6)
    assert not load_base(str(sd1)).unet.is_gradient_checkpointing, "switched off again after the run"


class _Steps(Callback):
    def __init__(self):
        self.steps = []

    def on_step(self, step, loss, lr):
        self.steps.append(step)


def _count_optimizer_steps(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = prepare_mod.build_optimizer

    def counting(cfg, groups):
        opt = real(cfg, groups)
        opt.register_step_post_hook(lambda *_: calls.append(1))
        return opt

    monkeypatch.setattr(prepare_mod, "build_optimizer", counting)
    return calls


def test_gradient_accumulation_steps_once_per_n_batches(sd1, tmp_path, monkeypatch):
    calls = _count_optimizer_steps(monkeypatch)
    project, cfg = _project(tmp_path, sd1, steps=2, optimizer__gradient_accumulation_steps=3)
    cb = _Steps()
    result = train(project, cfg, callbacks=[cb])
    assert result.steps == 2 and cb.steps == [1, 2]
    assert len(calls) == 2, "6 batches, one optimizer update per 3"


def test_max_grad_norm_clips_the_update(sd1, tmp_path, monkeypatch):
    """With SGD (lr 1) the update is the clipped gradient itself, so its norm is at most max_grad_norm."""
    holder, before = [], []
    real_attach = Network.attach

    def attach(cls, base, cfg):
        net = real_attach(base, cfg)
        holder.append(net)
        before.append(torch.cat([p.detach().flatten().clone() for p in net.parameters("lora_unet")]))
        return net

    monkeypatch.setattr(Network, "attach", classmethod(attach))
    moves = []

    class Measure(Callback):
        def on_step(self, step, loss, lr):
            now = torch.cat([p.detach().flatten() for p in holder[-1].parameters("lora_unet")])
            moves.append((now - before[-1]).norm().item())

    for clip in (1e-4, 0.0):
        project, cfg = _project(tmp_path / str(clip), sd1, steps=1, optimizer__optimizer="SGD",
                                optimizer__unet_lr=1.0, optimizer__text_encoder_lr=0.0,
                                optimizer__lr_scheduler="constant", optimizer__max_grad_norm=clip)
        train(project, cfg, callbacks=[Measure()])
    clipped, free = moves
    assert clipped <= 1e-4 * 1.001 and free > 10 * clipped


def test_sdpa_attention_is_set(sd1):
    from diffusers.models.attention_processor import AttnProcessor2_0

    base = load_base(str(sd1))
    cfg = TrainConfig()
    cfg.training.sdpa = True
    prepare_mod.configure_speed(base, cfg)
    assert all(isinstance(p, AttnProcessor2_0) for p in base.unet.attn_processors.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda(sd1, tmp_path, precision):
    from safetensors.torch import load_file

    project, cfg = _project(tmp_path, sd1, steps=3, training__mixed_precision=precision)
    result = train(project, cfg)
    tensors = load_file(result.final)
    assert all(torch.isfinite(t).all() for t in tensors.values())
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_compile_trains_the_same_lora_on_cuda(sd1, tmp_path):
    from safetensors.torch import load_file

    # SGD: the update is linear in the gradient (Adam's first steps amplify kernel-order noise to ±lr)
    files, losses = [], []
    for compile_ in (False, True):
        project, cfg = _project(tmp_path / str(compile_), sd1, steps=3, training__torch_compile=compile_,
                                optimizer__optimizer="SGD", optimizer__text_encoder_lr=0.0)
        result = train(project, cfg)
        files.append(load_file(result.final))
        losses.append(result.losses[0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    for key in files[0]:
        torch.testing.assert_close(files[0][key], files[1][key], rtol=1e-3, atol=1e-5)


def test_a_second_run_in_the_same_process_may_change_the_precision(sd1, tmp_path):
    """accelerate keeps the first Accelerator's mixed precision for the process and refuses another: a notebook's
    second run (after a change of precision, here simulated by a bf16 Accelerator) would stop. train() starts anew,
    and leaves the distributed state alone."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(reset_partial_state=False)  # what earlier tests left
    Accelerator(mixed_precision="bf16", cpu=True)
    with pytest.raises(ValueError, match="already been initialized"):  # what a second run met before
        Accelerator(mixed_precision="no", cpu=True)
    partial = PartialState()._shared_state.copy()
    project, cfg = _project(tmp_path, sd1, steps=2)
    result = train(project, cfg)
    assert result.final.is_file()
    assert AcceleratorState().mixed_precision == "no"
    assert PartialState()._shared_state.keys() == partial.keys()
