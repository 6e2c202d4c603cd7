"""Figures for step 01: dataset scan time and captioning throughput (CPU, tiny random captioners).

    OMP_NUM_THREADS=1 python bench/dataset_bench.py            # 50 images at 1024×768 and at 4032×3024
    python bench/dataset_bench.py --images 20 --no-photos      # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.dataset.captioners import (
    BlipSettings,
    TaggerSettings,
    build_tiny_blip,
    build_tiny_tagger,
    caption_images,
    load_captioner,
)
from lorakit.dataset.checks import CheckSettings, check_folder  # noqa: E402


def synthetic_photo(size: tuple[int, int], seed: int) -> Image.Image:
    """Shapes on a gradient with a little blur and noise: decodes and hashes like a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    grad = np.linspace(0, 1, w)[None, :, None] * rng.integers(60, 255, 3) + rng.integers(0, 60, 3)
    im = Image.fromarray(np.broadcast_to(grad, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(20):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(w // 40, w // 6))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * w / 1024))
    noise = rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def scan_figure(folder: Path, n: int, size: tuple[int, int], ext: str) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        synthetic_photo(size, i).save(folder / f"{i:03d}{ext}", quality=90)
        (folder / f"{i:03d}.txt").write_text("photo of zkx", encoding="utf-8")
    check_folder(folder, CheckSettings())  # warm-up: imports, first decode
    start = time.perf_counter()
    report = check_folder(folder, CheckSettings(resolution=512))
    took = time.perf_counter() - start
    print(f"check {n} × {size[0]}×{size[1]} {ext}: {took:.2f}s ({took / n * 1000:.0f} ms/image); "
          f"flagged: {report.counts() or 'nothing'}")


def caption_figure(root: Path, n: int, batch: int) -> None:
    images = root / "imgs"
    images.mkdir()
    paths = []
    for i in range(n):
        synthetic_photo((512, 384), i).save(images / f"{i}.png")
        paths.append(images / f"{i}.png")
    blip = build_tiny_blip(root / "blip", words=["a", "photo", "of", "red", "blue", "circle"])
    tagger = build_tiny_tagger(root / "tagger", tags=["red", "blue", "circle", "general"])
    for name, settings in (("tiny BLIP (beams 3, max 20 tokens)", BlipSettings(model=str(blip), batch_size=batch,
                                                                                max_length=20, device="cpu")),
                           ("tiny ViT tagger", TaggerSettings(model=str(tagger), batch_size=batch, device="cpu"))):
        captioner = load_captioner(settings)
        caption_images(captioner, paths[:batch], progress=False)  # warm-up
        start = time.perf_counter()
        caption_images(captioner, paths, progress=False)
        took = time.perf_counter() - start
        print(f"caption {n} images with {name}, batch {batch}, CPU: {n / took:.1f} images/s "
              "(includes reading the PNGs)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--no-photos", action="store_true", help="skip the 12-megapixel JPEG run")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scan_figure(root / "png", args.images, (1024, 768), ".png")
        if not args.no_photos:
            scan_figure(root / "jpg", args.images, (4032, 3024), ".jpg")
        caption_figure(root, 64, args.batch)


if __name__ == "__main__":
    main()
