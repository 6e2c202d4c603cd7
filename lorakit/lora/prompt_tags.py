"""AUTOMATIC1111's <lora:name:weight> prompt tags: parse them out of a prompt, find their files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import GenerateError

LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-+]?[0-9]*\.?[0-9]+))?>")


@dataclass(frozen=True)
class LoraRef:
    name: str
    weight: float


def parse_prompt(prompt: str) -> tuple[str, list[LoraRef]]:
    """'a <lora:x:0.8> cat' -> ('a cat', [LoraRef('x', 0.8)]); a tag without weight means 1.0."""
    refs = [LoraRef(m[1].strip(), float(m[2]) if m[2] else 1.0) for m in LORA_TAG.finditer(prompt)]
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
