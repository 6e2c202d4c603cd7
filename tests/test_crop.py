"""Bucket preview (the trainer's own code) and the crop helper (copies only, inside the project)."""

from __future__ import annotations

import pytest
from dataset_corpus import digests, pattern
from PIL import Image

from lorakit.dataset.crop import (
    Box,
    BucketSettings,
    box_from_fractions,
    bucket_preview,
    bucket_sheet,
    center_box,
    crop_image,
    crop_in_project,
)
from lorakit.dataset.scan import assign_buckets, scan_dataset
from lorakit.project import Project


@pytest.fixture()
def project(tmp_path):
    p = Project.create(tmp_path / "proj")
    folder = p.dataset_dir / "2_zkx"
    folder.mkdir(parents=True)
    for name, size in (("wide", (300, 150)), ("tall", (120, 240)), ("square", (200, 200))):
        pattern(size, seed=len(name)).save(folder / f"{name}.png")
    return p


def test_bucket_preview_matches_the_trainer(project):
    settings = BucketSettings(resolution=128, min_bucket_reso=64, max_bucket_reso=256, bucket_reso_steps=32,
                              bucket_no_upscale=False)
    reg = project.reg_dir / "1_thing"
    reg.mkdir(parents=True)
    pattern((90, 180), seed=9).save(reg / "r.png")
    rows, counts = bucket_preview(project.dataset_dir, settings)
    items = scan_dataset(project.dataset_dir).items + scan_dataset(project.reg_dir, is_reg=True).items
    assert len(rows) == 4
    expected = assign_buckets(items, 128, True, 64, 256, 32, False)
    assert {r.path.name: r.bucket for r in rows} == {i.path.name: i.bucket for i in items}
    assert counts == dict(sorted(expected.items()))
    buckets = {r.path.stem: r.bucket for r in rows}
    assert buckets["wide"][0] > buckets["wide"][1] and buckets["tall"][0] < buckets["tall"][1]
    assert buckets["square"] == (128, 128)
    assert all(0 < r.kept <= 1 for r in rows)
    assert bucket_sheet(rows, thumb=32, cols=4).size == (4 * 38, 52)


def test_center_and_fraction_boxes():
    assert center_box((300, 150), 1.0) == Box(75, 0, 225, 150)
    assert center_box((120, 240), 1.0) == Box(0, 60, 120, 180)
    assert center_box((200, 200), 2.0).size == (200, 100)
    assert box_from_fractions((200, 100), 0.5, 0.5, 1.0, 1.0) == Box(100, 50, 200, 100)  # clamped
    with pytest.raises(ValueError, match="not inside"):
        Box(0, 0, 500, 10).validate((200, 100))


def test_crop_in_project_keeps_the_uncropped_copy_and_never_writes_outside(project, tmp_path):
    image = project.dataset_dir / "2_zkx" / "wide.png"
    original = image.read_bytes()
    crop_in_project(project, image, center_box((300, 150), 1.0))
    with Image.open(image) as im:
        assert im.size == (150, 150)
    kept = list((project.root / "uncropped").rglob("wide.png"))
    assert len(kept) == 1 and kept[0].read_bytes() == original
    outside = tmp_path / "mine.png"
    pattern(seed=1).save(outside)
    before = digests(tmp_path / "proj" / "dataset")
    with pytest.raises(ValueError, match="import it first"):
        crop_in_project(project, outside, Box(0, 0, 10, 10))
    with pytest.raises(ValueError, match="refusing"):
        crop_image(outside, Box(0, 0, 10, 10), outside)
    assert digests(tmp_path / "proj" / "dataset") == before
