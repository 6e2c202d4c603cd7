"""kohya's sample prompt lines: the prompt, then options --n negative, --w/--h size, --s steps, --l CFG, --d seed.

    parse_sample_prompt("a fr3dd!e cat --n blurry --w 512 --h 768 --s 28 --l 6.5 --d 42").prompt  # 'a fr3dd!e cat'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPTION = re.compile(r"\s--([a-z])\s+")


@dataclass
class SamplePrompt:
    prompt: str
    negative: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None


def parse_sample_prompt(line: str) -> SamplePrompt:
    """kohya's sample prompt line: the prompt, then options --n negative, --w/--h size, --s steps, --l CFG, --d seed."""
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
        except ValueError as e:
            raise ValueError(f"sample prompt {line!r}: --{flag} {value!r} is not a number") from e
    return sp

