"""pyproject.toml and environment.yml name the same packages at the same floors; the package imports without
ipywidgets, and a training run without what only other steps use."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages(extras: set[str] | None = None) -> set[str]:
    """The names pyproject.toml requires, with ``extras`` (None: every extra); lorakit's own [dev] -> [test,...] left out."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for name, extra in data["project"]["optional-dependencies"].items():
        if extras is None or name in extras:
            reqs += extra
    return {_name(r) for r in reqs} - {"lorakit"}


def environment_extras() -> set[str]:
    """The extras of the ``-e ".[a,b]"`` line of environment.yml."""
    m = re.search(r'- -e "\.\[([a-z,]+)\]"', (REPO / "environment.yml").read_text())
    assert m, 'environment.yml installs lorakit with a line - -e ".[test,...]"'
    return set(m[1].split(","))


def environment_packages() -> set[str]:
    names = set()
    in_pip = False
    for line in (REPO / "environment.yml").read_text().splitlines():
        if re.match(r"\s*- pip:\s*$", line):
            in_pip = True
            continue
        m = re.match(r"\s+- (.+)$", line)
        if in_pip and m and not m[1].startswith("-e"):
            names.add(_name(m[1].strip("'\"")))
    return names


def test_environment_yml_matches_pyproject():
    """The same packages and floors: pyproject's dependencies, then lorakit itself with the extras it names."""
    text = (REPO / "environment.yml").read_text()
    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert environment_packages() == pyproject_packages(set()) == {_name(r) for r in core}
    for requirement in core:  # word for word, floors included
        assert f"- {requirement}\n" in text or f"- \"{requirement}\"\n" in text, requirement
    assert re.search(r"^\s+- python=3\.\d+$", text, re.M), "environment.yml pins a Python (python=3.x)"


def test_environment_yml_installs_the_package_with_extras():
    extras = environment_extras()
    assert "test" in extras and extras <= set(tomllib.loads((REPO / "pyproject.toml").read_text())
                                               ["project"]["optional-dependencies"])


def test_doctor_checks_the_floors_pyproject_declares():
    from lorakit.doctor import REQUIRED

    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {_name(r): r.split(">=")[1].split(";")[0].strip() for r in core if ">=" in r}

    def norm(v: str) -> tuple[int, ...]:  # '8' and '8.0' are one floor
        parts = [int(x) for x in v.split(".")]
        return tuple(parts + [0] * (3 - len(parts)))

    assert {n: norm(floors[n]) for n in REQUIRED} == {n: norm(v) for n, v in REQUIRED.items()}
    pinned = dict(line.split("==") for line in (REPO / "constraints" / "floors.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    for name, version in pinned.items():  # the tested pins are the floors, not something above them
        assert norm(floors[name]) == norm(version), (name, version, floors[name])


def test_every_imported_third_party_package_is_declared():
    """Each top-level import in lorakit/ is in the standard library, lorakit, or pyproject's dependencies."""
    import_names = {"PIL": "pillow", "yaml": "pyyaml", "IPython": "ipython", "imagehash": "imagehash",
                    "tomli_w": "tomli-w", "ipywidgets": "ipywidgets"}
    optional = {"bitsandbytes", "prodigyopt", "dadaptation", "tensorboard", "scipy", "torchvision", "torchsde",
                "tomli"}
    declared = pyproject_packages() | {"ipython"}  # ipython comes with ipykernel/jupyterlab
    seen = set()
    for path in (REPO / "lorakit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                seen |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                seen.add(node.module.split(".")[0])
    third = {n for n in seen if n not in sys.stdlib_module_names and n not in ("lorakit", "__future__")}
    missing = {import_names.get(n, n.replace("_", "-")).lower() for n in third} - declared - optional
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


LATER = ["matplotlib", "ipywidgets", "IPython", "onnxruntime", "tensorboard", "wandb",
         "lorakit.dataset.captioners", "lorakit.dataset.wd14", "lorakit.evaluate.scoring", "lorakit.ui"]
IMPORTS = f"""
import json, sys
import lorakit.train.loop, lorakit.demo.recipe
training = [m for m in {LATER!r} if m in sys.modules]
import lorakit.evaluate.grid, lorakit.evaluate.generate, lorakit.cli.main
print(json.dumps({{"training": training, "library_ipywidgets": "ipywidgets" in sys.modules}}))
"""


@pytest.fixture(scope="module")
def imported() -> dict:
    """What a fresh process holds after importing the training loop, then the rest of the library (one process)."""
    out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_library_does_not_import_ipywidgets(imported):
    """Arrows go one way: lorakit.ui -> library; the library never needs ipywidgets."""
    for path in (REPO / "lorakit").rglob("*.py"):
        if "ui" in path.relative_to(REPO / "lorakit").parts:
            continue
        assert not re.search(r"^\s*(from|import) ipywidgets", path.read_text(), re.M), f"{path} imports ipywidgets"
    assert imported["library_ipywidgets"] is False


def test_a_training_run_imports_only_what_a_step_needs(imported):
    """The first step waits on every import on its path: captioners, taggers, scorers, plotting, widgets and
    trackers are imported when used, never by the training loop (bench/first_step.py times the rest)."""
    assert imported["training"] == [], f"the training loop imports {imported['training']}"
