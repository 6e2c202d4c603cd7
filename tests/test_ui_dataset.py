"""Notebook 01's widgets, driven the way a headless run drives them: by calling their methods."""

from __future__ import annotations

from dataset_corpus import pattern
from PIL import Image

from lorakit.dataset.captions import image_files
from lorakit.dataset.checks import CheckSettings, check_folder
from lorakit.project import Project
from lorakit.ui import dataset as ui


def _project(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        pattern((120, 80), seed=i).save(src / f"{i}.png")
        (src / f"{i}.txt").write_text(f"red, thing {i}", encoding="utf-8")
    project = Project.create(tmp_path / "proj")
    form = ui.ImportForm(str(src), "zkx", 2)
    reports = ui.run_import(project, form.value())
    assert "3 imported" in reports[0].summary()
    return project


def test_forms_import_check_edit_and_crop(tmp_path):
    project = _project(tmp_path)
    view = ui.check_view(check_folder(project.dataset_dir, ui.CheckForm(CheckSettings(resolution=64)).value()))
    assert view.children[-1].value[:4] == b"\x89PNG"  # the contact sheet

    editor = ui.CaptionEditor(project.dataset_dir)
    editor.next()
    editor.text.value = "photo of zkx, edited"
    editor.save()
    assert (project.dataset_dir / "2_zkx" / "1.txt").read_text(encoding="utf-8") == "photo of zkx, edited\n"
    assert list((project.root / "captions-backup").rglob("1.txt"))

    tags = ui.TagForm(prefix="photo of zkx")
    tags.remove.value = "red"
    from lorakit.dataset.captions import plan_edit

    changes = plan_edit(project.dataset_dir, tags.value())
    assert "preview only" in ui.write_if_asked(changes, tags.write.value)
    assert (project.dataset_dir / "2_zkx" / "0.txt").read_text(encoding="utf-8").startswith("red")
    tags.write.value = True
    ui.write_if_asked(plan_edit(project.dataset_dir, tags.value()), tags.write.value)
    assert (project.dataset_dir / "2_zkx" / "0.txt").read_text(encoding="utf-8") == "photo of zkx, thing 0\n"

    crop = ui.CropHelper(project, image_files(project.dataset_dir))
    assert "nothing to crop" in crop.apply()
    crop.mode.value = "center"
    crop.apply()
    with Image.open(project.dataset_dir / "2_zkx" / "0.png") as im:
        assert im.size == (80, 80)


def test_demo_captioner_previews_but_never_writes(tmp_path):
    project = _project(tmp_path)
    (project.dataset_dir / "2_zkx" / "0.txt").unlink()
    form = ui.CaptionerForm(kind="tagger")
    from lorakit.dataset.captioners import caption_folder, load_captioner

    captioner = load_captioner(form.value(project))
    proposals = caption_folder(captioner, project.dataset_dir, progress=False)
    assert [p.image.name for p in proposals] == ["0.png"]
    assert "never written" in ui.caption_write(form, proposals)
    assert not (project.dataset_dir / "2_zkx" / "0.txt").exists()



def test_caption_form_wd14_choice_and_the_trust_remote_code_warning(tmp_path):
    from lorakit.dataset.captioners import caption_folder, load_captioner

    project = _project(tmp_path)
    form = ui.CaptionerForm(kind="wd14")
    form.undesired.value, form.always_first.value = "white background", "blue theme"
    settings = form.value(project)
    assert settings.kind == "wd14" and settings.undesired_tags == ["white background"]
    assert settings.always_first_tags == ["blue theme"] and settings.general_threshold == 0.35
    captioner = load_captioner(settings)  # the demo's toy WD14 model, written once in the project's cache
    assert len(caption_folder(captioner, project.dataset_dir, only_missing=False, progress=False)) == 3
    form.kind.value = "tagger"
    assert form.trust_warning.value == "" and not form.value(project).trust_remote_code
    form.trust.value = True
    assert "runs Python code" in form.trust_warning.value and form.value(project).trust_remote_code


def test_empty_source_means_the_demo_only_for_a_project_without_images(tmp_path):
    from lorakit.demo.recipe import DEMO_DATA

    empty = Project.create(tmp_path / "empty")
    source, reg = ui.choose_sources(empty, "", "")
    assert source == str(DEMO_DATA / "dataset") and reg == str(DEMO_DATA / "reg")
    assert ui.uses_demo(empty, source)
    assert ui.project_config(empty, True).data.resolution == 32
    mine = _project(tmp_path)
    assert ui.choose_sources(mine, "", "") == ("", "")  # never pours the demo into a real project
    assert not ui.uses_demo(mine, "") and ui.project_config(mine, False).data.resolution == 512
