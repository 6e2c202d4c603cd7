"""Write the embedded demo dataset (deterministic): data/demo/dataset/<r>_blicket/ and data/demo/reg/<r>_shape/.

    python scripts/make_demo_data.py            # rewrites data/demo/dataset and data/demo/reg
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lorakit.demo.toyworld import DemoSpec, write_demo  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "demo")
    args = parser.parse_args(argv)
    for sub in ("dataset", "reg"):  # only the generated folders: README.md stays
        shutil.rmtree(args.out / sub, ignore_errors=True)
    concept, reg = write_demo(args.out, DemoSpec())
    for folder in (concept, reg):
        print(f"{folder}: {len(list(folder.glob('*.png')))} images")


if __name__ == "__main__":
    main()
