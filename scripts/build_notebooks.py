"""Build notebooks/NN_name.ipynb from the percent-format sources in notebooks/src/ (no outputs).

    python scripts/build_notebooks.py          # write the .ipynb files
    python scripts/build_notebooks.py --check  # exit 1 if a notebook is out of date

Sources are plain Python: `# %%` starts a code cell, `# %% [markdown]` a markdown cell (its lines start with
`# `), and `# %% tags=["parameters"]` the parameters cell. Reviewing a .py diff beats reviewing notebook JSON.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC, OUT = ROOT / "notebooks" / "src", ROOT / "notebooks"
HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def parse(text: str) -> list[dict]:
    """Cells of a percent-format source."""
    cells: list[dict] = []
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            cells.append({"type": "markdown" if m["md"] else "code", "tags": json.loads(m["tags"] or "[]"), "lines": []})
        elif cells:
            cells[-1]["lines"].append(line)
    out = []
    for c in cells:
        lines = c["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if c["type"] == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        source = [ln + "\n" for ln in lines]
        if source:
            source[-1] = source[-1].rstrip("\n")
        cell = {"cell_type": c["type"], "metadata": {"tags": c["tags"]} if c["tags"] else {}, "source": source}
        if c["type"] == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return out


def notebook(cells: list[dict]) -> dict:
    return {
        "cells": [{"id": f"cell-{i:02d}", **c} for i, c in enumerate(cells)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def render(src: Path) -> str:
    return json.dumps(notebook(parse(src.read_text(encoding="utf-8"))), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        target = OUT / (src.stem + ".ipynb")
        text = render(src)
        if "--check" in argv:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print("out of date (run python scripts/build_notebooks.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
