"""Import images into a project: copies only, the originals are never moved or modified.

    from lorakit.dataset.importing import import_images
    report = import_images("~/Pictures/freddie", project, token="fr3dd!e", repeats=15)
    report = import_images("~/Pictures/women", project, token="woman", repeats=1, reg=True)   # class images
    print(report.format_table())

A plain folder goes to ``dataset/<repeats>_<token>/``; a kohya layout (``<repeats>_<token>/`` subfolders) keeps
each folder's repeats and token unless ``token``/``repeats`` are given. Images that need no change are copied
byte for byte; the others are rewritten with EXIF rotation applied and in 8-bit RGB, with a note saying why.
Transparency is kept (an RGBA PNG): it is the image's loss mask (``data.masked_loss``, masks.py), and training
shows the pixels flattened onto white as before. Captions (same-named .txt) and mask files (``<stem>_mask.png``
or ``masks/<stem>.png``, stored as ``<stem>_mask.png``) come along. Files already in the project are kept, so importing twice is harmless.

Only regular files are copied: links are skipped and listed (``report.links``), or with ``follow_links=True``
followed when they stay inside the source folder. A stem the project already has under another name (``a.jpg``
there, ``a.png`` coming) is a conflict (``report.conflicts``): nothing of that stem is copied, nothing replaced.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.dataset.checks import CONVERTIBLE_EXTENSIONS, PHONE_EXTENSIONS, inspect_image, load_upright_rgba
from lorakit.dataset.masks import MASK_DIR, MASK_SUFFIX, is_mask_file, mask_file
from lorakit.dataset.scan import (
    IMAGE_EXTENSIONS,
    MAX_REPEATS,
    folder_problem,
    link_problem,
    parse_folder_name,
    read_caption,
)
from lorakit.errors import DatasetError
from lorakit.files import atomic_path, atomic_write_text, printable
from lorakit.project import Project

IMPORTABLE = IMAGE_EXTENSIONS + CONVERTIBLE_EXTENSIONS
JPEG_KIN = (".jpg", ".jpeg") + PHONE_EXTENSIONS  # rewritten as JPEG (quality 95): phone photos stay photo-sized
MODE_NOTES = {
    "RGBA": "RGBA → PNG, transparency kept (the loss mask with data.masked_loss)",
    "LA": "grey + alpha → RGBA PNG, transparency kept (the loss mask with data.masked_loss)",
    "PA": "palette + alpha → RGBA PNG, transparency kept (the loss mask with data.masked_loss)",
    "P": "palette → RGB",
    "L": "greyscale → RGB",
    "1": "1-bit → RGB",
    "CMYK": "CMYK → RGB",
    "YCbCr": "YCbCr → RGB",
    "I;16": "16-bit greyscale → 8-bit RGB",
    "I;16B": "16-bit greyscale → 8-bit RGB",
    "I": "32-bit greyscale → 8-bit RGB",
    "F": "float greyscale → 8-bit RGB",
}


@dataclass
class Imported:
    source: Path
    dest: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    folders: list[Path] = field(default_factory=list)
    copied: list[Imported] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # already in the project: left as they are
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (source, reason)
    links: list[tuple[Path, str]] = field(default_factory=list)  # (link in the source, why it was not followed)
    conflicts: list[tuple[Path, Path]] = field(default_factory=list)  # (incoming, what the project already has)

    def summary(self) -> str:
        converted = sum(1 for c in self.copied if c.notes)
        extra = "".join(f", {n} {what}" for n, what in ((len(self.links), "links skipped"),
                                                         (len(self.conflicts), "conflicts")) if n)
        return (f"{len(self.copied)} imported ({converted} converted), {len(self.kept)} already there, "
                f"{len(self.skipped)} skipped{extra} → {', '.join(printable(f) for f in self.folders) or 'nothing'}")

    def rows(self) -> list[dict]:
        name = lambda p: printable(p.name)  # noqa: E731 - non-UTF-8 names shown escaped
        rows = [{"file": name(c.source), "result": "imported", "into": name(c.dest), "notes": "; ".join(c.notes)}
                for c in self.copied]
        rows += [{"file": name(p), "result": "already there", "into": name(p), "notes": ""} for p in self.kept]
        rows += [{"file": name(p), "result": "skipped", "into": "", "notes": why} for p, why in self.skipped]
        rows += [{"file": name(p), "result": "link skipped", "into": "", "notes": why} for p, why in self.links]
        rows += [{"file": name(p), "result": "conflict", "into": name(other),
                  "notes": f"{name(other)} is already in {printable(other.parent)}: nothing of "
                           f"{printable(p.stem)!r} copied; rename one of them, then import again"}
                 for p, other in self.conflicts]
        return rows

    def format_table(self) -> str:
        lines = [f"{r['file']:<32} {r['result']:<13} {r['into']:<24} {r['notes']}" for r in self.rows()]
        return "\n".join([*lines, self.summary()])


def kohya_folders(src: Path) -> list[tuple[Path, int, str]]:
    """``src``'s ``<repeats>_<token>`` subfolders that hold images, as (folder, repeats, token)."""
    out = []
    for d in sorted(p for p in src.iterdir() if p.is_dir() and not p.is_symlink()):
        parsed = parse_folder_name(d.name)
        if parsed and any(f.suffix.lower() in IMPORTABLE for f in d.iterdir()):
            out.append((d, *parsed))
    return out


def source_images(folder: Path, links: list[tuple[Path, str]] | None = None, follow_links: bool = False,
                  root: Path | None = None) -> list[Path]:
    """Importable regular files directly in ``folder`` (hidden files skipped).

    A link is added to ``links`` with the reason it is skipped; with ``follow_links`` one whose target is a
    file inside ``root`` (the source folder) is taken.
    """
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in IMPORTABLE or is_mask_file(p):
            continue  # a mask comes along with its image (import_one)
        if p.is_symlink():
            why = _link_refusal(p, root or folder, follow_links)
            if why:
                if links is not None:
                    links.append((p, why))
                continue
        if p.is_file():
            out.append(p)
    return out


def _link_refusal(p: Path, root: Path, follow_links: bool) -> str | None:
    """Why the link ``p`` is not followed (None: follow it)."""
    if not follow_links:
        return "a link: only regular files are copied (follow_links=True follows links inside the source folder)"
    return link_problem(p, root)


def find_clashes(files: list[Path]) -> list[str]:
    """'a.png and a.jpg' for every stem used twice (they would share a caption and a name in the project)."""
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem.lower(), []).append(f)
    return [" and ".join(str(f) for f in fs) for fs in by_stem.values() if len(fs) > 1]


def validate_name(token: str, repeats: int) -> str:
    """The folder name ``<repeats>_<token>``, or an error that says what to change."""
    if not 1 <= repeats <= MAX_REPEATS:
        raise DatasetError(f"repeats must be 1 to {MAX_REPEATS} (got {repeats}); 10-20 is usual for a character.")
    token = token.strip()
    if not token or any(c in token for c in "/\\:") or token in (".", ".."):
        raise DatasetError(f"token {token!r} cannot name a folder: use a word such as 'fr3dd!e' (no slashes).")
    return f"{repeats}_{token}"


def import_images(src: str | Path, project: Project, token: str | None = None, repeats: int | None = None,
                  reg: bool = False, caption_extension: str = ".txt", follow_links: bool = False) -> ImportReport:
    """Copy the images (and captions) of ``src`` into the project's dataset (or reg/) folder."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise FileNotFoundError(f"No folder at {src}: give the folder that holds your images.")
    if not caption_extension.startswith(".") or len(caption_extension) < 2:
        raise DatasetError(f"caption_extension {caption_extension!r} must start with '.', e.g. '.txt'.")
    base = project.reg_dir if reg else project.dataset_dir
    report = ImportReport()
    groups = kohya_folders(src)
    kohya = bool(groups) and not source_images(src)
    plan: list[tuple[list[Path], Path]] = []
    if kohya:
        for folder, r, t in groups:
            plan.append((source_images(folder, report.links, follow_links, src),
                         base / validate_name(token or t, repeats or r)))
        report.skipped += [(d, f"not imported: {folder_problem(d.name)}") for d in sorted(src.iterdir())
                           if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
                           and folder_problem(d.name)]
    else:
        if not token or not repeats:
            raise DatasetError(f"{src} is a plain folder: give token= (the trigger word) and repeats= for it.")
        plan.append((source_images(src, report.links, follow_links, src), base / validate_name(token, repeats)))
    report.links += [(d, "a linked folder: not imported") for d in sorted(src.iterdir())
                     if d.is_symlink() and d.is_dir()]
    clashes = [c for files, _ in plan for c in find_clashes(files)]
    if clashes:
        raise DatasetError("Same name, different files (they would share one caption): "
                           + "; ".join(clashes) + ". Rename one of each pair, then import again.")
    if not kohya:
        report.skipped += [(d, "a subfolder: not imported (import it on its own, or name it <repeats>_<token>)")
                           for d in sorted(src.iterdir())
                           if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
                           and d.name != MASK_DIR]
    for files, dest in plan:
        if os.path.lexists(dest) and (dest.is_symlink() or not dest.is_dir()):
            raise DatasetError(f"{dest} exists and is not a folder: move it aside, then import again.")
        dest.mkdir(parents=True, exist_ok=True)
        report.folders.append(dest)
        for f in files:
            import_one(f, dest, report, caption_extension, follow_links=follow_links, root=src)
    return report


def same_stem(dest_dir: Path, stem: str) -> list[Path]:
    """Everything in ``dest_dir`` that would share ``stem`` (any extension, a folder, a link, even a broken one)."""
    if not dest_dir.is_dir():
        return []
    low = stem.lower()
    return sorted(p for p in dest_dir.iterdir() if p.name.lower() == low or p.stem.lower() == low)


def import_one(src: Path, dest_dir: Path, report: ImportReport, caption_extension: str = ".txt",
               follow_links: bool = False, root: Path | None = None) -> None:
    """Copy one image (converted if it must be) and its caption; the outcome is added to ``report``."""
    info, rgb = inspect_image(src, draft=False)
    if info.problem:
        report.skipped.append((src, info.problem.message))
        return
    if info.frames > 1:
        report.skipped.append((src, f"animated ({info.frames} frames): save the frame you want as a PNG"))
        return
    alpha = info.alpha
    notes = conversion_notes(src, info.mode, info.orientation, alpha)
    if info.format in ("HEIF", "AVIF") and src.suffix.lower() not in PHONE_EXTENSIONS:  # training could not read it
        notes.append(f"{info.format} photo under a {src.suffix} name: rewritten")
    ext = src.suffix.lower() if not notes else (".jpg" if src.suffix.lower() in JPEG_KIN else ".png")
    dest = dest_dir / (src.stem + ext)
    caption_dest = dest_dir / (src.stem + caption_extension)
    there = same_stem(dest_dir, src.stem)
    # the same image imported before (and its caption) is fine; anything else of that stem is another file
    others = [p for p in there if not (p.name in (dest.name, caption_dest.name) and p.is_file() and not p.is_symlink())]
    if others or (there and not dest.is_file()):
        report.conflicts.append((src, (others or there)[0]))
        return
    if there:
        report.kept.append(dest)
    else:
        with atomic_path(dest) as tmp:
            if notes and alpha:  # the transparency is the loss mask: kept
                load_upright_rgba(src).save(tmp, format="PNG")
            elif notes:
                assert rgb is not None
                rgb.save(tmp, format="JPEG" if ext == ".jpg" else "PNG", **({"quality": 95} if ext == ".jpg" else {}))
            else:
                shutil.copyfile(src, tmp)
        report.copied.append(Imported(src, dest, notes))
    copy_mask(src, dest, report)
    copy_caption(src, dest_dir, report, caption_extension, follow_links=follow_links, root=root)


def conversion_notes(src: Path, mode: str, orientation: int, alpha: bool = False) -> list[str]:
    """Why ``src`` cannot be copied as it is (empty: a byte-for-byte copy is fine)."""
    notes = []
    if orientation not in (0, 1):
        notes.append(f"rotated upright (EXIF orientation {orientation})")
    if alpha and not (mode == "RGBA" and src.suffix.lower() in (".png", ".webp")):
        notes.append(MODE_NOTES[mode] if mode in ("RGBA", "LA", "PA") else
                     f"{mode} with transparency → RGBA PNG, transparency kept (the loss mask with data.masked_loss)")
    elif mode not in ("RGB", "RGBA"):
        notes.append(MODE_NOTES.get(mode, f"{mode} → RGB"))
    if src.suffix.lower() in CONVERTIBLE_EXTENSIONS:
        to = ".jpg" if src.suffix.lower() in JPEG_KIN else ".png"
        notes.append(f"{src.suffix.lower()} → {to} (training reads png/jpg/webp/bmp)")
    return notes


def copy_mask(src: Path, dest: Path, report: ImportReport) -> None:
    """Copy ``src``'s mask file (``a_mask.png`` or ``masks/a.png``) as ``<dest stem>_mask.png``, unless one is there."""
    mask = mask_file(src)
    target = dest.with_name(dest.stem + MASK_SUFFIX + ".png")
    if mask is None or os.path.lexists(target) or mask.is_symlink():
        return
    try:
        with atomic_path(target) as tmp:
            if mask.suffix.lower() == ".png":
                shutil.copyfile(mask, tmp)
            else:
                load_upright_rgba(mask).convert("L").save(tmp, format="PNG")
    except Exception as e:  # the image is imported; its mask is reported
        report.skipped.append((mask, f"mask not copied ({type(e).__name__}: {e})"))


def copy_caption(src: Path, dest_dir: Path, report: ImportReport, caption_extension: str = ".txt",
                 follow_links: bool = False, root: Path | None = None) -> None:
    """Copy ``src``'s caption as clean UTF-8 unless the project already has one; a bad caption is reported.

    A caption that is a link is read only with ``follow_links`` and when it stays inside ``root``: its text
    ends up in the LoRA's published metadata.
    """
    cap = src.with_suffix(caption_extension)
    dest = dest_dir / (src.stem + caption_extension)
    if cap.is_symlink():
        why = _link_refusal(cap, root or src.parent, follow_links)
        if why:
            report.links.append((cap, f"caption not read: {why}"))
            return
    if not cap.is_file() or os.path.lexists(dest):
        return
    try:
        atomic_write_text(dest, read_caption(cap) + "\n")
    except DatasetError as e:
        report.skipped.append((cap, f"caption not copied: {e}"))
