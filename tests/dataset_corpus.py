"""A corpus of good and bad dataset files, made on the spot (shared by the dataset tests)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def pattern(size=(96, 64), seed: int = 0) -> Image.Image:
    """A sharp picture: random coloured rectangles with hard edges."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, size[0] - 8)), int(rng.integers(0, size[1] - 8))
        x1, y1 = x0 + int(rng.integers(6, size[0] // 2)), y0 + int(rng.integers(6, size[1] // 2))
        draw.rectangle((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im


def blurred(im: Image.Image, radius: float = 3.0) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(radius))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width×height (a decompression bomb) without any pixel data to match."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def make_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus into ``folder``; returns {file name: the issue code the checks must give (or 'ok')}."""
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    pattern(seed=1).save(folder / "good.png")
    (folder / "good.txt").write_text("photo of zkx, red, red, square", encoding="utf-8")
    expect["good.png"] = "ok"

    pattern(seed=2).save(folder / "ünïcode name with spaces.jpg", quality=95)
    (folder / "ünïcode name with spaces.txt").write_bytes("\ufeffphoto of zkx, café".encode())  # BOM
    expect["ünïcode name with spaces.jpg"] = "ok"

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: upright it is 64 wide, 96 high
    pattern(seed=3).save(folder / "rotated.jpg", exif=exif, quality=95)
    expect["rotated.jpg"] = "no-caption"

    rgba = pattern(seed=4).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    pattern(seed=5).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    grey8 = np.asarray(pattern(seed=12).convert("L"), dtype=np.int32)
    Image.fromarray(grey8 * 257, "I").convert("I;16").save(folder / "grey16.png")  # full 16-bit range
    pattern(seed=6).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    pattern(seed=7).convert("L").save(folder / "grey.bmp")
    pattern(seed=8).save(folder / "still.gif")
    for name in ("rgba.png", "palette.png", "grey16.png", "cmyk.jpg", "grey.bmp"):
        (folder / name).with_suffix(".txt").write_text("photo of zkx", encoding="utf-8")
        expect[name] = "ok"
    (folder / "still.txt").write_text("photo of zkx", encoding="utf-8")
    expect["still.gif"] = "format"

    frames = [pattern(seed=s).convert("P") for s in (9, 10)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    expect["animated.gif"] = "animated"

    (folder / "zero.png").write_bytes(b"")
    expect["zero.png"] = "empty"
    (folder / "notes.png").write_text("these are my notes, not a picture\n", encoding="utf-8")
    expect["notes.png"] = "not-image"
    full = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])
    expect["truncated.png"] = "truncated"
    (folder / "garbage.webp").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))
    expect["garbage.webp"] = "not-image"
    png_header_only(folder / "bomb.png", 50000, 50000)
    expect["bomb.png"] = "bomb"

    pattern(seed=11).save(folder / "latin1 caption.png")
    (folder / "latin1 caption.txt").write_bytes("photo of zkx, caf\xe9".encode("cp1252"))
    expect["latin1 caption.png"] = "caption-encoding"
    return expect


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove nothing was modified)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- hostile and broken inputs (issue 16): each class made on the spot, no binary blobs ----------------------
SECRET = "api_key=hunter2 do-not-publish"


def outside_files(folder: Path) -> Path:
    """A folder outside any project: a secret text and a photo that links may point at."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "secret.txt").write_text(SECRET, encoding="utf-8")
    pattern(seed=40).save(folder / "photo.png")
    return folder


def link_source(src: Path, outside: Path) -> Path:
    """A plain source folder with one good image and every kind of link: out of it, inside it, dangling."""
    src.mkdir(parents=True, exist_ok=True)
    pattern(seed=41).save(src / "good.png")
    (src / "good.txt").write_text("photo of zkx", encoding="utf-8")
    pattern(seed=42).save(src / "leaky.png")
    (src / "leaky.txt").symlink_to(outside / "secret.txt")  # caption -> a file outside
    (src / "stolen.png").symlink_to(outside / "photo.png")  # image -> a file outside
    (src / "inner").mkdir()
    pattern(seed=43).save(src / "inner" / "real.png")
    (src / "alias.png").symlink_to(src / "inner" / "real.png")  # image -> a file inside the source folder
    (src / "broken.png").symlink_to(src / "nowhere.png")  # dangling
    return src


def conflicting_project(dest: Path, src: Path) -> tuple[Path, Path]:
    """A project folder that already holds stems the source brings again, under another name or kind."""
    dest.mkdir(parents=True, exist_ok=True)
    pattern(seed=50).save(dest / "good_1.jpg", quality=95)  # same stem, other extension
    (dest / "good_2.png").mkdir()  # a folder with an incoming image's name
    (dest / "good_3").mkdir()  # a folder with an incoming stem
    (dest / "good_4.png").symlink_to(dest / "gone.png")  # a dangling link
    src.mkdir(parents=True, exist_ok=True)
    for n in range(1, 6):
        pattern(seed=50 + n).save(src / f"good_{n}.png")
        (src / f"good_{n}.txt").write_text(f"photo of zkx, number {n}", encoding="utf-8")
    return dest, src


BAD_FOLDERS = {  # folder name: words the reason must contain
    "0_x": "repeats 0",
    "-5_x": "not a whole number",
    "abc_x": "not a whole number",
    "²_x": "not a whole number",
    "99999999999999999999999999999_x": "more than 10000",
    "noprefix": "no '_'",
}


def bad_folder_dataset(root: Path) -> Path:
    """A dataset folder with one good <repeats>_<token> folder, the BAD_FOLDERS, an unreadable and a stray image."""
    good = root / "10_zkx"
    good.mkdir(parents=True, exist_ok=True)
    pattern(seed=60).save(good / "fine.png")
    (good / "fine.txt").write_text("photo of zkx", encoding="utf-8")
    (good / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for i, name in enumerate(BAD_FOLDERS):
        (root / name).mkdir()
        pattern(seed=61 + i).save(root / name / "lost.png")
    pattern(seed=70).save(root / "stray.png")  # directly in dataset/
    return root


def extreme_aspect_dataset(root: Path) -> Path:
    """A 50000×5 strip and a 4000×60 banner (tiny files) beside a normal image."""
    folder = root / "1_zkx"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (50000, 5), (200, 30, 30)).save(folder / "strip.png")
    Image.new("RGB", (4000, 60), (30, 200, 30)).save(folder / "banner.png")
    pattern(seed=80).save(folder / "normal.png")
    return root


def non_utf8_dataset(root: Path) -> Path:
    """A dataset folder whose file names are not UTF-8 (Latin-1 bytes, as old cameras and zips write them)."""
    import os

    folder = root / "1_zkx"
    folder.mkdir(parents=True, exist_ok=True)
    name = os.fsdecode(b"caf\xe9")
    pattern(seed=90).save(folder / f"{name}.png")
    (folder / f"{name}.txt").write_text("photo of zkx", encoding="utf-8")
    return root


def hostile_pickle(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when unpickled (the proof that something opened it)."""
    import pathlib
    import pickle

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (pathlib.Path(marker),))

    return pickle.dumps({"network": Payload(), "step": 1}, protocol=2)


BAD_CONFIG_VALUES = {  # setting: (value, words the sentence must contain)
    "optimizer.unet_lr": (float("inf"), "not a finite number"),
    "optimizer.text_encoder_lr": (float("-inf"), "not a finite number"),
    "training.seed": (-1, "training.seed must be 0 to"),
    "model.clip_skip": (100, "model.clip_skip must be 1 to 12"),
    "data.caption_extension": ("", "must be a file extension starting with '.'"),
    "data.repeats": (10**30, "more than 10000"),
    "data.resolution": (65536, "is above 4096"),
    "data.max_bucket_reso": (100000, "is above 8192"),
}
BAD_KOHYA_VALUES = {  # kohya key: (value as kohya_ss writes it, words the sentence must contain)
    "unet_lr": ("inf", "kohya_ss unet_lr = 'inf' must be a finite number"),
    "learning_rate": ("nan", "kohya_ss learning_rate = 'nan' must be a finite number"),
    "text_encoder_lr": ("fast", "kohya_ss text_encoder_lr = 'fast' must be a finite number"),
    "max_resolution": ("inf,inf", "kohya_ss max_resolution = 'inf,inf' must be a size"),
    "seed": ("-1", "training.seed must be 0 to"),
    "clip_skip": ("100", "model.clip_skip must be 1 to 12"),
}


def tree_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, and the target of every link (links are not followed)."""
    import os

    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link -> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "dir"
    return out
