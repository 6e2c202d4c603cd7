"""The notebooks command of the CLI (registered by lorakit.cli):

    lorakit notebooks DIR     copy the five notebooks into DIR (never over one you changed), then: jupyter lab DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_notebooks(args) -> int:
    from lorakit.shipped import copy_notebooks

    print(copy_notebooks(args.dir).summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notebooks", help="copy the five notebooks into a folder (never over one you changed)")
    p.add_argument("dir", type=Path, help="the folder for the notebooks (created if missing)")
    p.set_defaults(func=_cmd_notebooks)
