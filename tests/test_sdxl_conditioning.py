"""SDXL's micro-conditioning: each image's original size, the crop its bucket was cut from, and the bucket size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import lorakit.train.loop as loop
from lorakit.config.schema import TrainConfig
from lorakit.dataset.crop import micro_conditioning
from lorakit.dataset.masks import cover_box
from lorakit.dataset.scan import ImageItem, assign_buckets, image_size, load_image_for_bucket
from lorakit.models import families
from lorakit.models.loading import load_base
from lorakit.project import Project


def _noise_image(path, size: tuple[int, int], seed: int = 0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    path.with_suffix(".txt").write_text("zkx", encoding="utf-8")
    return path


def _item(path, resolution: int, step: int) -> ImageItem:
    item = ImageItem(path, "zkx", 1, size=image_size(path))
    assign_buckets([item], resolution, min_reso=step, max_reso=4 * resolution, step=step)
    return item


def _cropped_at(path, item: ImageItem, top: int, left: int) -> np.ndarray:
    """The upright image resized as the trainer resizes it, cut at (top, left) to the bucket."""
    (bw, bh), (nw, nh) = item.bucket, cover_box(item.size, item.bucket)[0]
    with Image.open(path) as im:
        big = ImageOps.exif_transpose(im).convert("RGB").resize((nw, nh), Image.Resampling.LANCZOS)
    return np.asarray(big.crop((left, top, left + bw, top + bh)))


def test_a_wide_image_gets_its_size_its_real_crop_and_its_bucket(tmp_path):
    path = _noise_image(tmp_path / "wide.png", (900, 600))
    item = _item(path, 512, 64)
    bw, bh = item.bucket
    orig, (top, left), target = micro_conditioning(item)
    assert orig == (600, 900) and target == (bh, bw)
    assert (bw, bh) == (640, 384) and (top, left) == (21, 0)  # 3:2 in a 5:3 bucket: cut at top and bottom
    trained = np.asarray(load_image_for_bucket(path, item.bucket))
    assert np.array_equal(trained, _cropped_at(path, item, top, left))  # the offset the crop code really used
    assert not np.array_equal(trained, _cropped_at(path, item, top + 1, left))


def test_a_flipped_sample_gets_the_mirrored_left_edge(tmp_path):
    path = _noise_image(tmp_path / "odd.png", (97, 64))  # 33 px too wide: the center crop is off by one
    item = _item(path, 64, 32)
    assert item.bucket == (64, 64)
    _, (top, left), _ = micro_conditioning(item)
    _, (f_top, f_left), _ = micro_conditioning(item, flip=True)
    assert (top, left, f_top, f_left) == (0, 16, 0, 17)
    flipped = np.asarray(ImageOps.mirror(load_image_for_bucket(path, item.bucket)))  # as the latent cache flips
    with Image.open(path) as im:
        mirrored = ImageOps.mirror(im.convert("RGB")).resize(cover_box(item.size, item.bucket)[0],
                                                              Image.Resampling.LANCZOS)
    assert np.array_equal(flipped, np.asarray(mirrored.crop((f_left, f_top, f_left + 64, f_top + 64))))


def test_an_exif_rotated_image_is_measured_upright(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 96 wide, 64 high; shown rotated: 64 wide, 96 high
    Image.new("RGB", (96, 64), (10, 20, 30)).save(path, exif=exif)
    orig, (top, left), target = micro_conditioning(_item(path, 64, 32))
    assert orig == (96, 64) and (top, left) == (16, 0) and target == (64, 64)


def test_each_sample_of_a_batch_gets_its_own_row(tmp_path):
    items = [_item(_noise_image(tmp_path / f"{i}.png", size), 64, 32) for i, size in enumerate([(97, 64), (64, 80)])]
    sizes = [micro_conditioning(it) for it in items]
    pooled = torch.zeros(2, 8)
    ids = families.get("sdxl").added_cond(pooled, sizes, "cpu", torch.float32)["time_ids"]
    assert ids.tolist() == [[64, 97, 0, 16, 64, 64], [80, 64, 8, 0, 64, 64]]
    assert families.get("sd1").added_cond(None, sizes, "cpu", torch.float32) is None


@pytest.mark.parametrize("family", ["sdxl", "sd1"])
def test_the_unet_receives_each_images_ids_in_training_and_validation(tmp_path, monkeypatch, family, request):
    model = request.getfixturevalue(f"tiny_{family}")
    project = Project.create(tmp_path / "proj")
    folder = project.dataset_dir / "2_zkx"
    folder.mkdir(parents=True)
    for i, size in enumerate([(97, 64), (64, 80)]):  # both in the 64×64 bucket, each cropped differently
        _noise_image(folder / f"img{i}.png", size, seed=i)
    (project.root / "validation" / "1_zkx").mkdir(parents=True)
    _noise_image(project.root / "validation" / "1_zkx" / "tall.png", (64, 96), seed=5)
    cfg = TrainConfig()
    cfg.model.base_model = str(model)
    cfg.data.resolution, cfg.data.cache_latents_to_disk, cfg.data.flip_aug = 64, False, True
    cfg.data.min_bucket_reso, cfg.data.max_bucket_reso, cfg.data.bucket_reso_steps = 32, 128, 32
    cfg.training.train_batch_size, cfg.training.max_train_steps = 2, 2
    cfg.validation.enabled, cfg.validation.dir, cfg.validation.timesteps = True, "validation", 1
    cfg.saving.save_precision, cfg.saving.save_every_n_epochs, cfg.sampling.sample_every_n_epochs = "float", 0, 0
    cfg.validate()

    batches, seen = [], []
    real_loss = loop.batch_loss
    monkeypatch.setattr(loop, "batch_loss", lambda run, batch, *a, **k: (batches.append(batch),
                                                                         real_loss(run, batch, *a, **k))[1])
    base = load_base(str(model))
    real_forward = base.unet.forward
    monkeypatch.setattr(base.unet, "forward", lambda *a, **k: (seen.append(k.get("added_cond_kwargs")),
                                                               real_forward(*a, **k))[1])
    result = loop.train(project, cfg)
    monkeypatch.undo()
    assert result.steps == 2 and len(seen) == len(batches) >= 4  # validation at step 0 and at the end, 2 steps
    if family == "sd1":
        assert all(added is None for added in seen)
        return
    for batch, added in zip(batches, seen, strict=True):
        want = [[*o, *c, *t] for o, c, t in (micro_conditioning(s.item, s.flip) for s in batch)]
        assert added["time_ids"].tolist() == want
    rows = {tuple(row) for added in seen for row in added["time_ids"].tolist()}
    assert (96, 64, 16, 0, 64, 64) in rows  # the validation image (never flipped), cropped top and bottom
    assert {row[:2] for row in rows} == {(64, 97), (80, 64), (96, 64)}  # both training images were trained on
