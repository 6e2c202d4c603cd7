"""Model families (SD1, SD2-ε/v, SDXL), one file each, and their registry; imports torch and lorakit.errors only.

    from lorakit.models import families
    families.get("sdxl").te_prefixes()              # ['lora_te1', 'lora_te2']
    families.detect_from_pipeline(pipe).name        # 'sd1' | 'sd2' | 'sd2-v' | 'sdxl' | a family registered later
    families.register(MY_FAMILY)                    # a new family: its own file, plus this one line

Families are asked newest registration first, so a new family can claim pipelines a built-in one also accepts.
"""

from __future__ import annotations

from lorakit.errors import ModelError
from lorakit.models.families import sd1, sd2, sdxl
from lorakit.models.families.base import Family

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family under its name; returns it."""
    FAMILIES[family.name] = family
    return family


def unregister(name: str) -> Family:
    return FAMILIES.pop(name)


def get(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ModelError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def _newest_first() -> list[Family]:
    return list(reversed(FAMILIES.values()))


def detect_from_pipeline(pipe) -> Family:
    """The family of a loaded diffusers pipeline."""
    for fam in _newest_first():
        if fam.matches_pipeline(pipe):
            return fam
    raise ModelError(f"{type(pipe).__name__} is not a model family lorakit knows ({', '.join(FAMILIES)}).")


def detect_from_keys(keys: set[str]) -> list[Family]:
    """Every family whose single-file weights have these tensor names (sd2 and sd2-v share theirs), newest first."""
    return [fam for fam in _newest_first() if fam.matches_keys(keys)]


def with_prediction(family: Family, prediction_type: str) -> Family:
    """The family of the same weights that predicts ``prediction_type`` (sd2-v trained as epsilon is sd2)."""
    if family.prediction_type in (None, prediction_type):
        return family
    for fam in _newest_first():
        if fam.layout == family.layout and fam.prediction_type in (None, prediction_type):
            return fam
    return family


for _fam in (sd1.FAMILY, sd2.FAMILY, sd2.FAMILY_V, sdxl.FAMILY):
    register(_fam)

__all__ = ["FAMILIES", "Family", "detect_from_keys", "detect_from_pipeline", "get", "register", "unregister",
           "with_prediction"]
