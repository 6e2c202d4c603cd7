"""AUTOMATIC1111's LoRA prompt tags: parse them out of a prompt, find their files.

    <lora:name>                  text encoder and UNet at 1
    <lora:name:0.8>              both at 0.8
    <lora:name:0.5:0.8>          text encoder 0.5, UNet 0.8 (A1111's order: te, unet, dyn)
    <lora:name:0.5:0.8:8>        … and only the first 8 ranks of each layer (a DyLoRA file's "dyn")
    <lora:name:unet=0.8:te=0>    the same by name, in any order; ``<lyco:…>`` is read the same way

A second number missing means the UNet takes the first one; ``dyn=0`` (or a dyn as large as the file's rank)
uses every rank.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import GenerateError

LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]*)((?::[^:>]*)*)>")
TAG_NAMES = ("te", "unet", "dyn")


@dataclass(frozen=True)
class LoraRef:
    """One tag: the file's name and A1111's three settings."""

    name: str
    te: float = 1.0
    unet: float = 1.0
    dyn: int | None = None

    @property
    def weight(self) -> float:
        """The UNet's strength, the one a single-number tag sets (kept for callers that use one strength)."""
        return self.unet

    @property
    def strength(self) -> float | LoraStrength:
        """What Generator.apply takes: a float when text encoder and UNet agree and no dyn is asked."""
        return self.unet if self.te == self.unet and not self.dyn else LoraStrength(self.unet, self.te, self.dyn)

    def tag(self) -> str:
        """The tag as A1111 writes it back (the shortest form that says the same)."""
        parts = [self.name, f"{self.te:g}"]
        if self.unet != self.te or self.dyn:
            parts.append(f"{self.unet:g}")
        if self.dyn:
            parts.append(str(self.dyn))
        return f"<lora:{':'.join(parts)}>"


@dataclass(frozen=True)
class LoraStrength:
    """A LoRA applied with the UNet and the text encoder(s) at their own strengths, optionally rank-limited."""

    unet: float
    te: float
    dyn: int | None = None

    def __bool__(self) -> bool:  # an all-zero strength is "off", as 0.0 is
        return bool(self.unet or self.te)


def _number(tag: str, key: str, value: str, kind=float):
    try:
        return kind(value.strip())
    except ValueError:
        want = "a whole number of ranks, e.g. dyn=8" if kind is int else "a number, e.g. 0.8"
        raise GenerateError(f"{tag}: {key} {value.strip()!r} is not {want}.") from None


def parse_tag(match: re.Match) -> LoraRef:
    """One ``<lora:…>`` match -> LoraRef, A1111's rules: positional te, unet, dyn, then named ones override."""
    tag, name = match[0], match[1].strip()
    if not name:
        raise GenerateError(f"{tag} names no LoRA file: write <lora:FILE_NAME:0.8>.")
    positional: list[str] = []
    named: dict[str, str] = {}
    for part in match[2].split(":")[1:]:
        key, eq, value = part.partition("=")
        if eq:
            key = key.strip().lower()
            if key not in TAG_NAMES:
                raise GenerateError(f"{tag}: {key!r} is not a LoRA tag setting; use te=, unet= or dyn=.")
            named[key] = value
        elif part.strip():
            positional.append(part)
    if len(positional) > len(TAG_NAMES):
        raise GenerateError(f"{tag} has {len(positional)} numbers; A1111 reads at most three: te, unet, dyn.")
    given = dict(zip(TAG_NAMES, positional, strict=False))  # fewer numbers than names is usual
    te = _number(tag, "te", named.get("te", given.get("te", "1")))
    unet = _number(tag, "unet", named["unet"]) if "unet" in named else (
        _number(tag, "unet", given["unet"]) if "unet" in given else te)
    raw_dyn = named.get("dyn", given.get("dyn"))
    dyn = None if raw_dyn is None else _number(tag, "dyn", raw_dyn, int)
    if dyn is not None and dyn < 0:
        raise GenerateError(f"{tag}: dyn={dyn} is below 0; give the number of ranks to keep (0 keeps them all).")
    return LoraRef(name, te, unet, dyn or None)


def parse_prompt(prompt: str) -> tuple[str, list[LoraRef]]:
    """'a <lora:x:0.8> cat' -> ('a cat', [LoraRef('x', 0.8, 0.8)]); a tag without numbers means 1.0."""
    refs = [parse_tag(m) for m in LORA_TAG.finditer(prompt)]
    text = re.sub(r"\s{2,}", " ", LORA_TAG.sub("", prompt)).strip().strip(",").strip()
    text = re.sub(r"\s+,", ",", text)
    return text, refs


def find_lora(name: str, dirs: Sequence[str | Path]) -> Path:
    """The file for a ``<lora:name>`` tag, looked up in ``dirs`` as A1111 looks in models/Lora.

    A name only ever resolves inside one of ``dirs``: ``<lora:../../secret>``, an absolute path, or a link
    out of the folder is refused with a sentence.
    """
    if not name or "\x00" in name or Path(name).is_absolute() or ".." in Path(name.replace("\\", "/")).parts:
        raise GenerateError(f"<lora:{name}> names a path outside the LoRA folders: give the file's name alone, "
                            f"as it is in {', '.join(map(str, dirs))}.")
    for d in dirs:
        root = Path(d).resolve()
        for cand in (Path(d) / f"{name}.safetensors", Path(d) / name):
            if cand.is_file():
                if not cand.resolve().is_relative_to(root):
                    raise GenerateError(f"<lora:{name}> is a link to {cand.resolve()}, outside {d}: copy the file "
                                        "into the folder instead.")
                return cand
    known = sorted({p.stem for d in dirs for p in Path(d).glob("*.safetensors")})
    raise GenerateError(f"<lora:{name}> not found in {', '.join(map(str, dirs))}; available: {', '.join(known) or 'none'}")
