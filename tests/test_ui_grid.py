"""Notebook 04's form: filled from the project, and its values make the same spec the CLI would."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lorakit.evaluate.grid import GridResult
from lorakit.evaluate.grid_spec import build_spec
from lorakit.project import Project
from lorakit.ui.grid import CellPicker, GridForm


@pytest.fixture()
def project(tmp_path):
    from lorakit.config.schema import TrainConfig

    project = Project.create(tmp_path / "proj")
    cfg = TrainConfig()
    cfg.sampling.sample_prompts = ["a yellow blicket on a green background --n blurry", "a red circle"]
    cfg.sampling.sample_steps, cfg.sampling.sample_cfg, cfg.sampling.sample_sampler = 25, 4.0, "dpm++_2m_karras"
    cfg.save(project.config_path)
    for name in ("b-000001", "b"):
        (project.output_dir / f"{name}.safetensors").write_bytes(b"")
    return project


def test_form_defaults_come_from_the_project(project):
    form = GridForm(project)
    v = form.values()
    assert v == {"x": "checkpoint", "y": "strength=1,0.75,0.5", "z": "", "prompt": "a yellow blicket on a green background",
                 "negative_prompt": "", "steps": 25, "cfg": 4.0, "seed": 1, "sampler": "DPM++ 2M Karras"}
    spec = build_spec(project, **v)
    assert spec.x.labels == ["b-000001", "b"] and spec.y.values == [1.0, 0.75, 0.5] and spec.z is None


def test_edited_form_makes_the_matching_spec(project):
    form = GridForm(project)
    form.x.kind.value, form.x.values.value = "prompt", "yellow,red"
    form.y.kind.value, form.y.values.value = "checkpoint", "b"
    form.z.kind.value, form.z.values.value = "seed", "1,2"
    form.steps.value, form.sampler.value, form.negative.value = 8, "DDIM", "blurry"
    assert form.x.values.placeholder.startswith("red,blue")
    spec = build_spec(project, **form.values())
    assert spec.x.kind == "prompt" and spec.x.values == ["yellow", "red"]
    assert spec.y.labels == ["b"] and spec.z.values == [1, 2]
    assert (spec.steps, spec.sampler, spec.negative_prompt) == (8, "DDIM", "blurry")


def test_cell_picker_returns_the_chosen_image(project):
    from PIL import Image

    spec = build_spec(project, "checkpoint", "strength=1,0.5")
    images = [[Image.new("RGB", (4, 4), (10 * i + j, 0, 0)) for i in range(2)] for j in range(2)]
    picker = CellPicker(GridResult(cell_images=[images]), spec, default=(0, 1, 0))
    assert picker.chosen() == (0, 1, 0)
    picker.col.value = 1
    assert picker.image().getpixel((0, 0)) == (11, 0, 0)
    assert [label for label, _ in picker.row.options] == ["strength: 1", "strength: 0.5"]


def test_library_never_imports_ipywidgets():
    code = ("import sys, lorakit.evaluate.grid, lorakit.evaluate.generate, lorakit.evaluate.judge, lorakit.evaluate.handoff; "
            "sys.exit('ipywidgets' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
