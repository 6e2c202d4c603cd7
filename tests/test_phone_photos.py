"""Photos as phones save them: HEIC (with pillow-heif) and AVIF (Pillow) import upright as JPEG; without the
extra, each file says which extra to install instead of being skipped without a word."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorakit.dataset.checks import check_folder, inspect_image
from lorakit.dataset.importing import import_images
from lorakit.dataset.scan import scan_dataset
from lorakit.project import Project
from tests.offline import BLOCK_SOCKETS

REPO = Path(__file__).resolve().parents[1]
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"  # the first box of an iPhone photo


def two_colour(w: int = 60, h: int = 40) -> Image.Image:
    """Red on the left, blue on the right: a rotation is visible in the result."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": a phone held upright
    return exif.tobytes()


def assert_upright_jpeg(path: Path) -> None:
    assert path.suffix == ".jpg"
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.size == (40, 60)  # turned upright: portrait
        top, bottom = np.asarray(im.convert("RGB"))[2, 20], np.asarray(im.convert("RGB"))[-3, 20]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60  # left (red) went to the top


def test_avif_imports_upright_as_jpeg(tmp_path):
    src = tmp_path / "phone"
    src.mkdir()
    two_colour().save(src / "a.avif", exif=rotated_exif(), quality=90)
    report = import_images(src, Project.create(tmp_path / "p"), token="me", repeats=2)
    (done,) = report.copied
    assert done.dest.name == "a.jpg" and any(".avif → .jpg" in n for n in done.notes)
    assert any("EXIF orientation 6" in n for n in done.notes)
    assert_upright_jpeg(done.dest)


def test_heic_imports_upright_as_jpeg_with_pillow_heif(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="the [heif] extra (in [test]) is not installed")
    pillow_heif.register_heif_opener()
    src = tmp_path / "phone"
    src.mkdir()
    two_colour().save(src / "IMG_0001.HEIC", format="HEIF", exif=rotated_exif(), quality=90)
    project = Project.create(tmp_path / "p")
    report = import_images(src, project, token="me", repeats=2)
    (done,) = report.copied
    assert done.dest.name == "IMG_0001.jpg" and any(".heic → .jpg" in n for n in done.notes)
    assert_upright_jpeg(done.dest)
    assert [i.path.name for i in scan_dataset(project.dataset_dir).items] == ["IMG_0001.jpg"]  # training reads it


def test_a_heic_photo_under_a_jpg_name_is_rewritten_as_a_real_jpeg(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif", reason="the [heif] extra (in [test]) is not installed")
    pillow_heif.register_heif_opener()
    src = tmp_path / "phone"
    src.mkdir()
    two_colour().save(src / "IMG_0004.jpg", format="HEIF")  # a phone app that kept the wrong extension
    report = import_images(src, Project.create(tmp_path / "p"), token="me", repeats=2)
    (done,) = report.copied
    assert any("HEIF photo under a .jpg name" in n for n in done.notes)
    with Image.open(done.dest) as im:
        assert im.format == "JPEG"  # what training reads without pillow-heif


def test_a_phone_photo_in_the_dataset_is_named_not_dropped(tmp_path):
    folder = tmp_path / "dataset" / "2_me"
    folder.mkdir(parents=True)
    two_colour().save(folder / "a.png")
    two_colour().save(folder / "b.avif")
    result = scan_dataset(tmp_path / "dataset")
    assert [i.path.name for i in result.items] == ["a.png"]
    assert any("b.avif" in p and "lorakit dataset import" in p for p in result.problems)


# Run where pillow-heif cannot be imported and Pillow reads no AVIF (as with Pillow < 11.3), in a fresh process.
WITHOUT_THE_EXTRA = BLOCK_SOCKETS + '''
import json, sys
sys.modules["pillow_heif"] = None  # import pillow_heif -> ImportError, as when it is not installed
import PIL.features
_check = PIL.features.check
PIL.features.check = lambda name: False if name == "avif" else _check(name)
from pathlib import Path
from lorakit.dataset.checks import check_folder
from lorakit.dataset.importing import import_images
from lorakit.project import Project
src, out = Path(sys.argv[1]), Path(sys.argv[2])
report = import_images(src, Project.create(out), token="me", repeats=1)
checked = check_folder(src)
print(json.dumps({"copied": [i.dest.name for i in report.copied],
                  "skipped": {p.name: why for p, why in report.skipped},
                  "checked": {f.path.name: [i.message for i in f.issues] for f in checked.files}}))
'''


def test_without_the_extra_each_photo_says_which_extra_to_install(tmp_path):
    src = tmp_path / "phone"
    src.mkdir()
    (src / "IMG_0002.heic").write_bytes(HEIC_HEAD + bytes(200))
    two_colour().save(src / "c.avif")
    two_colour().save(src / "d.png")
    out = subprocess.run([sys.executable, "-c", WITHOUT_THE_EXTRA, str(src), str(tmp_path / "p")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["copied"] == ["d.png"]
    assert set(got["skipped"]) == {"IMG_0002.heic", "c.avif"}
    assert "pillow-heif is not installed" in got["skipped"]["IMG_0002.heic"]
    assert "cannot read AVIF" in got["skipped"]["c.avif"]
    for why in got["skipped"].values():
        assert 'pip install "lorakit[heif]"' in why
    for name in ("IMG_0002.heic", "c.avif"):  # the check report says the same
        assert any('lorakit[heif]' in m for m in got["checked"][name]), got["checked"]


def test_a_heic_photo_under_a_jpg_name_is_recognised(tmp_path, monkeypatch):
    import lorakit.dataset.checks as checks

    path = tmp_path / "IMG_0003.jpg"
    path.write_bytes(HEIC_HEAD + bytes(200))
    monkeypatch.setattr(checks, "heif_opener", lambda: False)
    info, rgb = inspect_image(path)
    assert rgb is None and "a HEIC photo under a .jpg extension" in info.problem.message
    assert "IMG_0003.heic" in info.problem.message


def test_check_folder_reads_an_avif_and_says_import_converts_it(tmp_path):
    two_colour().save(tmp_path / "e.avif")
    (fc,) = check_folder(tmp_path).files
    assert fc.size == (60, 40)
    assert any("import converts it to JPEG" in i.message for i in fc.issues)
