"""The user's AUTOMATIC1111 / Forge / ComfyUI folders: found, their checkpoints listed, a LoRA copied in (never over
a file already there) with the sidecar A1111's Lora tab reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lorakit.cli.main import main
from lorakit.errors import ExportError, LorakitError
from lorakit.evaluate.export import export_choice, export_lora, sd_version
from lorakit.evaluate.grid_spec import Cell
from lorakit.models.user_folders import find_user_folders, list_checkpoints, lora_destination
from lorakit.project import Project

SD1_META = {"ss_base_model_version": "sd_v1", "ss_v2": "False", "ss_output_name": "zkx", "ss_sd_model_name": "v1-5",
            "ss_num_train_images": "40", "ss_epoch": "4", "ss_steps": "160"}


def make_tree(root: Path, layout: tuple[str, str], checkpoints=("model.safetensors",)) -> Path:
    for rel in layout:
        (root / rel).mkdir(parents=True)
    for i, name in enumerate(checkpoints):
        (root / layout[0] / name).parent.mkdir(parents=True, exist_ok=True)
        (root / layout[0] / name).write_bytes(b"x" * (1000 * (i + 1)))
    return root


WEBUI = ("models/Stable-diffusion", "models/Lora")
COMFY = ("models/checkpoints", "models/loras")


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A home folder with A1111 in ~, Forge in ~/Documents and ComfyUI in ~/AI."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    for var in ("LORAKIT_WEBUI_DIR", "LORAKIT_COMFYUI_DIR"):
        monkeypatch.delenv(var, raising=False)
    make_tree(home / "stable-diffusion-webui", WEBUI, ("v1-5.safetensors", "old.ckpt"))
    make_tree(home / "Documents" / "stable-diffusion-webui-forge", WEBUI, ("sdxl.safetensors",))
    make_tree(home / "AI" / "ComfyUI", COMFY, ("sub/dreamy.safetensors",))
    return home


@pytest.fixture()
def project(tmp_path) -> tuple[Project, Path]:
    """A project with a trained-looking LoRA (SD1 metadata) and the trigger word zkx."""
    project = Project.create(tmp_path / "proj")
    (project.dataset_dir / "10_zkx").mkdir(parents=True)
    lora = project.output_dir / "zkx.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_x.lora_down.weight": torch.ones(2, 3)}, str(lora), metadata=SD1_META)
    return project, lora


def test_finds_each_install_and_lists_checkpoints(home):
    folders = find_user_folders()
    apps = {f.app: f for f in folders}
    assert set(apps) == {"AUTOMATIC1111", "Forge", "ComfyUI"}
    assert apps["AUTOMATIC1111"].loras == home / "stable-diffusion-webui" / "models" / "Lora"
    assert apps["ComfyUI"].loras == home / "AI" / "ComfyUI" / "models" / "loras"
    ckpts = {c.path.name: c for c in list_checkpoints(folders)}
    assert set(ckpts) == {"v1-5.safetensors", "old.ckpt", "sdxl.safetensors", "dreamy.safetensors"}
    assert ckpts["old.ckpt"].pickled and "pickled" in ckpts["old.ckpt"].label()
    assert not ckpts["v1-5.safetensors"].pickled and ckpts["v1-5.safetensors"].size == 1000
    assert "AUTOMATIC1111: ~/stable-diffusion-webui" in ckpts["v1-5.safetensors"].label()
    assert ckpts["sdxl.safetensors"].folder.app == "Forge"


def test_paths_from_the_environment_and_extra_model_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    webui = make_tree(tmp_path / "apps" / "my-webui", WEBUI, ("a.safetensors",))
    comfy = make_tree(tmp_path / "apps" / "comfy", COMFY, ())
    shared = make_tree(tmp_path / "shared-a1111", WEBUI, ("shared.safetensors",))
    (comfy / "extra_model_paths.yaml").write_text(
        f"a111:\n    base_path: {shared}\n    checkpoints: models/Stable-diffusion\n"
        "    loras: |\n        models/Lora\n        models/LyCORIS\n", encoding="utf-8")
    monkeypatch.setenv("LORAKIT_WEBUI_DIR", str(webui))
    monkeypatch.setenv("LORAKIT_COMFYUI_DIR", str(comfy / "models"))  # its models folder is fine too
    folders = find_user_folders(search=False)
    assert [f.root for f in folders] == [webui, comfy, shared]
    assert folders[2].app == "ComfyUI, extra_model_paths.yaml: a111" and folders[2].loras == shared / "models/Lora"
    assert {c.path.name for c in list_checkpoints(folders)} == {"a.safetensors", "shared.safetensors"}
    assert find_user_folders(str(webui), search=False) == folders  # an explicit path: the same install once


def test_copy_into_a_taken_name_keeps_the_old_file(home, project):
    proj, lora = project
    dest = home / "stable-diffusion-webui" / "models" / "Lora"
    theirs = dest / "zkx.safetensors"
    theirs.write_bytes(b"someone else's zkx")
    done = export_lora(proj, to=dest, strength=0.8)
    assert done.lora == dest / "zkx-1.safetensors" and done.sidecar == dest / "zkx-1.json"
    assert theirs.read_bytes() == b"someone else's zkx"
    assert done.lora.read_bytes() == lora.read_bytes()
    mode = 0o666 & ~_umask()
    assert done.lora.stat().st_mode & 0o777 == mode and done.sidecar.stat().st_mode & 0o777 == mode
    card = json.loads(done.sidecar.read_text(encoding="utf-8"))
    assert list(card) == ["description", "sd version", "activation text", "preferred weight", "negative text",
                          "notes"]
    assert card["sd version"] == "SD1" and card["activation text"] == "zkx" and card["preferred weight"] == 0.8
    assert "v1-5" in card["description"] and "40 images" in card["description"]
    assert "<lora:zkx-1:0.8> zkx" in done.summary()
    again = export_lora(proj, to=dest, strength=0.8)  # the same bytes: not a third copy
    assert again.lora == done.lora and "not copied again" in again.note
    assert sorted(p.name for p in dest.iterdir()) == ["zkx-1.json", "zkx-1.safetensors", "zkx.safetensors"]


def test_sd_version_as_a1111_tells_it():
    assert sd_version({"ss_base_model_version": "sdxl_base_v1-0", "ss_v2": "False"}) == "SDXL"
    assert sd_version({"ss_base_model_version": "sd_v2", "ss_v2": "True"}) == "SD2"
    assert sd_version(SD1_META) == "SD1" and sd_version({}) == "Unknown"


def test_nothing_is_written_outside_a_models_folder(home, project, tmp_path):
    proj, _ = project
    checkpoints = home / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    for bad in (tmp_path / "downloads", checkpoints, tmp_path / "nowhere" / "Lora"):
        if bad.name != "Lora":  # a Lora folder outside any models folder: not even there
            bad.mkdir(parents=True, exist_ok=True)
        before = sorted(bad.rglob("*")) if bad.exists() else None
        with pytest.raises(LorakitError, match="not the LoRA folder.*nothing was written"):
            export_lora(proj, to=bad)
        assert (sorted(bad.rglob("*")) if bad.exists() else None) == before
    for ok in (home / "stable-diffusion-webui", home / "stable-diffusion-webui" / "models"):  # the install is fine
        assert lora_destination(ok) == home / "stable-diffusion-webui" / "models" / "Lora"
    with pytest.raises(ExportError, match="only .safetensors"):
        export_lora(proj, home / "stable-diffusion-webui" / "models" / "Stable-diffusion" / "old.ckpt",
                    to=home / "stable-diffusion-webui")


def test_cli_export(home, project, capsys):
    proj, _ = project
    comfy = home / "AI" / "ComfyUI"
    assert main(["export", str(proj.root), "--to", str(comfy), "--strength", "0.6"]) == 0
    assert str(comfy / "models" / "loras" / "zkx.safetensors") in capsys.readouterr().out
    card = json.loads((comfy / "models" / "loras" / "zkx.json").read_text(encoding="utf-8"))
    assert card["preferred weight"] == 0.6
    assert main(["export", str(proj.root)]) == 0  # no --to: the first install found (A1111 in the home folder)
    assert (home / "stable-diffusion-webui" / "models" / "Lora" / "zkx.safetensors").is_file()


def test_cli_export_without_an_install_says_what_to_give(tmp_path, project, monkeypatch, capsys):
    proj, _ = project
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    for var in ("LORAKIT_WEBUI_DIR", "LORAKIT_COMFYUI_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert main(["export", str(proj.root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--to" in err and "LORAKIT_WEBUI_DIR" in err


def test_notebook_04_cell(home, project):
    proj, lora = project
    cell = Cell("zkx, thing", "", 1, 7.0, 20, "Euler a", str(lora), 0.75)
    demo = export_choice(proj, cell, "auto", base_model="")
    assert demo.lora is None and "demo" in demo.summary()
    assert export_choice(proj, cell, "", base_model="/m/v1-5.safetensors").lora is None
    done = export_choice(proj, cell, "auto", base_model="/m/v1-5.safetensors")
    assert done.lora == home / "stable-diffusion-webui" / "models" / "Lora" / "zkx.safetensors"
    assert json.loads(done.sidecar.read_text(encoding="utf-8"))["preferred weight"] == 0.75
    base_cell = Cell("zkx, thing", "", 1, 7.0, 20, "Euler a", None, 0.0)  # the base model's cell: the last LoRA, 1.0
    comfy = export_choice(proj, base_cell, str(home / "AI" / "ComfyUI" / "models" / "loras"), base_model="x")
    assert json.loads(comfy.sidecar.read_text(encoding="utf-8"))["preferred weight"] == 1.0


def test_checkpoint_picker_sets_the_base_model(home):
    import ipywidgets as widgets

    from lorakit.ui.user_folders import CheckpointPicker

    box = widgets.Text(value="")
    picker = CheckpointPicker(box, download=False)
    paths = [value for _, value in picker.dropdown.options]
    assert paths[0] == "" and len(paths) == 5
    picker.dropdown.value = str(home / "stable-diffusion-webui" / "models" / "Stable-diffusion" / "v1-5.safetensors")
    assert box.value.endswith("v1-5.safetensors") and picker.download.value is False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
