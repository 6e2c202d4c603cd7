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
