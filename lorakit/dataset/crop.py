"""What the trainer will see: aspect-ratio buckets for each image, and a crop helper that writes copies.

    from lorakit.dataset.crop import bucket_preview, center_box, crop_in_project
    rows = bucket_preview(project.dataset_dir, resolution=512, step=64)    # the trainer's own bucket code
    orig_hw, crop_top_left, target_hw = micro_conditioning(item, flip=False)  # SDXL's size ids of one sample
    crop_in_project(project, image, center_box(image_size(image), 1.0))     # a square crop of one image

Crops are written inside the project only. When the project's copy of an image is cropped in place, the
uncropped copy is kept in ``uncropped/<stamp>/`` first; files outside the project are never written.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from lorakit.dataset.checks import contact_sheet, load_upright
from lorakit.dataset.masks import cover_box
from lorakit.dataset.scan import ImageItem, assign_buckets, load_image_for_bucket, scan_dataset
from lorakit.files import atomic_path
from lorakit.models.families.base import SizeIds
from lorakit.project import Project


# ---- buckets -----------------------------------------------------------------------------------------
@dataclass
class BucketSettings:
    """The bucket options of the training config (``data.*``), with the same meaning."""

    resolution: int = 512
    enable_bucket: bool = True
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = True

    @classmethod
    def from_config(cls, data, resolution: int = 0) -> BucketSettings:
        """From a TrainConfig's ``data`` section (``resolution``, when given, replaces its resolution)."""
        settings = cls(**{k: getattr(data, k) for k in cls.__dataclass_fields__ if hasattr(data, k)})
        settings.resolution = resolution or settings.resolution
        return settings


@dataclass
class BucketRow:
    path: Path
    size: tuple[int, int]
    bucket: tuple[int, int]

    @property
    def kept(self) -> float:
        """Fraction of the picture's area that survives the cover-and-center-crop into the bucket."""
        w, h = self.size
        bw, bh = self.bucket
        scale = max(bw / w, bh / h)
        return (bw * bh) / (w * scale * h * scale)


def bucket_preview(dataset_dir: str | Path, settings: BucketSettings) -> tuple[list[BucketRow], dict]:
    """Each image's bucket, computed by the trainer's own ``assign_buckets``; also images per bucket."""
    items: list[ImageItem] = scan_dataset(dataset_dir).items
    reg = Path(dataset_dir) / "reg"
    if reg.is_dir():  # regularization images are bucketed the same way
        items += scan_dataset(reg, is_reg=True).items
    counts = assign_buckets(items, settings.resolution, settings.enable_bucket, settings.min_bucket_reso,
                            settings.max_bucket_reso, settings.bucket_reso_steps, settings.bucket_no_upscale)
    return [BucketRow(it.path, it.size, it.bucket) for it in items], dict(sorted(counts.items()))


def bucket_sheet(rows: list[BucketRow], thumb: int = 128, cols: int = 8) -> Image.Image:
    """Each image as the trainer will feed it (resized and center-cropped to its bucket), labelled w×h."""
    tiles = []
    for r in rows:
        try:
            im = load_image_for_bucket(r.path, r.bucket)
        except Exception:  # a broken file shows as a crossed tile; the checks say why
            im = None
        tiles.append((im, f"{r.bucket[0]}x{r.bucket[1]}", "ok" if r.kept > 0.8 else "warn"))
    return contact_sheet(tiles, thumb, cols)


def micro_conditioning(item: ImageItem, flip: bool = False) -> SizeIds:
    """SDXL's size conditioning of one sample: its original size, where the bucket was cut from it, the bucket.

    The crop is ``cover_crop``'s own, in the resized image's pixels; a flipped sample (mirrored after the crop)
    gets the mirrored left edge, as sd-scripts does. All three as (height, width), the order of SDXL's time ids.
    """
    (w, h), (bw, bh) = item.size, item.bucket
    (nw, _), (left, top) = cover_box(item.size, item.bucket)
    if flip:
        left = nw - bw - left
    return (h, w), (top, left), (bh, bw)


# ---- crops -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    """A crop box in pixels of the upright (EXIF-rotated) image: left, top, right, bottom."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def size(self) -> tuple[int, int]:
        return self.right - self.left, self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.right, self.bottom

    def validate(self, size: tuple[int, int]) -> Box:
        w, h = size
        if not (0 <= self.left < self.right <= w and 0 <= self.top < self.bottom <= h):
            raise ValueError(f"crop box {self} is not inside the {w}×{h} image.")
        return self


def center_box(size: tuple[int, int], aspect: float = 1.0) -> Box:
    """The largest box of ``aspect`` (width / height) centred in an image of ``size``."""
    w, h = size
    bw, bh = (w, max(1, round(w / aspect))) if w / h <= aspect else (max(1, round(h * aspect)), h)
    left, top = (w - bw) // 2, (h - bh) // 2
    return Box(left, top, left + bw, top + bh)


def box_from_fractions(size: tuple[int, int], left: float, top: float, width: float, height: float) -> Box:
    """A box from slider values in [0, 1] (clamped to the image)."""
    w, h = size
    x0, y0 = round(min(max(left, 0.0), 0.99) * w), round(min(max(top, 0.0), 0.99) * h)
    return Box(x0, y0, min(w, max(x0 + 1, x0 + round(width * w))), min(h, max(y0 + 1, y0 + round(height * h))))


def preview_box(path: Path, box: Box, side: int = 384) -> Image.Image:
    """The image with ``box`` outlined and the outside dimmed, at most ``side`` pixels."""
    im = load_upright(path)
    scale = min(1.0, side / max(im.size)) if max(im.size) > side else side / max(im.size)
    view = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BICUBIC)
    shade = Image.new("RGB", view.size, (0, 0, 0))
    b = [round(v * scale) for v in (box.left, box.top, box.right, box.bottom)]
    mask = Image.new("L", view.size, 110)
    ImageDraw.Draw(mask).rectangle((b[0], b[1], b[2] - 1, b[3] - 1), fill=0)
    view = Image.composite(shade, view, mask)
    ImageDraw.Draw(view).rectangle((b[0], b[1], b[2] - 1, b[3] - 1), outline=(255, 200, 0), width=2)
    return view


def crop_image(src: Path, box: Box, dest: Path) -> Path:
    """Write ``src`` cropped to ``box`` (upright, RGB) as ``dest``; never writes over ``src``."""
    if dest.resolve() == src.resolve():
        raise ValueError(f"refusing to write the crop over {src}: give another destination.")
    im = load_upright(src)
    cropped = im.crop(box.validate(im.size).as_tuple())
    with atomic_path(dest) as tmp:
        fmt = "JPEG" if dest.suffix.lower() in (".jpg", ".jpeg") else "PNG" if dest.suffix.lower() == ".png" else None
        cropped.save(tmp, format=fmt or Image.registered_extensions().get(dest.suffix.lower(), "PNG"),
                     **({"quality": 95} if fmt == "JPEG" else {}))
    return dest


def crop_in_project(project: Project, image: Path, box: Box) -> Path:
    """Crop a dataset image of ``project`` in place, keeping the uncropped copy in ``uncropped/<stamp>/``."""
    image = image.resolve()
    dataset = project.dataset_dir.resolve()
    if dataset not in image.parents:
        raise ValueError(f"{image} is not in {dataset}: import it first (the crop helper edits project copies).")
    keep = project.root / "uncropped" / time.strftime("%Y%m%d-%H%M%S") / image.relative_to(dataset)
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(image, keep)
    crop_image(keep, box, image)
    return image
