"""Loss masks: which pixels of an image the LoRA should learn (white) and which it should ignore (black).

    mask_path(Path("dataset/10_blicket/a.png"))    # a_mask.png beside it, masks/a.png, or a itself (alpha)
    info = inspect_mask(image)                      # kind, size note, or the reason it cannot be used
    grid = latent_mask(image, mask, bucket, 8)      # (1, h/8, w/8) in [0, 1], cropped as the image is

Where a mask comes from, first found wins: ``<stem>_mask.<ext>`` beside the image, ``masks/<stem>.<ext>`` in
its folder, or the image's own alpha channel (transparent = ignore). A mask file is read as greyscale (any
image mode; white = learn, black = ignore, grey = in between). One of another size than its image is stretched
to it (with a note). With ``data.masked_loss`` on, the training loss is averaged over the mask's weight
(loop.batch_loss, train/masked_loss.py); with it off, masks are ignored.

The helpers below make masks for notebook 01: from a rectangle, or from "everything but the background colour".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from lorakit.errors import DatasetError
from lorakit.files import atomic_path, printable

MASK_SUFFIX = "_mask"  # a_mask.png is the mask of a.png (kohya_ss and OneTrainer name them so)
MASK_DIR = "masks"  # masks/a.png is the mask of a.png, in the same <repeats>_<token> folder
MASK_EXTENSIONS = (".png", ".webp", ".bmp", ".jpg", ".jpeg")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def has_alpha(im: Image.Image) -> bool:
    """Whether ``im`` carries transparency (an alpha channel, or a palette/greyscale transparent colour)."""
    return im.mode in ALPHA_MODES or "transparency" in im.info


def mask_file(image: Path) -> Path | None:
    """The mask file of ``image``: ``<stem>_mask.<ext>`` beside it, else ``masks/<stem>.<ext>``; None if neither."""
    for folder, stem in ((image.parent, image.stem + MASK_SUFFIX), (image.parent / MASK_DIR, image.stem)):
        for ext in MASK_EXTENSIONS:
            for candidate in (folder / (stem + ext), folder / (stem + ext.upper())):
                if _exists(candidate) and candidate != image:
                    return candidate
    return None


def _exists(path: Path) -> bool:
    """Whether ``path`` is a file; a name too long to exist (a 251-byte stem plus ``_mask``) is none."""
    try:
        return path.is_file()
    except OSError:
        return False


def is_mask_file(path: Path) -> bool:
    """Whether ``path`` is another image's mask (``a_mask.png`` beside an ``a.*``, or in a ``masks/`` folder)."""
    path = Path(path)
    if path.parent.name == MASK_DIR:
        return True
    if not path.stem.endswith(MASK_SUFFIX):
        return False
    stem = path.stem[: -len(MASK_SUFFIX)]
    return any(p.stem == stem and p != path for p in path.parent.glob(f"{glob_escape(stem)}.*"))


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def mask_path(image: Path) -> Path | None:
    """Where ``image``'s mask comes from: its mask file, itself (alpha channel), or None (no mask)."""
    found = mask_file(image)
    if found is not None:
        return found
    try:
        with Image.open(image) as im:
            return image if has_alpha(im) else None
    except Exception:  # an unreadable image is reported by the scan, not here
        return None


@dataclass
class MaskInfo:
    """What reading an image's mask found."""

    image: Path
    source: Path | None = None  # the mask file, the image itself (alpha), or None (no mask)
    note: str = ""  # e.g. resized to the image's size
    problem: str = ""  # why it cannot be used (training refuses to start)
    coverage: float = 1.0  # the share of the image that is learnt (mean of the mask)

    @property
    def kind(self) -> str:
        return "" if self.source is None else "alpha" if self.source == self.image else "file"

    def describe(self) -> str:
        if self.source is None:
            return "no mask"
        where = "alpha channel" if self.kind == "alpha" else printable(self.source.name)
        return f"mask: {where}, {self.coverage:.0%} learnt" + (f" ({self.note})" if self.note else "")


def read_mask(image: Path, source: Path) -> tuple[Image.Image, str]:
    """The mask as an upright greyscale image of ``image``'s size, and a note if it had to be resized.

    Raises DatasetError naming the file when the mask cannot be decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as m:
                m = ImageOps.exif_transpose(m)
                if source == image:
                    mask = (m.convert("RGBA") if m.mode not in ("RGBA", "LA") else m).getchannel("A")
                else:
                    mask = m.convert("L")
    except Exception as e:
        raise DatasetError(f"{printable(source)}: the mask of {printable(image.name)} cannot be read "
                           f"({type(e).__name__}: {e}); re-save it as a greyscale PNG or remove it.") from None
    if source == image:
        return mask, ""
    try:
        with Image.open(image) as im:
            size = ImageOps.exif_transpose(im).size
    except Exception:
        return mask, ""  # the image's own problem is reported by the scan
    if mask.size == size:
        return mask, ""
    note = (f"{printable(source.name)} is {mask.width}×{mask.height}, its image {size[0]}×{size[1]}: "
            "stretched to the image's size")
    return mask.resize(size, Image.Resampling.BILINEAR), note


def inspect_mask(image: Path, source: Path | None = None) -> MaskInfo:
    """Find and read ``image``'s mask (``source`` if given): its kind, a resize note, or why it is unusable."""
    info = MaskInfo(image, source if source is not None else mask_path(image))
    if info.source is None:
        return info
    try:
        mask, info.note = read_mask(image, info.source)
    except DatasetError as e:
        info.problem = str(e)
        return info
    info.coverage = float(np.asarray(mask, dtype=np.float32).mean() / 255.0)
    return info


def cover_box(size: tuple[int, int], bucket: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where ``cover_crop`` cuts: the (w, h) an image of ``size`` is resized to, and the crop's (left, top) in it."""
    (w, h), (bw, bh) = size, bucket
    scale = max(bw / w, bh / h)
    nw, nh = max(bw, round(w * scale)), max(bh, round(h * scale))
    return (nw, nh), ((nw - bw) // 2, (nh - bh) // 2)


def cover_crop(im: Image.Image, bucket: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """Resize ``im`` to cover ``bucket`` (w, h) and center-crop to it: what the trainer does to every image."""
    (nw, nh), (left, top) = cover_box(im.size, bucket)
    return im.resize((nw, nh), resample).crop((left, top, left + bucket[0], top + bucket[1]))


def latent_mask(image: Path, source: Path, bucket: tuple[int, int], factor: int, flip: bool = False) -> torch.Tensor:
    """The mask on the latent grid, (1, h/factor, w/factor) in [0, 1]: cropped and flipped as the image is.

    Each latent pixel gets the mean of the mask pixels it covers (a box filter), so a soft edge stays soft.
    """
    mask, _ = read_mask(image, source)
    mask = cover_crop(mask, bucket, Image.Resampling.BILINEAR)
    if flip:
        mask = ImageOps.mirror(mask)
    grid = mask.resize((bucket[0] // factor, bucket[1] // factor), Image.Resampling.BOX)
    return torch.from_numpy(np.asarray(grid, dtype=np.float32) / 255.0)[None].contiguous()


# ---- making masks (notebook 01's mask helper) ----------------------------------------------------------
def rectangle_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """White inside ``box`` (left, top, right, bottom), black elsewhere, for an image of ``size``."""
    mask = Image.new("L", size, 0)
    mask.paste(255, tuple(int(v) for v in box))
    return mask


def background_color(im: Image.Image) -> tuple[int, int, int]:
    """The image's background colour: the median colour of its one-pixel border."""
    arr = np.asarray(im.convert("RGB"), dtype=np.int32)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return tuple(int(v) for v in np.median(border, axis=0))  # type: ignore[return-value]


def background_mask(im: Image.Image, tolerance: int = 24,
                    color: tuple[int, int, int] | None = None) -> Image.Image:
    """White wherever the colour differs from the background (``color``, else the border's) by more than ``tolerance``."""
    rgb = np.asarray(im.convert("RGB"), dtype=np.int32)
    bg = np.asarray(color if color is not None else background_color(im), dtype=np.int32)
    far = np.abs(rgb - bg).max(axis=2) > tolerance
    return Image.fromarray((far * 255).astype(np.uint8), "L")


def save_mask(image: Path, mask: Image.Image, overwrite: bool = False) -> Path:
    """Write ``mask`` as ``<stem>_mask.png`` beside ``image`` (atomically); an existing one only with ``overwrite``."""
    dest = image.with_name(image.stem + MASK_SUFFIX + ".png")
    if dest.exists() and not overwrite:
        raise DatasetError(f"{printable(dest)} already exists: tick 'overwrite' to replace it, or delete it first.")
    with atomic_path(dest) as tmp:
        mask.convert("L").save(tmp, format="PNG")
    return dest


def masked_preview(image: Path, mask: Path | Image.Image | None, side: int = 256) -> Image.Image:
    """Image | mask | image with the ignored part greyed out, side by side (notebook 01's mask helper).

    ``mask``: a mask source (file, or the image itself for its alpha), a mask image not yet saved, or None.
    """
    with Image.open(image) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    if isinstance(mask, Image.Image):
        mask = mask.convert("L").resize(rgb.size)
    else:
        mask = read_mask(image, mask)[0] if mask is not None else Image.new("L", rgb.size, 255)
    rgb, mask = ImageOps.contain(rgb, (side, side)), ImageOps.contain(mask, (side, side))
    grey = Image.new("RGB", rgb.size, (128, 128, 128))
    learnt = Image.composite(rgb, Image.blend(rgb, grey, 0.8), mask.resize(rgb.size))
    sheet = Image.new("RGB", (rgb.width * 3 + 8, rgb.height), (255, 255, 255))
    for i, part in enumerate((rgb, mask.convert("RGB").resize(rgb.size), learnt)):
        sheet.paste(part, (i * (rgb.width + 4), 0))
    return sheet


# ---- before training -----------------------------------------------------------------------------------
def check_masks(items: list, masked_loss: bool) -> list[str]:
    """Notes on the dataset's masks (said at the start); DatasetError if a mask cannot be used.

    ``items`` are scan.ImageItem: each has ``path`` and ``mask`` (its mask source or None).
    """
    with_mask = [it for it in items if it.mask is not None]
    if not masked_loss:
        return [f"{len(with_mask)} image{'s have' if len(with_mask) != 1 else ' has'} a mask (alpha channel or mask "
                "file); data.masked_loss is off, so every image is learnt whole"] if with_mask else []
    if not with_mask:
        raise DatasetError("data.masked_loss is on but no image has a mask: give images an alpha channel, a "
                           "<name>_mask.png beside them or a masks/ folder (notebook 01's mask helper makes them), "
                           "or turn masked_loss off.")
    infos = [inspect_mask(it.path, it.mask) for it in with_mask]
    problems = [i.problem for i in infos if i.problem]
    if problems:
        raise DatasetError("Training did not start, a mask cannot be read:\n" + "\n".join(problems))
    notes = [f"masked loss: {len(with_mask)} of {len(items)} images have a mask"
             + (" (the others are learnt whole)" if len(with_mask) < len(items) else "")]
    notes += [i.note for i in infos if i.note]
    notes += [f"{printable(i.source)}: the mask of {printable(i.image.name)} is all black: nothing of it is learnt"
              for i in infos if i.coverage == 0]
    return notes
