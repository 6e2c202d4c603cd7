"""The repository itself: lint-clean, notebooks built from their sources and committed without outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["00_setup_check", "01_dataset_and_captions", "02_hyperparameters", "03_train", "04_evaluate_xy_grid"]


def test_ruff_clean():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_five_notebooks_exist_and_are_built_from_their_sources():
    for name in NOTEBOOKS:
        assert (REPO / "notebooks" / f"{name}.ipynb").is_file(), name
        assert (REPO / "notebooks" / "src" / f"{name}.py").is_file(), name
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "build_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_notebooks_follow_the_contract():
    for name in NOTEBOOKS:
        nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{name} has outputs"
        assert "parameters" in code[0]["metadata"].get("tags", []), f"{name}: first code cell must be parameters"
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        assert "assert" in "".join(code[-1]["source"]), f"{name}: the last cell must check what the step produced"
        assert not any("".join(c["source"]).lstrip().startswith("def ") for c in code), f"{name} defines functions"
        assert any("widget" in "".join(c["source"]).lower() or "form" in "".join(c["source"]).lower()
                   for c in code), f"{name} shows no form"


def test_layout():
    for path in ["lorakit", "notebooks", "tests", "data", "bench", "environment.yml", "README.md", "pyproject.toml",
                 ".ci/run"]:
        assert (REPO / path).exists(), path
