"""Loss masks: where they come from, how they are cached and flipped, and that a masked-out pixel teaches nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image

from lorakit.dataset.checks import check_folder
from lorakit.dataset.importing import import_images
from lorakit.dataset.masks import (
    background_mask,
    check_masks,
    inspect_mask,
    latent_mask,
    masked_preview,
    rectangle_mask,
    save_mask,
)
from lorakit.dataset.scan import Sample, scan_dataset
from lorakit.errors import DatasetError
from lorakit.project import Project
from lorakit.train.masked_loss import per_image_loss
from lorakit.train.steps import count_dataset

HALF = np.zeros((64, 64), np.uint8)
HALF[:, :32] = 255  # learn the left half only


def _half_mask(image):
    path = image.with_name(image.stem + "_mask.png")
    Image.fromarray(HALF).save(path)
    return path


def test_masks_come_from_a_mask_file_a_masks_folder_or_the_alpha_channel(tiny_project):
    project, _ = tiny_project
    folder = project.dataset_dir / "2_zkx"
    beside = _half_mask(folder / "img00.png")
    (folder / "masks").mkdir()
    Image.fromarray(HALF).save(folder / "masks" / "img01.png")
    rgba = Image.open(folder / "img02.png").convert("RGBA")
    rgba.putalpha(Image.fromarray(HALF))
    rgba.save(folder / "img02.png")
    items = {it.path.name: it for it in scan_dataset(project.dataset_dir).items}
    assert sorted(items) == ["img00.png", "img01.png", "img02.png", "img03.png"]  # masks are not images
    assert count_dataset(project.dataset_dir).images == 4
    assert items["img00.png"].mask == beside
    assert items["img01.png"].mask == folder / "masks" / "img01.png"
    assert items["img02.png"].mask == items["img02.png"].path and items["img02.png"].alpha
    assert items["img03.png"].mask is None
    for name in ("img00.png", "img01.png", "img02.png"):
        info = inspect_mask(items[name].path, items[name].mask)
        assert info.coverage == pytest.approx(0.5) and not info.problem and not info.note
    grid = latent_mask(items["img02.png"].path, items["img02.png"].mask, (64, 64), 8)
    assert grid.shape == (1, 8, 8) and grid[0, :, :4].eq(1).all() and grid[0, :, 4:].eq(0).all()
    report = check_folder(project.dataset_dir)
    masks = {f.path.name: f.mask for f in report.files}
    assert set(masks) == set(items) and masks["img02.png"].startswith("mask: alpha channel, 50%")
    assert "file" not in masks["img03.png"] and masks["img03.png"] == ""
    assert "3 of 4 have a loss mask" in report.summary()


def test_a_mask_of_another_size_is_stretched_with_a_note(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 32), "red").save(image)
    Image.fromarray(HALF).save(tmp_path / "a_mask.png")  # 64x64 for a 64x32 image
    info = inspect_mask(image)
    assert "stretched to the image's size" in info.note and "64×64" in info.note and not info.problem
    assert latent_mask(image, info.source, (64, 32), 8).shape == (1, 4, 8)


def test_an_unreadable_mask_stops_training_before_it_starts(tiny_project):
    from lorakit.train.loop import train

    project, cfg = tiny_project
    bad = project.dataset_dir / "2_zkx" / "img01_mask.png"
    bad.write_bytes(b"not a png at all")
    cfg.data.masked_loss = True
    with pytest.raises(DatasetError, match="img01_mask.png: the mask of img01.png cannot be read") as err:
        train(project, cfg)
    assert str(err.value).count("\n") == 1  # the header line and one sentence for the one bad mask
    assert not list(project.output_dir.glob("*.safetensors")) and bad.read_bytes() == b"not a png at all"
    assert any(i.code == "mask" for f in check_folder(project.dataset_dir).files for i in f.issues)
    cfg.data.masked_loss = False  # masks are ignored: never read, never a reason to refuse
    assert check_masks(scan_dataset(project.dataset_dir).items, False) == [
        "1 image has a mask (alpha channel or mask file); data.masked_loss is off, so every image is learnt whole"]


def test_masked_loss_without_any_mask_is_refused(tiny_project):
    project, _ = tiny_project
    with pytest.raises(DatasetError, match="no image has a mask"):
        check_masks(scan_dataset(project.dataset_dir).items, True)


def test_normalisation_white_mask_is_no_mask_black_mask_is_zero():
    pred, target = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    ones, zeros = torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    assert torch.allclose(per_image_loss(pred, target, ones), per_image_loss(pred, target, None))
    assert per_image_loss(pred, target, zeros).eq(0).all()
    half = torch.zeros(2, 1, 8, 8)
    half[..., :4] = 1
    expected = ((pred - target) ** 2)[..., :4].mean(dim=(1, 2, 3))  # the mean over the learnt half
    assert torch.allclose(per_image_loss(pred, target, half), expected)


def _prepared(project, cfg):
    from lorakit.train.prepare import prepare

    return prepare(project, cfg, Accelerator(cpu=True))


def test_the_masked_half_gives_exactly_zero_gradient(tiny_project):
    """Through the real UNet + LoRA: the loss's gradient on the masked half of the prediction is exactly zero, and
    changing what the masked half should be (the target there) changes no LoRA gradient by a single bit."""
    project, cfg = tiny_project
    _half_mask(project.dataset_dir / "2_zkx" / "img00.png")
    cfg.data.masked_loss = True
    run = _prepared(project, cfg)
    try:
        item = next(it for it in run.items if it.path.name == "img00.png")
        batch = [Sample(item, False)]
        masks = run.masks(batch, "cpu")
        latents = run.latents(batch, "cpu")
        h = latents.shape[-1] // 2  # the latent grid's half
        assert masks.shape == (1, 1, *latents.shape[-2:]) and masks[..., :h].eq(1).all() and masks[..., h:].eq(0).all()
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.tensor([500])
        noisy = run.base.noise_scheduler.add_noise(latents, noise, t)
        hidden, _ = run.base.family.encode(run.base, run.base.family.tokenize(run.base, [item.caption]), 0)
        hidden = hidden.detach()

        unet_lora = run.net.parameters("lora_unet")

        def grads(target):
            for p in unet_lora:
                p.grad = None
            pred = run.base.unet(noisy, t, hidden).sample
            pred.retain_grad()
            per_image_loss(pred, target, masks).sum().backward()
            return pred.grad, [p.grad.clone() for p in unet_lora]

        pred_grad, lora = grads(noise)
        assert pred_grad[..., h:].eq(0).all() and pred_grad[..., :h].abs().sum() > 0
        other = noise.clone()
        other[..., h:] = torch.randn(other[..., h:].shape, generator=gen) * 5  # another masked-out half
        _, lora_other = grads(other)
        assert all(torch.equal(a, b) for a, b in zip(lora, lora_other, strict=True))
        assert any(g.abs().sum() > 0 for g in lora)
    finally:
        run.net.detach()


def test_masks_are_cached_with_the_latents_and_flipped_with_them(tiny_project):
    project, cfg = tiny_project
    mask = _half_mask(project.dataset_dir / "2_zkx" / "img00.png")
    cfg.data.masked_loss, cfg.data.flip_aug = True, True
    run = _prepared(project, cfg)
    try:
        item = next(it for it in run.items if it.path.name == "img00.png")
        plain, flipped = run.cache.mask(item, False), run.cache.mask(item, True)
        assert torch.equal(flipped, plain.flip(-1)) and not torch.equal(flipped, plain)
        disk = sorted(p.name for p in (project.cache_dir / "latents").glob("*-mask-*.pt"))
        assert len(disk) == 2 and any("-flip-mask-" in n for n in disk)  # both directions cached at the start
        Image.fromarray(255 - HALF).save(mask)  # a new mask: a new key, never the stale one
        assert torch.equal(run.cache.mask(item, False), 1 - plain)
    finally:
        run.net.detach()


def test_batch_loss_uses_the_masks(tiny_project):
    """All-black masks: batch_loss is exactly 0 and no LoRA weight gets a gradient."""
    from lorakit.train.loop import Position, batch_loss

    project, cfg = tiny_project
    for p in (project.dataset_dir / "2_zkx").glob("*.png"):
        Image.new("L", (64, 64), 0).save(p.with_name(p.stem + "_mask.png"))
    cfg.data.masked_loss = True
    run = _prepared(project, cfg)
    try:
        acc = Accelerator(cpu=True)
        loss = batch_loss(run, run.batches(0)[0], Position(), 0, "cpu", acc, {})
        loss.backward()
        assert loss.item() == 0 and all(p.grad is None or p.grad.eq(0).all() for p in run.params)
        assert any("all black" in n for n in run.notes)
    finally:
        run.net.detach()


def test_import_keeps_the_alpha_channel_and_brings_mask_files(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    rgba = Image.new("RGBA", (40, 30), (200, 10, 10, 255))
    rgba.putalpha(Image.linear_gradient("L").resize((40, 30)))
    rgba.save(src / "a.png")
    Image.new("LA", (40, 30), (90, 128)).save(src / "b.png")
    Image.new("RGB", (40, 30), "blue").save(src / "c.jpg")
    Image.fromarray(HALF).save(src / "c_mask.png")
    project = Project.create(tmp_path / "proj")
    report = import_images(src, project, token="zkx", repeats=2)
    dest = project.dataset_dir / "2_zkx"
    assert sorted(p.name for p in dest.iterdir()) == ["a.png", "b.png", "c.jpg", "c_mask.png"]
    assert (dest / "a.png").read_bytes() == (src / "a.png").read_bytes()  # an RGBA PNG is copied as it is
    with Image.open(dest / "b.png") as b:
        assert b.mode == "RGBA" and b.getchannel("A").getextrema() == (128, 128)
    assert any("transparency kept" in n for c in report.copied for n in c.notes)
    assert (dest / "c_mask.png").read_bytes() == (src / "c_mask.png").read_bytes()
    assert {it.path.name: it.mask.name for it in scan_dataset(project.dataset_dir).items if it.mask} == {
        "a.png": "a.png", "b.png": "b.png", "c.jpg": "c_mask.png"}


def test_training_sees_transparent_pixels_on_white(tmp_path):
    from lorakit.dataset.scan import load_image_for_bucket

    path = tmp_path / "t.png"
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(path)
    assert load_image_for_bucket(path, (64, 64)).getextrema() == ((255, 255),) * 3


def test_mask_helpers_make_and_save_masks(tmp_path):
    image = tmp_path / "a.png"
    im = Image.new("RGB", (64, 64), (240, 240, 240))
    im.paste((200, 20, 20), (10, 20, 30, 50))  # a red subject on a light background
    im.save(image)
    subject = np.asarray(background_mask(im)) > 0
    assert subject[20:50, 10:30].all() and subject.sum() == 20 * 30
    rect = rectangle_mask((64, 64), (0, 0, 32, 64))
    assert np.array_equal(np.asarray(rect), HALF)
    path = save_mask(image, rect)
    assert path.name == "a_mask.png" and inspect_mask(image).coverage == pytest.approx(0.5)
    with pytest.raises(DatasetError, match="already exists"):
        save_mask(image, background_mask(im))
    assert np.array_equal(np.asarray(Image.open(path)), HALF)  # not overwritten
    assert masked_preview(image, path, side=64).size == (64 * 3 + 8, 64)


def test_notebook_mask_helper_saves_masks_and_the_masked_loss_toggle(tiny_project):
    from lorakit.dataset.captions import image_files
    from lorakit.ui.dataset import MaskHelper

    project, _ = tiny_project
    images = image_files(project.dataset_dir)
    helper = MaskHelper(project, images)
    assert "no mask written" in helper.apply()  # 'show': the headless default writes nothing
    helper.mode.value = "rectangle"
    helper.sliders["width"].value = 0.5
    assert "img00_mask.png" in helper.apply()
    assert inspect_mask(images[0]).coverage == pytest.approx(0.5)
    assert image_files(project.dataset_dir) == images  # the mask is not an image to caption
    helper.masked_loss.value = True  # the toggle writes lorakit.toml
    assert project.load_config().data.masked_loss is True
