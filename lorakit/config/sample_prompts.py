"""kohya's sample prompt lines: the prompt, then options --n negative, --w/--h size, --s steps, --l CFG, --d seed,
--ss sampler; a line starting with ``#`` is a comment.

    parse_sample_prompt("a fr3dd!e cat --n blurry --w 512 --h 768 --s 28 --l 6.5 --d 42").prompt  # 'a fr3dd!e cat'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPTION = re.compile(r"\s--([a-z]+)\s+")


@dataclass
class SamplePrompt:
    prompt: str
    negative: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None
    sampler: str | None = None  # --ss, as written (kohya or A1111 name); lorakit.models.samplers normalises it


def is_comment(line: str) -> bool:
    """A blank line or one starting with ``#``: kohya's prompt files skip both."""
    s = line.strip()
    return not s or s.startswith("#")


def prompt_lines(lines: list[str]) -> list[str]:
    """The sample prompts of a kohya prompt file's lines: blank and ``#`` comment lines dropped."""
    return [line.strip() for line in lines if not is_comment(line)]


def parse_sample_prompt(line: str) -> SamplePrompt:
    """kohya's sample prompt line: the prompt, then options --n negative, --w/--h size, --s steps, --l CFG, --d seed,
    --ss sampler (other options are ignored, as kohya does)."""
    parts = OPTION.split(" " + line.strip())
    sp = SamplePrompt(parts[0].strip())
    for flag, value in zip(parts[1::2], parts[2::2], strict=False):
        value = value.strip()
        try:
            if flag == "n":
                sp.negative = value
            elif flag == "w":
                sp.width = int(value)
            elif flag == "h":
                sp.height = int(value)
            elif flag == "s":
                sp.steps = int(value)
            elif flag == "l":
                sp.cfg = float(value)
            elif flag == "d":
                sp.seed = int(value)
            elif flag == "ss":
                sp.sampler = value
        except ValueError as e:
            raise ValueError(f"sample prompt {line!r}: --{flag} {value!r} is not a number") from e
    return sp
