"""Training samples that help judging: several strengths, a step-0 baseline, the same seeds, an epoch × strength sheet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError
from lorakit.lora.network import ADAPTER, Network
from lorakit.models.loading import load_base
from lorakit.train.loop import train
from lorakit.train.progress import samples_sheet
from lorakit.train.sampling import draw_samples, parse_sample_name, strength_sheets

PROMPTS = ["zkx, thing --w 32 --h 32 --s 2", "zkx --w 32 --h 32 --s 2 --d 7"]


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_strengths_baseline_and_sheet(tiny_project, monkeypatch):
    project, cfg = tiny_project
    cfg.sampling.sample_prompts = PROMPTS
    cfg.sampling.sample_every_n_epochs = 1
    cfg.sampling.sample_strengths = [0.0, 1.0]
    cfg.sampling.sample_at_start = True
    result = train(project, cfg)
    names = sorted(str(p.relative_to(project.samples_dir)) for p in project.samples_dir.glob("0*/*.png"))
    assert names == ["000000/zkx_000000_00.png", "000000/zkx_000000_01.png",
                     "000001/zkx_000008_s0_00.png", "000001/zkx_000008_s0_01.png",
                     "000001/zkx_000008_s1_00.png", "000001/zkx_000008_s1_01.png",
                     "000002/zkx_000016_s0_00.png", "000002/zkx_000016_s0_01.png",
                     "000002/zkx_000016_s1_00.png", "000002/zkx_000016_s1_01.png"]
    assert len(result.samples) == 10
    s = project.samples_dir
    for i in range(2):  # the same seed every time: strength 0 is the baseline, pixel for pixel
        base = _pixels(s / f"000000/zkx_000000_{i:02d}.png")
        for epoch, step in ((1, 8), (2, 16)):
            assert np.array_equal(_pixels(s / f"{epoch:06d}/zkx_{step:06d}_s0_{i:02d}.png"), base)
        assert not np.array_equal(_pixels(s / f"000002/zkx_000016_s1_{i:02d}.png"), base), "the LoRA shows at 1"
    assert parse_sample_name(s / "000002/zkx_000016_s1_01.png").__dict__ == \
        {"epoch": 2, "step": 16, "strength": 1.0, "index": 1}
    assert parse_sample_name(s / "000000/zkx_000000_00.png").strength is None

    assert sorted(p.name for p in (s / "sheets").iterdir()) == ["zkx_sheet_00.png", "zkx_sheet_01.png"]
    sheets = strength_sheets(s, PROMPTS, name="zkx")
    assert Image.open(s / "sheets" / "zkx_sheet_01.png").size == sheets[1].size
    assert len(sheets) == 2 and all(isinstance(im, Image.Image) for im in sheets)  # one per prompt
    grids = []
    monkeypatch.setattr("lorakit.pictures.draw_grid", lambda images, cols, rows, title="": grids.append(
        (images, cols, rows, title)))
    strength_sheets(s, PROMPTS, name="zkx")
    images, cols, rows, title = grids[1]
    assert cols == ["strength 0", "strength 1"] and title == "prompt 2: zkx"
    assert rows == ["step 0 (base)", "epoch 1, step 8", "epoch 2, step 16"]
    base = _pixels(s / "000000/zkx_000000_01.png")
    assert all(np.array_equal(np.asarray(im), base) for im in images[0]), "the baseline fills its row"
    assert np.array_equal(np.asarray(images[2][1]), _pixels(s / "000002/zkx_000016_s1_01.png"))
    assert samples_sheet(result.samples, PROMPTS) is not None  # the per-epoch sheet still reads the names


def test_single_strength_keeps_the_names(tiny_project):
    project, cfg = tiny_project
    cfg.sampling.sample_prompts = PROMPTS[:1]
    cfg.sampling.sample_every_n_epochs = 2
    result = train(project, cfg)
    assert [p.name for p in result.samples] == ["zkx_000016_00.png"]
    sheets = strength_sheets(project.samples_dir, PROMPTS, strengths=cfg.sampling.sample_strengths)
    assert len(sheets) == 1 and sheets[0].height < 2 * 192


def test_drawing_restores_the_lora_scale(tiny_sd1, tmp_path):
    cfg = TrainConfig()
    cfg.network.rank, cfg.network.alpha = 4, 2.0
    cfg.sampling.sample_prompts = PROMPTS[:1]
    cfg.sampling.sample_strengths = [0.0, 0.5, 1.5]
    base = load_base(str(tiny_sd1))
    net = Network.attach(base, cfg)
    try:
        gen = torch.Generator().manual_seed(0)
        for model in net.parts.values():  # stand in for training: the adapter changes the output
            for p in model.parameters():
                if p.requires_grad:
                    p.data += 0.2 * torch.randn(p.shape, generator=gen)
        base.unet.train()
        layers = [m for model in net.parts.values() for m in model.modules() if ADAPTER in getattr(m, "scaling", {})]
        scales = [m.scaling[ADAPTER] for m in layers]
        weights = {k: v.clone() for k, v in net.trainable_state_dict().items()}
        x = torch.randn(1, 4, 8, 8, generator=gen)
        hidden = torch.randn(1, 77, base.unet.config.cross_attention_dim, generator=gen)

        def out():
            base.unet.eval()
            with torch.no_grad():
                y = base.unet(x, torch.tensor([500]), hidden).sample
            base.unet.train()
            return y

        before = out()
        with net.at_strength(0.0):
            off = out()
        with net.at_strength(0.5):
            half = out()
        assert not torch.equal(off, before) and not torch.equal(half, before) and not torch.equal(half, off)
        with pytest.raises(RuntimeError), net.at_strength(2.0):  # an error while drawing restores it too
            raise RuntimeError("boom")

        paths = draw_samples(base, cfg, tmp_path, 3, net)
        assert [p.name for p in paths] == ["lora_000003_s0_00.png", "lora_000003_s0.5_00.png",
                                           "lora_000003_s1.5_00.png"]
        assert [m.scaling[ADAPTER] for m in layers] == scales
        assert not any(m.disable_adapters for m in layers)
        assert base.unet.training, "training mode comes back after drawing"
        after = {k: v for k, v in net.trainable_state_dict().items()}
        assert all(torch.equal(weights[k], after[k]) for k in weights)
        assert torch.equal(out(), before), "the model computes exactly what it did before drawing"
    finally:
        net.detach()


@pytest.mark.parametrize("bad, words", [([], "empty"), ([float("nan")], "not a strength"),
                                        ([-0.5], "from 0 to 2"), ([2.5], "from 0 to 2"),
                                        ([1.0, 1.0], "twice"), (["x"], "not a number")])
def test_bad_strengths_are_refused(bad, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig.from_dict({"sampling": {"sample_strengths": bad}}).validate()
    text = TrainConfig.from_dict({"sampling": {"sample_strengths": [0.5, 1]}}).to_toml()
    assert TrainConfig.from_toml(text).sampling.sample_strengths == [0.5, 1.0]
