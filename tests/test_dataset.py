"""Scanning the kohya layout, buckets, epoch order and caption handling (the trainer's side of the data)."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from conftest import write_images
from lorakit.dataset.scan import (
    LatentCache,
    assign_buckets,
    choose_bucket,
    epoch_batches,
    make_buckets,
    parse_folder_name,
    process_caption,
    scan_dataset,
)
from lorakit.errors import DatasetError


def test_folder_names():
    assert parse_folder_name("15_fr3dd!e woman") == (15, "fr3dd!e woman")
    assert parse_folder_name("images") is None
    assert parse_folder_name("0_x") is None


def test_scan_reads_captions_repeats_and_reports_problems(tmp_path):
    write_images(tmp_path / "3_zkx", 2)
    (tmp_path / "3_zkx" / "nocap.png").write_bytes((tmp_path / "3_zkx" / "img00.png").read_bytes())
    (tmp_path / "3_zkx" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "misc").mkdir()
    result = scan_dataset(tmp_path)
    by_name = {i.path.name: i for i in result.items}
    assert by_name["img01.png"].caption == "zkx, thing 1" and by_name["img01.png"].repeats == 3
    assert by_name["nocap.png"].caption == "zkx", "no caption file: the folder's token"
    assert any("broken.png" in p for p in result.problems)
    assert any("misc" in p and "not named" in p for p in result.problems)


def test_empty_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="No images"):
        scan_dataset(tmp_path)
    with pytest.raises(DatasetError, match="No dataset folder"):
        scan_dataset(tmp_path / "missing")


def test_bom_caption_and_non_utf8_caption(tmp_path):
    write_images(tmp_path / "1_a", 2)
    (tmp_path / "1_a" / "img00.txt").write_bytes("\ufeffred hair".encode())
    assert {i.caption for i in scan_dataset(tmp_path).items} >= {"red hair"}
    (tmp_path / "1_a" / "img01.txt").write_bytes(b"caf\xe9")
    result = scan_dataset(tmp_path)
    assert [i.path.name for i in result.items] == ["img00.png"]
    assert len(result.caption_errors) == 1 and "img01.txt" in result.caption_errors[0]
    assert "not UTF-8" in result.caption_errors[0]


def test_training_refuses_a_broken_caption(tiny_project):
    from lorakit.train.loop import train

    project, cfg = tiny_project
    (project.dataset_dir / "2_zkx" / "img01.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DatasetError, match="(?s)Fix these captions.*img01.txt"):
        train(project, cfg)


def test_buckets_keep_area_and_aspect():
    buckets = make_buckets(512, 256, 1024, 64)
    assert (512, 512) in buckets and (768, 320) in buckets
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 for w, h in buckets)
    assert choose_bucket((1200, 800), buckets, 512, 64, no_upscale=True) == (640, 384)  # nearest ratio
    assert choose_bucket((300, 600), buckets, 512, 64, no_upscale=True) == (256, 576)  # small: not upscaled
    # below min_bucket_reso: enlarged just enough to reach it, never a bucket under 256
    assert choose_bucket((100, 300), buckets, 512, 64, no_upscale=True) == (256, 768)


def test_exif_rotation_counts_for_the_bucket(tmp_path):
    folder = tmp_path / "1_a"
    folder.mkdir()
    im = Image.new("RGB", (120, 60), "red")
    exif = im.getexif()
    exif[0x0112] = 6  # rotated 90°: the photo is really 60 wide, 120 high
    im.save(folder / "r.jpg", exif=exif)
    items = scan_dataset(tmp_path).items
    assert items[0].size == (60, 120)
    assign_buckets(items, 64, True, 32, 128, 8, no_upscale=False)
    assert items[0].bucket[0] < items[0].bucket[1]


def test_epoch_batches_are_deterministic_and_bucketed(tmp_path):
    write_images(tmp_path / "2_a", 3, size=(64, 64))
    write_images(tmp_path / "2_b", 3, size=(96, 48), seed=1)
    items = scan_dataset(tmp_path).items
    assign_buckets(items, 64, True, 32, 128, 16, no_upscale=False)
    a = epoch_batches(items, 2, seed=1, epoch=0, flip_aug=True)
    b = epoch_batches(items, 2, seed=1, epoch=0, flip_aug=True)
    c = epoch_batches(items, 2, seed=1, epoch=1, flip_aug=True)
    key = lambda bs: [[(s.item.path.name, s.flip) for s in batch] for batch in bs]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)
    assert sum(len(x) for x in a) == 12  # 6 images x 2 repeats
    assert all(len({s.item.bucket for s in batch}) == 1 for batch in a)


def test_caption_processing():
    rng = random.Random(0)
    cap = "zkx, red hair, smiling, outdoors, hat"
    assert process_caption(cap, rng, False, 0, 0.0, 0.0) == cap
    outs = {process_caption(cap, rng, True, 1, 0.0, 0.0) for _ in range(20)}
    assert len(outs) > 1 and all(o.startswith("zkx, ") for o in outs)
    assert process_caption(cap, rng, False, 0, 0.0, 1.0) == ""
    dropped = process_caption(cap, rng, False, 1, 1.0, 0.0)
    assert dropped == "zkx"


def test_latent_cache_hits_on_disk_and_misses_on_new_content(tmp_path, tiny_sd1):
    from lorakit.models.loading import load_base

    base = load_base(str(tiny_sd1))
    write_images(tmp_path / "1_a", 1)
    items = scan_dataset(tmp_path).items
    assign_buckets(items, 64, False)
    cache = LatentCache(base.vae, base.latent_scale, disk_dir=tmp_path / "cache")
    lat = cache.get(items[0])
    assert cache.misses == 1 and lat.shape[0] == 4
    again = LatentCache(base.vae, base.latent_scale, disk_dir=tmp_path / "cache")
    assert (again.get(items[0]) == lat).all() and again.hits == 1 and again.misses == 0
    write_images(tmp_path / "1_a", 1, seed=9)  # same file name, new pixels
    fresh = LatentCache(base.vae, base.latent_scale, disk_dir=tmp_path / "cache")
    fresh.get(items[0])
    assert fresh.misses == 1, "changed image content misses the cache"
