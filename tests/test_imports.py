"""Importing into a project: copies only, conversions noted, bad files skipped with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_corpus import digests, make_corpus, pattern
from PIL import Image

from lorakit.dataset.importing import import_images
from lorakit.dataset.scan import scan_dataset
from lorakit.errors import DatasetError
from lorakit.project import Project


@pytest.fixture()
def imported(tmp_path):
    src = tmp_path / "photos"
    make_corpus(src)
    before = digests(src)
    project = Project.create(tmp_path / "proj")
    report = import_images(src, project, token="zkx", repeats=3)
    return src, before, project, report


def test_originals_stay_byte_identical_and_copies_land_in_the_kohya_folder(imported):
    src, before, project, report = imported
    assert digests(src) == before
    dest = project.dataset_dir / "3_zkx"
    assert report.folders == [dest]
    assert (dest / "good.png").read_bytes() == (src / "good.png").read_bytes()  # nothing to change: exact copy
    names = sorted(p.name for p in dest.glob("*") if p.suffix != ".txt")
    assert names == sorted(["good.png", "ünïcode name with spaces.jpg", "rotated.jpg", "rgba.png", "palette.png",
                            "grey16.png", "cmyk.jpg", "grey.png", "still.png", "latin1 caption.png"])
    items = scan_dataset(project.dataset_dir).items
    assert len(items) == 10 and all(i.repeats == 3 for i in items)


def test_bad_files_are_skipped_each_with_its_reason(imported):
    _, _, _, report = imported
    skipped = {p.name: why for p, why in report.skipped}
    assert set(skipped) == {"animated.gif", "bomb.png", "garbage.webp", "notes.png", "truncated.png", "zero.png",
                            "latin1 caption.txt"}
    assert "2 frames" in skipped["animated.gif"] and "0 bytes" in skipped["zero.png"]
    assert "not UTF-8" in skipped["latin1 caption.txt"]


def test_conversions_are_upright_rgb_and_noted(imported):
    src, _, project, report = imported
    dest = project.dataset_dir / "3_zkx"
    notes = {c.source.name: " ".join(c.notes) for c in report.copied}
    assert "EXIF orientation 6" in notes["rotated.jpg"]
    assert "16-bit" in notes["grey16.png"] and "CMYK" in notes["cmyk.jpg"] and ".gif → .png" in notes["still.gif"]
    assert notes["good.png"] == ""
    with Image.open(dest / "rotated.jpg") as im:
        assert im.size == (64, 96) and im.getexif().get(0x0112, 1) == 1
    for name in ("grey16.png", "cmyk.jpg", "palette.png", "still.png"):
        with Image.open(dest / name) as im:
            assert im.mode == "RGB", name
    with Image.open(src / "rgba.png") as a, Image.open(dest / "rgba.png") as b:  # transparency: the loss mask
        assert b.mode == "RGBA" and np.array_equal(np.asarray(a.getchannel("A")), np.asarray(b.getchannel("A")))
    with Image.open(src / "grey16.png") as a, Image.open(dest / "grey16.png") as b:
        original = np.asarray(a, dtype=np.float64) / 257
        copy = np.asarray(b.convert("L"), dtype=np.float64)
    assert np.abs(original - copy).max() <= 1.0  # scaled, not clipped to white


def test_captions_come_along_as_clean_utf8(imported):
    _, _, project, _ = imported
    dest = project.dataset_dir / "3_zkx"
    assert (dest / "ünïcode name with spaces.txt").read_bytes() == "photo of zkx, café\n".encode()  # BOM dropped
    assert not (dest / "latin1 caption.txt").exists()


def test_importing_twice_keeps_what_is_there(imported):
    src, _, project, _ = imported
    dest = project.dataset_dir / "3_zkx"
    (dest / "good.txt").write_text("my edited caption", encoding="utf-8")
    again = import_images(src, project, token="zkx", repeats=3)
    assert again.copied == [] and len(again.kept) == 10
    assert (dest / "good.txt").read_text(encoding="utf-8") == "my edited caption"


def test_same_stem_is_an_error_naming_both_and_nothing_is_copied(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    pattern(seed=1).save(src / "a.png")
    pattern(seed=2).save(src / "a.jpg")
    pattern(seed=3).save(src / "b.png")
    project = Project.create(tmp_path / "proj")
    with pytest.raises(DatasetError, match=r"a\.(png|jpg) and .*a\.(png|jpg)"):
        import_images(src, project, token="zkx", repeats=1)
    assert not any((project.dataset_dir).rglob("*.png"))


def test_kohya_layout_keeps_repeats_and_token_and_reg_goes_to_dataset_reg(tmp_path):
    src = tmp_path / "kohya"
    for folder, seed in (("5_zkx", 1), ("2_zkx style", 2)):
        (src / folder).mkdir(parents=True)
        pattern(seed=seed).save(src / folder / f"img{seed}.png")
    reg = tmp_path / "women"
    reg.mkdir()
    pattern(seed=9).save(reg / "w.png")
    project = Project.create(tmp_path / "proj")
    report = import_images(src, project)
    assert sorted(p.name for p in report.folders) == ["2_zkx style", "5_zkx"]
    import_images(reg, project, token="woman", repeats=1, reg=True)
    assert (project.reg_dir / "1_woman" / "w.png").is_file()
    items = scan_dataset(project.dataset_dir).items + scan_dataset(project.reg_dir, is_reg=True).items
    assert sorted((i.folder, i.repeats, i.is_reg) for i in items) == [
        ("1_woman", 1, True), ("2_zkx style", 2, False), ("5_zkx", 5, False)]


def test_plain_folder_needs_token_and_repeats(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    pattern().save(src / "a.png")
    project = Project.create(tmp_path / "proj")
    with pytest.raises(DatasetError, match="token"):
        import_images(src, project)
    (src / "more").mkdir()
    pattern().save(src / "more" / "b.png")
    report = import_images(src, project, token="zkx", repeats=2)
    assert [p.name for p in report.skipped[0][:1]] == ["more"] and "subfolder" in report.skipped[0][1]
    with pytest.raises(DatasetError, match="slashes"):
        import_images(src, project, token="a/b", repeats=2)
    with pytest.raises(FileNotFoundError):
        import_images(tmp_path / "missing", project, token="a", repeats=2)
