"""The wheel has everything: built (offline, from its own sdist) it carries the toy base model, the demo data and the
five notebooks inside the package, and the installed package finds them there; `lorakit notebooks DIR` copies the
notebooks without overwriting one the user changed; --version, __version__ and the LICENSE agree with pyproject."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import tomllib

from lorakit.cli.main import main
from lorakit.shipped import MANIFEST, copy_notebooks, shipped_dir
from tests.offline import BLOCK_SOCKETS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["00_setup_check", "01_dataset_and_captions", "02_hyperparameters", "03_train", "04_evaluate_xy_grid"]
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".ruff_cache",
                                     ".pytest_cache", ".ipynb_checkpoints", "demo-project", "runs")


def _pep517(hook: str, source: Path, out: Path) -> Path:
    """Run setuptools' build hook (what `python -m build --no-isolation` calls) in ``source``; the built file."""
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", BLOCK_SOCKETS + code], cwd=source, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """sdist from a copy of the checkout, then the wheel from that sdist (as `python -m build` does)."""
    tmp = tmp_path_factory.mktemp("build")
    shutil.copytree(REPO, tmp / "checkout", ignore=NOT_SOURCES)
    sdist = _pep517("build_sdist", tmp / "checkout", tmp / "dist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    # what the README links travels with it (the captioning guide, the notebooks' pictures)
    assert {"docs/captioning.md", "docs/images/04_grid.png"} <= in_sdist, "the sdist lacks docs/"
    (unpacked,) = (tmp / "unpacked").iterdir()
    return _pep517("build_wheel", unpacked, tmp / "dist")


def test_the_wheel_carries_the_demo_model_data_and_notebooks(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for model_file in ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "unet/config.json",
                       "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                       "tokenizer/tokenizer.json", "scheduler/scheduler_config.json"]:
        assert f"lorakit/data/toy-base/{model_file}" in names, model_file
    for kind in ("dataset", "reg"):
        shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "data" / "demo" / kind).rglob("*") if p.is_file()}
        assert shipped and {f"lorakit/{p}" for p in shipped} <= names, f"demo {kind} files missing from the wheel"
    assert {f"lorakit/notebooks/{n}.ipynb" for n in NOTEBOOKS} <= names
    assert "lorakit/models/data/clip_bpe_merges.txt.gz" in names  # the CLIP vocabulary of lone checkpoints
    assert not [n for n in names if n.startswith("lorakit/data/toy-base-2/")], "the second world is for bench/ only"
    assert not [n for n in names if n.startswith(("lorakit/notebooks/src", "tests/", "data/", "notebooks/"))]
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert f"{dist_info}/licenses/LICENSE" in names
    assert "lorakit = lorakit.cli.main:main" in zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()


def test_the_installed_package_finds_its_own_data_and_notebooks(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip puts in site-packages
    code = BLOCK_SOCKETS + f'''
import json, sys
sys.path.insert(0, {str(site)!r})
from lorakit.models.loading import DEMO_MODEL_DIR, resolve_source
from lorakit.demo.recipe import DEMO_DATA
from lorakit.shipped import copy_notebooks, shipped_dir
import lorakit
done = copy_notebooks({str(tmp_path / "mine")!r})
print(json.dumps({{"model": resolve_source(""), "demo": str(DEMO_DATA), "notebooks": str(shipped_dir("notebooks")),
                  "copied": done.copied, "package": lorakit.__file__}}))
'''
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["package"].startswith(str(site))
    assert got["model"] == str(site / "lorakit" / "data" / "toy-base")  # the shipped model, not a random tiny one
    assert got["demo"] == str(site / "lorakit" / "data" / "demo")
    assert got["notebooks"] == str(site / "lorakit" / "notebooks")
    assert got["copied"] == [f"{n}.ipynb" for n in NOTEBOOKS]


def test_notebooks_command_copies_and_never_overwrites_a_changed_one(tmp_path, capsys):
    dest = tmp_path / "my notebooks"
    assert main(["notebooks", str(dest)]) == 0
    assert "copied: 00_setup_check.ipynb" in capsys.readouterr().out
    for n in NOTEBOOKS:
        assert (dest / f"{n}.ipynb").read_bytes() == (shipped_dir("notebooks") / f"{n}.ipynb").read_bytes()
    mine = (dest / "02_hyperparameters.ipynb").read_bytes().replace(b'"PROJECT', b'"MY_PROJECT', 1)
    (dest / "02_hyperparameters.ipynb").write_bytes(mine)
    assert main(["notebooks", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "skipped (you changed them; kept as they are): 02_hyperparameters.ipynb" in out
    assert "up to date: 00_setup_check.ipynb, 01_dataset_and_captions.ipynb, 03_train.ipynb" in out
    assert (dest / "02_hyperparameters.ipynb").read_bytes() == mine


def test_an_older_unchanged_copy_is_updated_and_a_file_in_the_way_is_refused(tmp_path, capsys):
    dest = tmp_path / "nb"
    copy_notebooks(dest)
    old = b'{"cells": [], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}\n'  # as an older lorakit wrote it
    (dest / "03_train.ipynb").write_bytes(old)
    written = json.loads((dest / MANIFEST).read_text())
    written["03_train.ipynb"] = __import__("hashlib").sha256(old).hexdigest()
    (dest / MANIFEST).write_text(json.dumps(written))
    done = copy_notebooks(dest)
    assert done.updated == ["03_train.ipynb"] and not done.skipped
    assert (dest / "03_train.ipynb").read_bytes() == (shipped_dir("notebooks") / "03_train.ipynb").read_bytes()
    (tmp_path / "a file").write_text("x")
    assert main(["notebooks", str(tmp_path / "a file")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_version_license_and_pyproject_agree(capsys):
    import lorakit

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert lorakit.__version__ == meta["version"]
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"lorakit {meta['version']}"
    assert meta["license"] == "Apache-2.0" and meta["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
