"""Dataset checks: every file gets a verdict and a reason; nothing crashes the scan, nothing is deleted.

    from lorakit.dataset.checks import CheckSettings, check_folder
    report = check_folder("my-project/dataset", CheckSettings(resolution=512))
    print(report.format_table()); report.to_json()

    python -m lorakit dataset check my-project/dataset --json     # the same from the shell

Flags: empty, not an image, truncated/corrupt, decompression bomb, animated, too small for the resolution,
blurry (variance of the Laplacian, threshold shown), near-duplicates (perceptual hash), same-stem clashes,
missing/empty/non-UTF-8 captions. Files are only ever opened for reading.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError, features

from lorakit.dataset.masks import has_alpha, inspect_mask, is_mask_file
from lorakit.dataset.scan import (
    IMAGE_EXTENSIONS,
    folder_problem,
    link_problem,
    parse_folder_name,
    read_caption,
)
from lorakit.errors import DatasetError
from lorakit.files import printable

# phone photos: HEIC/HEIF need pillow-heif, AVIF a Pillow with AVIF (11.3+): the extra lorakit[heif] brings both
PHONE_EXTENSIONS = (".heic", ".heif", ".avif")
# still images Pillow reads that training ignores until imported (import converts them: PNG, phone photos JPEG)
CONVERTIBLE_EXTENSIONS = (".gif", ".tif", ".tiff") + PHONE_EXTENSIONS
SKIPPED_DIRS = ("captions-backup", "uncropped")
ERROR, WARN, OK = "error", "warn", "ok"


@dataclass
class CheckSettings:
    """Thresholds of the checks; all of them are printed with the report."""

    resolution: int = 512  # training side: an image with fewer than resolution² pixels is upscaled
    blur_threshold: float = 20.0  # sharpness (0–100, see sharpness()) below which an image is called blurry
    duplicate_distance: int = 6  # perceptual-hash bits (of 64) that may differ for two images to be near-duplicates
    max_megapixels: float = 120.0  # larger images are refused undecoded (decompression bombs)
    caption_extension: str = ".txt"


@dataclass
class Issue:
    code: str
    severity: str  # "error" (unusable) or "warn" (usable, look at it)
    message: str


@dataclass
class ImageInfo:
    """What opening an image safely found: its size after EXIF rotation, or the reason it cannot be used."""

    size: tuple[int, int] = (0, 0)
    mode: str = ""
    format: str = ""
    frames: int = 1
    orientation: int = 1
    alpha: bool = False  # transparency: kept by import, the image's loss mask (masks.py)
    problem: Issue | None = None


@dataclass
class FileCheck:
    path: Path
    size: tuple[int, int] = (0, 0)
    sharpness: float | None = None
    phash: str = ""
    issues: list[Issue] = field(default_factory=list)
    thumb: Image.Image | None = field(default=None, repr=False, compare=False)
    mask: str = ""  # "" (no mask) or what masks.MaskInfo.describe says: "mask: alpha channel, 40% learnt"

    @property
    def status(self) -> str:
        severities = {i.severity for i in self.issues}
        return ERROR if ERROR in severities else WARN if WARN in severities else OK

    def row(self, root: Path) -> dict:
        """A JSON-ready summary (path relative to the checked folder)."""
        return {"file": _rel(self.path, root), "status": self.status,
                "width": self.size[0], "height": self.size[1],
                "sharpness": None if self.sharpness is None else round(self.sharpness, 1),
                "issues": [asdict(i) for i in self.issues], "mask": self.mask}


@dataclass
class CheckReport:
    root: Path
    settings: CheckSettings
    files: list[FileCheck]
    seconds: float = 0.0

    @property
    def flagged(self) -> list[FileCheck]:
        return [f for f in self.files if f.issues]

    @property
    def errors(self) -> list[FileCheck]:
        return [f for f in self.files if f.status == ERROR]

    def counts(self) -> dict[str, int]:
        """How many files each issue code concerns."""
        out: dict[str, int] = {}
        for f in self.files:
            for code in {i.code for i in f.issues}:
                out[code] = out.get(code, 0) + 1
        return dict(sorted(out.items()))

    def summary(self) -> str:
        flagged = ", ".join(f"{n} {code}" for code, n in self.counts().items()) or "nothing"
        masked = [f for f in self.files if f.mask]
        masks = f" {len(masked)} of {len(self.files)} have a loss mask." if masked else ""
        return (f"{len(self.files)} files checked in {self.seconds:.2f}s: {len(self.errors)} unusable, "
                f"flagged: {flagged}.{masks} Thresholds: {self.thresholds()}")

    def thresholds(self) -> str:
        s = self.settings
        return (f"resolution {s.resolution}, blur < {s.blur_threshold:g}, near-duplicate ≤ {s.duplicate_distance} "
                f"bits, limit {s.max_megapixels:g} MP")

    def rows(self) -> list[dict]:
        return [f.row(self.root) for f in self.files]

    def to_json(self) -> str:
        """Valid JSON, always: non-UTF-8 file names are written escaped (see ``lorakit.files.printable``)."""
        return json.dumps({"root": printable(self.root), "settings": asdict(self.settings), "seconds": round(self.seconds, 3),
                           "counts": self.counts(), "files": self.rows()}, indent=1, ensure_ascii=False)

    def format_table(self, only_flagged: bool = False) -> str:
        """A plain-text table: file, size, sharpness, status, reasons."""
        lines = [f"{'file':<40} {'size':>11} {'sharp':>7}  {'status':<6} reasons"]
        for f in self.flagged if only_flagged else self.files:
            size = f"{f.size[0]}×{f.size[1]}" if f.size != (0, 0) else "-"
            sharp = f"{f.sharpness:.0f}" if f.sharpness is not None else "-"
            reasons = "; ".join(i.message for i in f.issues) or "ok"
            reasons += f" [{f.mask}]" if f.mask else ""
            lines.append(printable(f"{_rel(f.path, self.root):<40} {size:>11} {sharp:>7}  {f.status:<6} {reasons}"))
        lines.append(self.summary())
        return "\n".join(lines)


# ---- opening an image without trusting it ----------------------------------------------------------
def inspect_image(path: Path, max_megapixels: float = 120.0,
                  draft: bool = True) -> tuple[ImageInfo, Image.Image | None]:
    """Open and fully decode ``path`` read-only: what was found, and the upright RGB image (None if unusable).

    ``draft`` lets JPEGs decode at a reduced size (≥ 1024 px), plenty for the checks and much faster.
    """
    info = ImageInfo()
    if path.stat().st_size == 0:
        info.problem = Issue("empty", ERROR, "empty file (0 bytes)")
        return info, None
    missing = phone_format_problem(path)
    if missing:
        info.problem = Issue("needs-extra", ERROR, missing)
        return info, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                info.mode, info.format, info.alpha = im.mode, im.format or "", has_alpha(im)
                info.frames = getattr(im, "n_frames", 1)
                w, h = im.size
                if w * h > max_megapixels * 1e6:
                    info.problem = Issue("bomb", ERROR, f"{w}×{h} = {w * h / 1e6:.0f} MP exceeds the "
                                         f"{max_megapixels:g} MP limit: not decoded (decompression bomb?)")
                    return info, None
                info.orientation = im.getexif().get(0x0112, 1)
                if draft and im.format == "JPEG":
                    im.draft("RGB", (1024, 1024))
                im.load()
                rgb = to_rgb(ImageOps.exif_transpose(im))
        info.size = (h, w) if info.orientation in (5, 6, 7, 8) else (w, h)
        return info, rgb
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        info.problem = Issue("bomb", ERROR, f"decompression bomb, not decoded: {e}")
    except UnidentifiedImageError:
        info.problem = Issue("not-image", ERROR, _not_an_image_reason(path))
    except OSError as e:
        info.problem = Issue("truncated", ERROR, f"truncated or corrupt: {e}")
    except Exception as e:  # any decoder failure is a verdict on the file, never a crash
        info.problem = Issue("unreadable", ERROR, f"cannot be decoded ({type(e).__name__}: {e})")
    return info, None


@functools.cache
def heif_opener() -> bool:
    """Whether Pillow reads HEIC/HEIF here: pillow-heif installed, its opener registered (once)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def avif_reader() -> bool:
    """Whether Pillow reads AVIF here (built in since Pillow 11.3; older pillow-heif releases also read it)."""
    if features.check("avif"):
        return True
    try:
        from pillow_heif import register_avif_opener  # pillow-heif < 1.0 only
    except ImportError:
        return False
    register_avif_opener()
    return True


def phone_format_problem(path: Path) -> str | None:
    """What to install to read ``path`` (a .heic/.heif/.avif photo), or None when this Pillow reads it."""
    suffix = path.suffix.lower()
    if suffix in (".heic", ".heif") and not heif_opener():
        return (f"{suffix[1:].upper()} photo (as phones save them) and pillow-heif is not installed: "
                'pip install "lorakit[heif]", then import again')
    if suffix == ".avif" and not avif_reader():
        return (f"AVIF photo and this Pillow ({PIL.__version__}) cannot read AVIF: "
                'pip install "lorakit[heif]" (Pillow 11.3 or newer), then import again')
    return None


_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}


def _not_an_image_reason(path: Path) -> str:
    head = path.read_bytes()[:64]
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        kind = "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIC"
        return (f"a {kind} photo under a {path.suffix or 'missing'} extension: rename it to "
                f"{path.stem}.{kind.lower()} (with lorakit[heif] installed), then import again")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"not an image: Pillow does not recognise the format (starts with {head[:8]!r})"
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        return f"not an image: the file holds text ({text[:24].strip()!r}…) despite its {path.suffix} name"
    return f"not an image: Pillow does not recognise the format (starts with {head[:8]!r})"


def load_upright(path: Path) -> Image.Image:
    """``path`` as upright 8-bit RGB (EXIF rotation applied), as the trainer sees it."""
    with Image.open(path) as im:
        return to_rgb(ImageOps.exif_transpose(im))


def load_upright_rgba(path: Path) -> Image.Image:
    """``path`` upright (EXIF rotation applied) as 8-bit RGBA: its transparency kept (import's form of an alpha image)."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        rgba = im.convert("RGBA") if im.mode not in ("I;16", "I;16B", "I;16L", "I", "F") else to_rgb(im).convert("RGBA")
        rgba.load()
        return rgba


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any mode → 8-bit RGB: transparency flattened onto ``background``, 16-bit scaled (not clipped)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im.convert("RGB") if im.mode != "RGB" else im


# ---- measures ----------------------------------------------------------------------------------------
def working_copy(im: Image.Image, side: int = 512) -> Image.Image:
    """``im`` reduced (box filter) to at most side² pixels; never enlarged."""
    scale = min(1.0, side / math.sqrt(im.width * im.height))
    if scale >= 1:
        return im
    return im.resize((max(3, round(im.width * scale)), max(3, round(im.height * scale))), Image.Resampling.BOX)


def sharpness(im: Image.Image, side: int = 512, top: float = 0.05) -> float:
    """Edge crispness 0–100 (a clean step edge ≈ 100, a 2-px blur ≈ 18), at ≤ side² pixels.

    On the strongest ``top`` fraction of edges: mean |Laplacian| / mean |gradient|, summed over RGB. Unlike the
    variance of the Laplacian it ignores contrast and how much of the picture is flat: a blurred edge spreads its
    gradient over many pixels and its Laplacian shrinks faster than the gradient.
    """
    a = np.asarray(working_copy(im, side).convert("RGB"), dtype=np.float32)
    if min(a.shape[:2]) < 3:
        return 0.0
    gx, gy = (a[1:-1, 2:] - a[1:-1, :-2]) / 2, (a[2:, 1:-1] - a[:-2, 1:-1]) / 2
    grad = np.sqrt(gx**2 + gy**2).sum(-1).ravel()
    lap = np.abs(4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]).sum(-1).ravel()
    k = max(16, int(grad.size * top))
    strongest = np.argpartition(grad, -k)[-k:] if k < grad.size else np.arange(grad.size)
    edges = strongest[grad[strongest] > 6.0]  # below this it is noise on a flat area, not an edge
    if edges.size < 8:
        return 0.0
    return float(50.0 * lap[edges].sum(dtype=np.float64) / grad[edges].sum(dtype=np.float64))


@dataclass
class Fingerprint:
    """A perceptual hash (shape and layout) and an 8×8 colour thumbnail (so a red and a green square differ)."""

    phash: imagehash.ImageHash
    colors: np.ndarray

    @classmethod
    def of(cls, im: Image.Image) -> Fingerprint:
        return cls(imagehash.phash(im), np.asarray(im.resize((8, 8), Image.Resampling.BOX), dtype=np.float32))

    def distance(self, other: Fingerprint) -> tuple[int, float]:
        return self.phash - other.phash, float(np.abs(self.colors - other.colors).mean())


def near_duplicates(prints: dict[Path, Fingerprint], max_distance: int,
                    max_color_diff: float = 20.0) -> list[tuple[Path, Path, int]]:
    """Pairs whose hashes differ in at most ``max_distance`` bits and whose colours match (mean diff ≤ 20/255)."""
    paths = sorted(prints)
    pairs = []
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            bits, color = prints[a].distance(prints[b])
            if bits <= max_distance and color <= max_color_diff:
                pairs.append((a, b, bits))
    return pairs


# ---- the scan ----------------------------------------------------------------------------------------
def dataset_root(root: str | Path) -> Path:
    """``root`` itself, or its dataset/ folder when ``root`` is a project."""
    root = Path(root)
    if (root / "dataset").is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir()):
        return root / "dataset"
    return root


def dataset_files(root: Path) -> list[Path]:
    """Image-like files under ``root`` (a project folder means its dataset/), skipping backups and hidden files."""
    root = dataset_root(root)
    found = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") or part in SKIPPED_DIRS for part in rel) or not p.is_file():
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS + CONVERTIBLE_EXTENSIONS and not is_mask_file(p):
            found.append(p)  # a mask file is checked with its image (check_file)
    return found


def training_skip(path: Path, root: Path, layout: bool) -> str | None:
    """Why training would skip ``path`` (under the dataset folder ``root``), or None; only in a kohya ``layout``."""
    rel = path.relative_to(root).parts
    if not layout:
        return None
    folders = rel[1:-1] if rel[0] == "reg" else rel[:-1]
    if len(folders) != 1:
        where = "directly in the dataset folder" if not folders else f"in a subfolder of {folders[0]}/"
        return f"training skips it: {where}, not in a <repeats>_<token> folder"
    bad = folder_problem(folders[0])
    return f"training skips it: folder {printable(folders[0])!r}: {bad}" if bad else None


def is_kohya_layout(root: Path, from_project: bool = False) -> bool:
    """Whether ``root`` is a dataset folder (``<repeats>_<token>`` subfolders), not a folder of photos."""
    return from_project or root.name in ("dataset", "reg") or any(
        p.is_dir() and parse_folder_name(p.name) for p in root.iterdir())


def check_file(path: Path, settings: CheckSettings, root: Path | None = None) -> tuple[FileCheck, Fingerprint | None]:
    """All per-file checks of one image and its caption."""
    fc = FileCheck(path)
    info, rgb = inspect_image(path, settings.max_megapixels)
    if info.problem:
        fc.issues.append(info.problem)
    if rgb is None:
        return fc, None
    fc.issues += caption_issues(path, settings.caption_extension, root)
    fc.issues += mask_issues(fc, path)
    fc.size = info.size
    if info.frames > 1:
        fc.issues.append(Issue("animated", WARN, f"animated ({info.frames} frames): only the first frame is used"))
    if path.suffix.lower() in CONVERTIBLE_EXTENSIONS:
        to = "JPEG" if path.suffix.lower() in PHONE_EXTENSIONS else "PNG"
        fc.issues.append(Issue("format", WARN, f"{path.suffix} is not read by training: import converts it to {to}"))
    w, h = info.size
    if w * h < settings.resolution ** 2:
        fc.issues.append(Issue("small", WARN, f"too small: {w}×{h} has fewer pixels than {settings.resolution}²; "
                                              "upscaled it looks soft (with bucket_no_upscale it trains smaller)"))
    rgb = working_copy(rgb)  # every measure below works at ≤ 512² pixels
    fc.sharpness = sharpness(rgb)
    if fc.sharpness < settings.blur_threshold:
        fc.issues.append(Issue("blurry", WARN, f"blurry: sharpness {fc.sharpness:.0f} < {settings.blur_threshold:g}"))
    digest = Fingerprint.of(rgb)
    fc.phash = str(digest.phash)
    fc.thumb = rgb.copy()
    fc.thumb.thumbnail((160, 160))
    return fc, digest


def mask_issues(fc: FileCheck, path: Path) -> list[Issue]:
    """Sets ``fc.mask`` from the image's mask (alpha channel or mask file); an unreadable one is an error."""
    mask = inspect_mask(path)
    fc.mask = mask.describe() if mask.source is not None else ""
    if mask.problem:
        return [Issue("mask", ERROR, mask.problem)]
    if mask.note:
        return [Issue("mask-size", WARN, mask.note)]
    if mask.source is not None and mask.coverage == 0:
        return [Issue("mask-empty", WARN, "its mask is all black: with data.masked_loss nothing of it is learnt")]
    return []


def caption_issues(image: Path, extension: str = ".txt", root: Path | None = None) -> list[Issue]:
    """Missing, empty or undecodable caption of ``image``; a caption linked from outside ``root`` is not read."""
    cap = image.with_suffix(extension)
    why = link_problem(cap, root or image.parent) if cap.is_symlink() else None
    if why:
        return [Issue("caption-link", ERROR, f"{printable(cap.name)} is {why}")]
    if not cap.is_file():
        return [Issue("no-caption", WARN, f"no {extension} caption: training uses the folder's token alone")]
    try:
        text = read_caption(cap)
    except DatasetError as e:
        return [Issue("caption-encoding", ERROR, str(e).replace(str(cap), cap.name))]
    if not text:
        return [Issue("empty-caption", WARN, f"{cap.name} is empty")]
    from lorakit.dataset.captions import CLIP_TOKENS, caption_tokens

    if (n := caption_tokens(text)) > CLIP_TOKENS:
        return [Issue("long-caption", WARN, f"{cap.name} is {n} tokens: the text encoder reads {CLIP_TOKENS}, the "
                                            "rest is cut; shorten it or put what matters first")]
    return []


def stem_clashes(files: list[Path]) -> dict[Path, list[Path]]:
    """Files sharing a folder and a stem (``a.png`` + ``a.jpg`` would share ``a.txt``)."""
    groups: dict[Path, list[Path]] = {}
    for f in files:
        groups.setdefault(f.with_suffix(""), []).append(f)
    return {stem: fs for stem, fs in groups.items() if len(fs) > 1}


def check_folder(root: str | Path, settings: CheckSettings | None = None) -> CheckReport:
    """Check every image under ``root`` (a kohya dataset, one folder, or a project); never modifies a file."""
    settings = settings or CheckSettings()
    if not Path(root).is_dir():
        raise FileNotFoundError(f"No folder at {root}.")
    given, root = Path(root), dataset_root(root)
    layout = is_kohya_layout(root, from_project=root != given)
    start = time.perf_counter()
    checks: list[FileCheck] = []
    hashes: dict[Path, Fingerprint] = {}
    files = dataset_files(root)
    for path in files:
        link = link_problem(path, root)
        if link:  # never opened: a link out of the dataset is not ours to read
            checks.append(FileCheck(path, issues=[Issue("skipped", ERROR, f"training skips it: {link}")]))
            continue
        skip = training_skip(path, root, layout)
        fc, digest = check_file(path, settings, root)
        if skip:
            fc.issues.insert(0, Issue("skipped", ERROR, skip))
        checks.append(fc)
        if digest is not None:
            hashes[path] = digest
    by_path = {c.path: c for c in checks}
    for fs in stem_clashes(files).values():
        for f in fs:
            others = ", ".join(o.name for o in fs if o != f)
            by_path[f].issues.append(Issue("stem-clash", ERROR, f"same name as {others}: both would use one caption"))
    for a, b, d in near_duplicates(hashes, settings.duplicate_distance):
        by_path[a].issues.append(Issue("duplicate", WARN, f"near-duplicate of {_rel(b, root)} (hash distance {d})"))
        by_path[b].issues.append(Issue("duplicate", WARN, f"near-duplicate of {_rel(a, root)} (hash distance {d})"))
    return CheckReport(root, settings, checks, time.perf_counter() - start)


# ---- pictures ----------------------------------------------------------------------------------------
STATUS_COLORS = {OK: (60, 170, 90), WARN: (235, 170, 30), ERROR: (210, 50, 50)}


def contact_sheet(tiles: list[tuple[Image.Image | None, str, str]], thumb: int = 128, cols: int = 8) -> Image.Image:
    """A grid of (image, label, status) tiles with a coloured border per status; None draws a crossed tile."""
    cols = max(1, min(cols, len(tiles)))
    rows = max(1, -(-len(tiles) // cols))
    pad, label_h = 6, 14
    sheet = Image.new("RGB", (cols * (thumb + pad), rows * (thumb + pad + label_h)), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for n, (im, label, status) in enumerate(tiles):
        x, y = n % cols * (thumb + pad) + pad // 2, n // cols * (thumb + pad + label_h) + pad // 2
        color = STATUS_COLORS.get(status, (120, 120, 120))
        draw.rectangle((x - 2, y - 2, x + thumb + 1, y + thumb + 1), outline=color, width=3)
        if im is None:
            draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=(200, 200, 200))
            draw.line((x, y, x + thumb, y + thumb), fill=color, width=3)
            draw.line((x, y + thumb, x + thumb, y), fill=color, width=3)
        else:
            t = ImageOps.contain(im, (thumb, thumb), Image.Resampling.NEAREST if max(im.size) < thumb else
                                 Image.Resampling.BICUBIC)
            sheet.paste(t, (x + (thumb - t.width) // 2, y + (thumb - t.height) // 2))
        draw.text((x, y + thumb + 2), label[: max(4, thumb // 6)], fill=(20, 20, 20))
    return sheet


def report_sheet(report: CheckReport, thumb: int = 128, cols: int = 8, only_flagged: bool = False) -> Image.Image:
    """The report's contact sheet: every image (or the flagged ones), bordered green / amber / red."""
    files = report.flagged if only_flagged else report.files
    return contact_sheet([(f.thumb, f.path.name, f.status) for f in files], thumb, cols)


def _rel(path: Path, root: Path) -> str:
    try:
        return printable(path.relative_to(root))
    except ValueError:
        return printable(path)


# ---- the notebook's last word ------------------------------------------------------------------------
@dataclass
class DatasetStatus:
    """Is the dataset ready to train on: images, a caption for each, nothing unusable."""

    root: Path
    images: int = 0
    reg_images: int = 0
    uncaptioned: list[Path] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.images > 0 and not self.uncaptioned and not self.unusable

    @property
    def message(self) -> str:
        if self.ok:
            return f"dataset ready: {self.images} images (+{self.reg_images} reg), all captioned, in {self.root}"
        parts = []
        if not self.images:
            parts.append(f"no training images in {self.root}/<repeats>_<token>/: run the import cells")
        if self.uncaptioned:
            names = ", ".join(p.name for p in self.uncaptioned[:5])
            parts.append(f"{len(self.uncaptioned)} images without a caption ({names}…): caption them or "
                         "run the captioner on 'images without a caption'")
        if self.unusable:
            parts.append(f"{len(self.unusable)} unusable files: " + "; ".join(self.unusable[:5]))
        return "dataset NOT ready: " + " | ".join(parts)


def verify_dataset(dataset_dir: str | Path, caption_extension: str = ".txt") -> DatasetStatus:
    """Count training/reg images, list those without a (readable, non-empty) caption and the unusable files."""
    root = Path(dataset_dir)
    status = DatasetStatus(root)
    if not root.is_dir():
        return status
    report = check_folder(root, CheckSettings(resolution=1, caption_extension=caption_extension))
    for f in report.files:
        rel = f.path.relative_to(root).parts
        if f.status == ERROR:
            status.unusable.append(f"{_rel(f.path, root)}: " + "; ".join(i.message for i in f.issues
                                                                         if i.severity == ERROR))
        elif len(rel) < 2 or parse_folder_name(rel[-2]) is None:
            status.unusable.append(f"{_rel(f.path, root)}: not in a <repeats>_<token> folder, training skips it")
        elif rel[0] == "reg":
            status.reg_images += 1
        else:
            status.images += 1
            if any(i.code in ("no-caption", "empty-caption") for i in f.issues):
                status.uncaptioned.append(f.path)
    return status
