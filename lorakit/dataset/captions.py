"""Caption files and tag operations: preview every change, write only when asked, back up what is replaced.

    from lorakit.dataset.captions import TagEdit, plan_edit, apply_changes, tag_frequency
    edit = TagEdit(prefix="photo of fr3dd!e", remove=["watermark"], replace={"1girl": "woman"}, dedupe=True)
    changes = plan_edit("my-project/dataset", edit)      # nothing written yet: look at before/after
    apply_changes(changes)                               # writes; the old captions go to captions-backup/<stamp>/

Captions are comma-separated tags (``photo of fr3dd!e, red hair, smiling``) or a sentence (one tag). Files are
read as UTF-8 (a BOM is tolerated); one that is not UTF-8 is reported with its problem, never guessed at.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.dataset.masks import is_mask_file
from lorakit.dataset.scan import IMAGE_EXTENSIONS, read_caption
from lorakit.errors import DatasetError
from lorakit.files import atomic_write_text

BACKUP_DIR = "captions-backup"
CLIP_TOKENS = 75  # what a CLIP text encoder reads of a caption: 77 positions less the start and end tokens
STOPWORDS = frozenset(["a", "an", "the", "of", "on", "in", "at", "with", "and", "or", "to", "is", "are", "by", "for", "from"])


@dataclass
class Caption:
    """One image's caption file: its text, or the problem that kept it from being read."""

    image: Path
    path: Path
    text: str = ""
    exists: bool = False
    problem: str = ""


def caption_path(image: Path, extension: str = ".txt") -> Path:
    return image.with_suffix(extension)


def read_one(image: Path, extension: str = ".txt") -> Caption:
    """The caption of ``image``; a missing file is empty, an undecodable one has ``problem`` set."""
    cap = Caption(image, caption_path(image, extension))
    if not cap.path.is_file():
        return cap
    cap.exists = True
    try:
        cap.text = read_caption(cap.path)
    except DatasetError as e:
        cap.problem = str(e)
    return cap


def image_files(folder: str | Path) -> list[Path]:
    """Training images under ``folder`` (recursively; hidden files and backups skipped)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not is_mask_file(p) and not any(part.startswith(".") or part in (BACKUP_DIR, "uncropped")
                              for part in p.relative_to(folder).parts))


def read_captions(folder: str | Path, extension: str = ".txt", reg: bool = True) -> list[Caption]:
    """Every image's caption under ``folder`` (without dataset/reg/ when ``reg`` is False)."""
    images = image_files(folder)
    if not reg:
        images = [p for p in images if Path(folder) / "reg" not in p.parents]
    return [read_one(p, extension) for p in images]


# ---- tags --------------------------------------------------------------------------------------------
def split_tags(caption: str) -> list[str]:
    """'a, b ,, c' -> ['a', 'b', 'c']."""
    return [t.strip() for t in caption.replace("\n", ",").split(",") if t.strip()]


def join_tags(tags: Iterable[str]) -> str:
    return ", ".join(tags)


def parse_tag_list(text: str) -> list[str]:
    """A form's 'a, b, c' -> ['a', 'b', 'c']."""
    return split_tags(text)


def parse_replacements(text: str) -> dict[str, str]:
    """A form's 'old=new, 1girl=woman' -> {'old': 'new', '1girl': 'woman'} (an empty new removes the tag)."""
    out = {}
    for part in split_tags(text):
        old, sep, new = part.partition("=")
        if not sep:
            raise ValueError(f"replacement {part!r} needs the form old=new")
        out[old.strip()] = new.strip()
    return out


@dataclass
class TagEdit:
    """What to do to every caption, in this order: replace, remove, add, dedupe, move to front, prefix."""

    prefix: str = ""  # e.g. "photo of fr3dd!e": put first (once), the trigger the LoRA learns
    add: list[str] = field(default_factory=list)  # appended when missing
    remove: list[str] = field(default_factory=list)
    replace: dict[str, str] = field(default_factory=dict)  # old -> new (new "" removes)
    dedupe: bool = True
    front: list[str] = field(default_factory=list)  # moved to the front (after the prefix), in this order
    keep_tokens: int = 0  # the caption's first N tags (before the prefix is added) are never removed, replaced or moved
    underscores_to_spaces: bool = False  # booru tags: "red_hair" -> "red hair"

    def is_noop(self) -> bool:
        return not (self.prefix or self.add or self.remove or self.replace or self.dedupe or self.front
                    or self.underscores_to_spaces)


def apply_edit(caption: str, edit: TagEdit) -> str:
    """``caption`` after ``edit``; tags compare case-insensitively, keep their spelling."""
    tags = split_tags(caption)
    fixed, tags = tags[: edit.keep_tokens], tags[edit.keep_tokens:]
    if edit.underscores_to_spaces:
        tags = [t.replace("_", " ") for t in tags]
    replace = {k.lower(): v for k, v in edit.replace.items()}
    tags = [replace.get(t.lower(), t) for t in tags]
    drop = {t.lower() for t in edit.remove}
    tags = [t for t in tags if t and t.lower() not in drop]
    present = {t.lower() for t in fixed + tags}
    tags += [t for t in edit.add if t.lower() not in present]
    if edit.dedupe:
        tags = dedupe(tags, seen=fixed)
    if edit.front:
        order = [f.lower() for f in edit.front]
        first = sorted((t for t in tags if t.lower() in order), key=lambda t: order.index(t.lower()))
        tags = first + [t for t in tags if t.lower() not in order]
    result = fixed + tags
    if edit.prefix:
        result = with_prefix(result, edit.prefix)
    return join_tags(result)


def dedupe(tags: list[str], seen: Iterable[str] = ()) -> list[str]:
    """First occurrence of each tag (case-insensitive), skipping those already in ``seen``."""
    known = {t.lower() for t in seen}
    out = []
    for t in tags:
        if t.lower() not in known:
            known.add(t.lower())
            out.append(t)
    return out


def with_prefix(tags: list[str], prefix: str) -> list[str]:
    """The prefix's tags first, exactly once: adding 'photo of fr3dd!e' twice changes nothing."""
    head = split_tags(prefix)
    lowered = {h.lower() for h in head}
    return head + [t for t in tags if t.lower() not in lowered]


def keep_tokens_for(prefix: str) -> int:
    """The ``keep_tokens`` training setting that keeps ``prefix`` first when tags are shuffled."""
    return len(split_tags(prefix))


def tag_frequency(captions: Iterable[str], words: bool | None = None) -> Counter:
    """How many captions hold each tag; each word instead if ``words`` (None: when most captions are sentences)."""
    captions = list(captions)
    if words is None:
        words = sum("," not in c for c in captions) > len(captions) / 2
    counts: Counter = Counter()
    for c in captions:
        units = ([w for w in c.lower().replace(",", " ").split() if w not in STOPWORDS] if words
                 else [t.lower() for t in split_tags(c)])
        counts.update(set(units))
    return counts


# ---- planned changes, then writes --------------------------------------------------------------------
@dataclass
class CaptionChange:
    """A proposed caption: nothing is written until ``apply_changes``."""

    image: Path
    path: Path
    before: str
    after: str
    existed: bool

    @property
    def changed(self) -> bool:
        return self.before != self.after or not self.existed


def plan_edit(folder: str | Path, edit: TagEdit, extension: str = ".txt", reg: bool = False) -> list[CaptionChange]:
    """The captions under ``folder`` after ``edit`` (only those that change; unreadable ones are left out).

    Regularization captions (dataset/reg/) are left alone unless ``reg``: they must not get the trigger.
    """
    changes = []
    for cap in read_captions(folder, extension, reg=reg):
        if cap.problem:
            continue
        after = apply_edit(cap.text, edit)
        if after != cap.text:
            changes.append(CaptionChange(cap.image, cap.path, cap.text, after, cap.exists))
    return changes


def propose(images: Iterable[Path], texts: Iterable[str], extension: str = ".txt") -> list[CaptionChange]:
    """Changes that would set each image's caption to the given text (e.g. from a captioner)."""
    out = []
    for image, text in zip(images, texts, strict=True):
        cap = read_one(image, extension)
        out.append(CaptionChange(image, cap.path, cap.text, text.strip(), cap.exists))
    return out


def backup_root(folder: Path) -> Path:
    """Where backups of ``folder``'s captions go: beside the project's dataset/, else inside ``folder``."""
    folder = folder.resolve()
    for parent in (folder, *folder.parents):
        if parent.name == "dataset":
            return parent.parent / BACKUP_DIR
    return folder / BACKUP_DIR


@dataclass
class WriteResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    backup: Path | None = None

    def summary(self) -> str:
        where = f"; previous captions backed up in {self.backup}" if self.backup else ""
        return f"{len(self.written)} captions written, {len(self.skipped)} left as they were{where}"


def apply_changes(changes: list[CaptionChange], overwrite: bool = True, backup: Path | None = None) -> WriteResult:
    """Write the changes; existing captions are replaced only if ``overwrite``, after a copy to ``backup``.

    ``backup`` defaults to ``captions-backup/<stamp>/`` beside the dataset, mirroring the folder layout.
    """
    result = WriteResult()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for ch in changes:
        if not ch.changed:
            continue
        if ch.path.exists() and not overwrite:
            result.skipped.append((ch.path, "has a caption (choose overwrite to replace it)"))
            continue
        if ch.path.exists():
            root = backup or backup_root(ch.path.parent) / stamp
            result.backup = root
            target = root / _backup_name(ch.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ch.path, target)
        atomic_write_text(ch.path, ch.after + "\n")
        result.written.append(ch.path)
    return result


def _backup_name(path: Path) -> Path:
    """``<folder>/<name>``: enough to put a backed-up caption back where it came from."""
    return Path(path.parent.name) / path.name


def write_caption(image: Path, text: str, overwrite: bool = False, extension: str = ".txt") -> WriteResult:
    """Set one image's caption (the editor's save): refuses to replace one unless ``overwrite``."""
    return apply_changes(propose([image], [text], extension), overwrite=overwrite)


def caption_tokens(text: str, tokenizer=None) -> int:
    """How many tokens ``text`` is to a CLIP text encoder (start and end tokens not counted); ``tokenizer`` is the
    base model's, else the CLIP BPE lorakit ships (the same for SD 1.x, 2.x and SDXL)."""
    tok = tokenizer or _shipped_clip_tokenizer()
    return len(tok(text, add_special_tokens=False, truncation=False, verbose=False).input_ids)


@functools.lru_cache(maxsize=1)
def _shipped_clip_tokenizer():
    from lorakit.models.tokenizers import clip_tokenizer

    return clip_tokenizer("clip-l")


def long_caption_note(captions: dict[str, str], tokenizer=None, limit: int = CLIP_TOKENS) -> str | None:
    """One sentence naming the captions that are cut at ``limit`` tokens, or None when all fit."""
    long = {name: n for name, text in captions.items() if (n := caption_tokens(text, tokenizer)) > limit}
    if not long:
        return None
    named = ", ".join(f"{name} ({n} tokens)" for name, n in sorted(long.items())[:5])
    more = f" and {len(long) - 5} more" if len(long) > 5 else ""
    wider = (f"; or set data.max_token_length = {150 if limit < 150 else 225} (kohya's windows of 75)"
             if limit < 225 else "")
    return (f"{len(long)} caption{'s are' if len(long) != 1 else ' is'} longer than the text encoder's {limit} "
            f"tokens and cut there: {named}{more}; shorten them or put what matters first{wider}")
