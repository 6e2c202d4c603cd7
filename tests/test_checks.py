"""Dataset checks: each bad file gets its reason, nothing crashes, nothing is modified."""

from __future__ import annotations

import json

import pytest
from dataset_corpus import blurred, digests, make_corpus, pattern, png_header_only
from PIL import Image

from lorakit.dataset.checks import (
    CheckSettings,
    check_folder,
    inspect_image,
    report_sheet,
    sharpness,
    to_rgb,
    verify_dataset,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "3_zkx"
    expect = make_corpus(folder)
    return folder, expect


def test_every_bad_file_gets_its_reason_and_every_file_stays_byte_identical(corpus):
    folder, expect = corpus
    before = digests(folder)
    report = check_folder(folder.parent, CheckSettings(resolution=32))
    assert digests(folder) == before
    got = {f.path.name: {i.code for i in f.issues} for f in report.files}
    assert set(got) == set(expect)
    for name, code in expect.items():
        if code == "ok":
            assert got[name] == set(), (name, got[name])
        else:
            assert code in got[name], (name, got[name])
    errors = {f.path.name for f in report.errors}
    assert errors == {"zero.png", "notes.png", "truncated.png", "garbage.webp", "bomb.png", "latin1 caption.png"}


def test_messages_say_why_in_words(corpus):
    folder, _ = corpus
    report = check_folder(folder, CheckSettings(resolution=32))
    msg = {f.path.name: " ".join(i.message for i in f.issues) for f in report.files}
    assert "0 bytes" in msg["zero.png"]
    assert "holds text" in msg["notes.png"] and ".png" in msg["notes.png"]
    assert "truncated" in msg["truncated.png"]
    assert "decompression bomb" in msg["bomb.png"] and "2500000000" in msg["bomb.png"]
    assert "2 frames" in msg["animated.gif"]
    assert "not UTF-8" in msg["latin1 caption.png"]


def test_exif_rotation_is_reported_upright(corpus):
    folder, _ = corpus
    report = check_folder(folder, CheckSettings(resolution=32))
    assert {f.path.name: f.size for f in report.files}["rotated.jpg"] == (64, 96)


def test_bomb_under_pillows_limit_is_refused_by_ours(tmp_path):
    png_header_only(tmp_path / "big.png", 3000, 2000)  # 6 MP: Pillow would try to decode it
    info, im = inspect_image(tmp_path / "big.png", max_megapixels=5)
    assert im is None and info.problem.code == "bomb" and "3000×2000" in info.problem.message


def test_json_report_parses_and_carries_the_thresholds(corpus):
    folder, _ = corpus
    data = json.loads(check_folder(folder, CheckSettings(resolution=32, blur_threshold=17)).to_json())
    assert data["settings"]["blur_threshold"] == 17
    assert data["counts"]["empty"] == 1
    assert any(f["file"] == "ünïcode name with spaces.jpg" and f["status"] == "ok" for f in data["files"])


def test_blurry_and_small_are_flagged_sharp_and_large_enough_are_not(tmp_path):
    sharp = pattern((256, 192), seed=3)
    sharp.save(tmp_path / "sharp.png")
    blurred(sharp, 3).save(tmp_path / "soft.png")
    report = check_folder(tmp_path, CheckSettings(resolution=128))
    codes = {f.path.name: {i.code for i in f.issues} for f in report.files}
    assert "blurry" in codes["soft.png"] and "blurry" not in codes["sharp.png"]
    assert sharpness(sharp) > 60 > 20 > sharpness(blurred(sharp, 3))
    assert "small" not in codes["sharp.png"]
    assert all("small" in c for c in codes_at(tmp_path, 512).values())


def codes_at(folder, resolution):
    return {f.path.name: {i.code for i in f.issues} for f in check_folder(folder, CheckSettings(resolution)).files}


def test_sharpness_ignores_contrast_and_flat_area():
    low = Image.new("RGB", (200, 200), (100, 100, 100))
    low.paste((112, 112, 112), (60, 60, 140, 140))  # a faint but crisp square on a mostly flat picture
    assert sharpness(low) > 60


def test_near_duplicates_are_found_and_different_colours_are_not(tmp_path):
    base = pattern((128, 128), seed=4)
    base.save(tmp_path / "a.png")
    base.resize((120, 120)).save(tmp_path / "a_resaved.jpg", quality=80)
    Image.eval(base, lambda v: 255 - v).save(tmp_path / "negative.png")  # same layout, other colours
    pattern((128, 128), seed=5).save(tmp_path / "other.png")
    codes = codes_at(tmp_path, 64)
    assert "duplicate" in codes["a.png"] and "duplicate" in codes["a_resaved.jpg"]
    assert "duplicate" not in codes["other.png"] and "duplicate" not in codes["negative.png"]


def test_same_stem_clash_names_both(tmp_path):
    pattern(seed=1).save(tmp_path / "a.png")
    pattern(seed=2).save(tmp_path / "a.jpg")
    report = check_folder(tmp_path, CheckSettings(resolution=32))
    msgs = {f.path.name: " ".join(i.message for i in f.issues) for f in report.files}
    assert "a.jpg" in msgs["a.png"] and "a.png" in msgs["a.jpg"]


def test_to_rgb_scales_16_bit_and_flattens_alpha_on_white():
    import numpy as np

    grey16 = Image.fromarray(np.full((4, 4), 32896, dtype=np.int32), "I").convert("I;16")
    assert to_rgb(grey16).getpixel((0, 0)) == (128, 128, 128)  # a plain convert would clip to 255
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)


def test_contact_sheet_has_a_tile_per_file_even_unreadable_ones(corpus):
    folder, expect = corpus
    sheet = report_sheet(check_folder(folder, CheckSettings(resolution=32)), thumb=64, cols=4)
    assert sheet.width == 4 * (64 + 6) and sheet.height == -(-len(expect) // 4) * (64 + 6 + 14)


def test_verify_dataset_fails_on_missing_captions_and_passes_when_fixed(tmp_path):
    folder = tmp_path / "dataset" / "2_zkx"
    folder.mkdir(parents=True)
    pattern(seed=1).save(folder / "a.png")
    status = verify_dataset(tmp_path / "dataset")
    assert not status.ok and "without a caption" in status.message
    (folder / "a.txt").write_text("photo of zkx", encoding="utf-8")
    assert verify_dataset(tmp_path / "dataset").ok
    assert not verify_dataset(tmp_path / "nothing").ok
    pattern(seed=2).save(tmp_path / "dataset" / "stray.png")
    assert "training skips it" in verify_dataset(tmp_path / "dataset").message
