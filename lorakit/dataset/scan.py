"""The training data: scan a kohya layout, put images in aspect-ratio buckets, cache latents, batch by bucket.

    items = scan_dataset(project.dataset_dir)              # one ImageItem per image, with caption and repeats
    buckets = make_buckets(512, 256, 1024, 64)             # kohya's bucket sizes
    assign_buckets(items, buckets, 512, 64, no_upscale=True)

Folders are named ``<repeats>_<token>`` (``15_fr3dd!e``); each image has a same-named caption file. Images
of one batch always share a bucket (same size), so nothing is cropped square unless it is square.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from lorakit.dataset.masks import cover_crop, has_alpha, is_mask_file, latent_mask, mask_file
from lorakit.errors import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SKIPPED_EXTENSIONS = (".gif", ".tif", ".tiff",  # Pillow reads them, training does not: import converts them
                      ".heic", ".heif", ".avif")  # phone photos (with lorakit[heif])




@dataclass
class ImageItem:
    path: Path
    caption: str
    repeats: int
    is_reg: bool = False
    size: tuple[int, int] = (0, 0)  # width, height (after EXIF rotation)
    bucket: tuple[int, int] = (0, 0)  # width, height of its bucket
    folder: str = ""
    mask: Path | None = None  # its loss mask: a mask file, the image itself (alpha channel), or None (masks.py)
    alpha: bool = False  # the image has transparency: trained flattened onto white, as import used to store it


@dataclass
class ScanResult:
    items: list[ImageItem] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    caption_errors: list[str] = field(default_factory=list)

    @property
    def train_items(self) -> list[ImageItem]:
        return [i for i in self.items if not i.is_reg]

    @property
    def reg_items(self) -> list[ImageItem]:
        return [i for i in self.items if i.is_reg]


def parse_folder_name(name: str) -> tuple[int, str] | None:
    """'15_fr3dd!e woman' -> (15, 'fr3dd!e woman'); None if the folder is not in kohya form."""
    return None if folder_problem(name) else (int(name.partition("_")[0]), name.partition("_")[2])


MAX_REPEATS = 10_000  # more is a typo (10**30 would make an epoch that never ends)


def folder_problem(name: str) -> str | None:
    """Why training skips a folder called ``name`` (None: it is a good ``<repeats>_<token>`` folder)."""
    head, sep, tail = name.partition("_")
    example = "name it <repeats>_<token>, e.g. 10_mytoken"
    if not sep:
        return f"not named <repeats>_<token> (no '_'): {example}"
    if not (head.isascii() and head.isdigit()):  # '²'.isdigit() is True, int('²') fails
        return f"{head!r} before the '_' is not a whole number of repeats: {example}"
    repeats = int(head)
    if repeats < 1:
        return f"repeats {repeats}: training would never show these images; {example} (repeats >= 1)"
    if repeats > MAX_REPEATS:
        return f"repeats {repeats} is more than {MAX_REPEATS}: an epoch would never end; use a smaller number"
    return None


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, with every link resolved, lies inside ``root`` (resolved too)."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


def link_problem(path: Path, root: Path) -> str | None:
    """Why a link (or a link on the way) at ``path`` may not be read: it leaves ``root``, dangles or loops."""
    if not path.exists():
        return "a broken link: nothing to read"
    if not inside(path, root):
        return f"a link to {path.resolve()}, outside {root}: not read (copy the file in instead)"
    return None


def read_caption(path: Path) -> str:
    """A UTF-8 caption (a BOM is tolerated); undecodable bytes are an error naming the file."""
    try:
        return path.read_text(encoding="utf-8-sig").strip()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: caption is not UTF-8 ({e.reason} at byte {e.start}); re-save it as UTF-8.") from e


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def image_has_alpha(path: Path) -> bool:
    with Image.open(path) as im:
        return has_alpha(im)


def scan_dataset(root: str | Path, caption_extension: str = ".txt", is_reg: bool = False,
                 repeats_override: int = 0) -> ScanResult:
    """Every image under ``root``'s ``<repeats>_<token>`` folders, with its caption (or the token if none)."""
    root = Path(root)
    result = ScanResult()
    if not root.is_dir():
        raise DatasetError(f"No dataset folder at {root}. Notebook 01 makes one (dataset/<repeats>_<token>/).")
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS + SKIPPED_EXTENSIONS:
            result.problems.append(f"{entry}: directly in {root.name}/, not in a <repeats>_<token> folder: skipped")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name == "reg" and not is_reg or folder.name.startswith("."):
            continue
        why = folder_problem(folder.name) or link_problem(folder, root)
        if why:
            result.problems.append(f"{folder}: {why}: skipped")
            continue
        repeats, token = parse_folder_name(folder.name)  # type: ignore[misc]
        if repeats_override and not is_reg:
            repeats = repeats_override
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if path.suffix.lower() in SKIPPED_EXTENSIONS:
                result.problems.append(f"{path}: training reads {', '.join(IMAGE_EXTENSIONS)} only: skipped "
                                       "(`lorakit dataset import` converts it to .png)")
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS or is_mask_file(path):
                continue
            why = link_problem(path, root)
            if why:
                result.problems.append(f"{path}: {why}: skipped")
                continue
            cap_path = path.with_suffix(caption_extension)
            why = link_problem(cap_path, root) if cap_path.is_symlink() else None
            if why:  # a caption is published in the LoRA's metadata: never one from outside the dataset
                result.caption_errors.append(f"{cap_path}: caption is {why}")
                continue
            try:
                caption = read_caption(cap_path) if cap_path.is_file() else token
            except DatasetError as e:  # reported, not crashed; training refuses to start until it is fixed
                result.caption_errors.append(str(e))
                continue
            try:
                size, alpha = image_size(path), image_has_alpha(path)
            except Exception as e:  # a broken file is reported, never crashes the scan
                result.problems.append(f"{path}: unreadable image ({type(e).__name__}: {e}): skipped")
                continue
            mask = mask_file(path) or (path if alpha else None)
            result.items.append(ImageItem(path, caption, repeats, is_reg, size, folder=folder.name, mask=mask,
                                          alpha=alpha))
    if not result.items and not is_reg:
        raise DatasetError(f"No images found in {root}/<repeats>_<token>/ folders ({', '.join(IMAGE_EXTENSIONS)}).")
    return result


# ---- buckets -------------------------------------------------------------------------------------------
def make_buckets(resolution: int, min_reso: int, max_reso: int, step: int) -> list[tuple[int, int]]:
    """All (w, h) with sides multiples of ``step`` in [min, max] and area at most resolution²."""
    max_area = resolution * resolution
    sizes = set()
    w = min_reso
    while w <= max_reso:
        h = min(max_reso, (max_area // w) // step * step)
        if h >= min_reso:
            sizes.add((w, h))
            sizes.add((h, w))
        w += step
    sizes.add((resolution, resolution))
    return sorted(sizes)


def choose_bucket(size: tuple[int, int], buckets: list[tuple[int, int]], resolution: int, step: int,
                  no_upscale: bool) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest the image's; small images get their own size with no_upscale.

    An own-size bucket stays within the buckets' smallest and largest sides: a 50000×5 strip gets the widest
    bucket (and is center-cropped to it), never a 49984×64 one.
    """
    w, h = size
    lo, hi = min(min(b) for b in buckets), max(max(b) for b in buckets)
    if no_upscale and w * h <= resolution * resolution:
        bw, bh = max(step, w // step * step), max(step, h // step * step)
        if min(bw, bh) < lo:  # below the smallest bucket side: enlarge just enough
            k = lo / min(w, h)
            bw, bh = max(lo, round(w * k / step) * step), max(lo, round(h * k / step) * step)
        if max(bw, bh) <= hi and bw * bh <= resolution * resolution:
            return bw, bh
    ar = w / max(h, 1)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - math.log(max(ar, 1e-9))), -b[0] * b[1]))


def crop_note(item: ImageItem) -> str | None:
    """A sentence when the bucket's aspect ratio is far from the image's (much of it is cropped away), else None."""
    (w, h), (bw, bh) = item.size, item.bucket
    if not (w and h):
        return None
    kept = min(w / h, bw / bh) / max(w / h, bw / bh)  # the share of the image the center crop keeps
    if kept >= 0.5:
        return None
    return (f"{item.path}: {w}×{h} is far wider or taller than any bucket: center-cropped to {bw}×{bh}, keeping "
            f"{kept:.0%} of it (crop it yourself, or widen min/max_bucket_reso)")


def assign_buckets(items: list[ImageItem], resolution: int, enable: bool = True, min_reso: int = 256,
                   max_reso: int = 1024, step: int = 64, no_upscale: bool = True,
                   notes: list[str] | None = None) -> dict[tuple[int, int], int]:
    """Set each item's bucket; returns how many images each bucket holds. Heavy crops are added to ``notes``."""
    if not enable:
        for it in items:
            it.bucket = (resolution, resolution)
    else:
        step = min(step, resolution)
        min_reso = min(min_reso, resolution)
        max_reso = max(max_reso, resolution)
        buckets = make_buckets(resolution, min_reso, max_reso, step)
        for it in items:
            it.bucket = choose_bucket(it.size, buckets, resolution, step, no_upscale)
    if notes is not None:
        notes += [n for n in map(crop_note, items) if n]
    counts: dict[tuple[int, int], int] = {}
    for it in items:
        counts[it.bucket] = counts.get(it.bucket, 0) + 1
    return counts


def load_image_for_bucket(path: Path, bucket: tuple[int, int]) -> Image.Image:
    """Open, apply EXIF rotation, convert to RGB (transparency onto white), resize to cover the bucket, center-crop."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if has_alpha(im):  # the alpha channel is the loss mask (masks.py); the pixels train as import shows them
            rgba = im.convert("RGBA")
            im = Image.new("RGB", rgba.size, (255, 255, 255))
            im.paste(rgba, mask=rgba.getchannel("A"))
        im = im.convert("RGB")
    return cover_crop(im, bucket, Image.Resampling.LANCZOS)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor in [-1, 1], shape (3, H, W)."""
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


# ---- latent cache --------------------------------------------------------------------------------------
def vae_fingerprint(vae) -> str:
    """Identifies a VAE by its config and a sample of its weights (so a different VAE misses the cache)."""
    h = hashlib.sha256(repr(sorted(vae.config.items())).encode())
    for _, p in list(vae.named_parameters())[:: max(1, len(list(vae.parameters())) // 8)]:
        h.update(p.detach().float().flatten()[:256].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """Content hash of a file, computed once per (path, size, mtime): the training loop asks every step."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
    return _DIGESTS[key]


class LatentCache:
    """Latents keyed by image content + VAE + bucket (+ flip), in memory and optionally on disk."""

    def __init__(self, vae, scale: float, shift: float = 0.0, disk_dir: Path | None = None, write: bool = True):
        self.vae, self.scale, self.shift, self.disk_dir = vae, scale, shift, disk_dir
        self.write = write  # only one process of a multi-GPU run writes the cache
        self.vae_id = vae_fingerprint(vae)
        self.memory: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def key(self, item: ImageItem, flip: bool) -> str:
        white = "-onwhite" if item.alpha else ""  # transparency flattened onto white (older caches: not)
        return (f"{file_digest(item.path)}-{self.vae_id}-{item.bucket[0]}x{item.bucket[1]}{white}"
                f"{'-flip' if flip else ''}")

    @torch.no_grad()
    def mask(self, item: ImageItem, flip: bool = False) -> torch.Tensor:
        """The loss mask on the latent grid, (1, h, w): cached beside the latents, keyed by them and the mask file."""
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if item.mask is None:
            return torch.ones(1, item.bucket[1] // factor, item.bucket[0] // factor)
        key = f"{self.key(item, flip)}-mask-{file_digest(item.mask)}"
        if key not in self.memory:
            disk = self.disk_dir / f"{key}.pt" if self.disk_dir else None
            if disk is not None and disk.is_file():
                self.memory[key] = torch.load(disk, map_location="cpu", weights_only=True)
            else:
                self.memory[key] = latent_mask(item.path, item.mask, item.bucket, factor, flip)
                if disk is not None and self.write:
                    from lorakit.files import atomic_path

                    with atomic_path(disk) as tmp:
                        torch.save(self.memory[key], tmp)
        return self.memory[key]

    @torch.no_grad()
    def get(self, item: ImageItem, flip: bool = False) -> torch.Tensor:
        key = self.key(item, flip)
        if key in self.memory:
            self.hits += 1
            return self.memory[key]
        disk = self.disk_dir / f"{key}.pt" if self.disk_dir else None
        if disk is not None and disk.is_file():
            self.hits += 1
            latent = torch.load(disk, map_location="cpu", weights_only=True)
        else:
            self.misses += 1
            latent = self.encode(item, flip)
            if disk is not None and self.write:
                from lorakit.files import atomic_path

                with atomic_path(disk) as tmp:
                    torch.save(latent, tmp)
        self.memory[key] = latent
        return latent

    @torch.no_grad()
    def encode(self, item: ImageItem, flip: bool) -> torch.Tensor:
        im = load_image_for_bucket(item.path, item.bucket)
        if flip:
            im = ImageOps.mirror(im)
        # SDXL's VAE overflows in fp16 (config.force_upcast): encode in fp32, then put it back as it was
        upcast = bool(getattr(self.vae.config, "force_upcast", False)) and self.vae.dtype == torch.float16
        if upcast:
            self.vae.to(torch.float32)
        try:
            pixels = to_tensor(im)[None].to(self.vae.device, self.vae.dtype)
            dist = self.vae.encode(pixels).latent_dist
        finally:
            if upcast:
                self.vae.to(torch.float16)
        # the mean, not a sample: a cached sample would freeze one draw of the VAE's noise for the whole run
        return ((dist.mean - self.shift) * self.scale)[0].float().cpu()


# ---- captions at training time -------------------------------------------------------------------------
def process_caption(caption: str, rng: random.Random, shuffle: bool, keep_tokens: int,
                    tag_dropout: float, caption_dropout: float) -> str:
    """kohya's caption handling: dropout of the whole caption, of tags, and shuffling after keep_tokens."""
    if caption_dropout and rng.random() < caption_dropout:
        return ""
    if not (shuffle or tag_dropout):
        return caption
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    fixed, rest = tags[:keep_tokens], tags[keep_tokens:]
    if tag_dropout:
        rest = [t for t in rest if rng.random() >= tag_dropout]
    if shuffle:
        rng.shuffle(rest)
    return ", ".join(fixed + rest)


# ---- epochs and batches --------------------------------------------------------------------------------
@dataclass
class Sample:
    item: ImageItem
    flip: bool


def epoch_batches(items: list[ImageItem], batch_size: int, seed: int, epoch: int,
                  flip_aug: bool) -> list[list[Sample]]:
    """The batches of one epoch, deterministic from (seed, epoch): each image ``repeats`` times, grouped by bucket.

    Regularization images are drawn to match the number of training images, as kohya does.
    """
    rng = random.Random(f"{seed}:{epoch}")
    train = [it for it in items if not it.is_reg for _ in range(it.repeats)]
    reg_pool = [it for it in items if it.is_reg for _ in range(it.repeats)]
    reg: list[ImageItem] = []
    if reg_pool:
        while len(reg) < len(train):
            reg.extend(rng.sample(reg_pool, min(len(reg_pool), len(train) - len(reg))))
    samples = [Sample(it, flip_aug and rng.random() < 0.5) for it in train + reg]
    by_bucket: dict[tuple[int, int], list[Sample]] = {}
    for s in samples:
        by_bucket.setdefault(s.item.bucket, []).append(s)
    batches: list[list[Sample]] = []
    for bucket in sorted(by_bucket):
        group = by_bucket[bucket]
        rng.shuffle(group)
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches

