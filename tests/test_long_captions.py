"""A caption longer than the text encoder reads is said before training, not discovered in the samples."""

from __future__ import annotations

from accelerate import Accelerator

from conftest import write_images
from lorakit.dataset.captions import CLIP_TOKENS, caption_tokens, long_caption_note
from lorakit.dataset.checks import CheckSettings, check_folder

LONG = ", ".join(f"detail{i} of the red coat" for i in range(30))  # well over 75 CLIP tokens
SHORT = "zkx, a red coat on a chair"


def test_tokens_are_counted_without_start_and_end():
    assert caption_tokens("a photo") == 2
    assert caption_tokens(SHORT) < CLIP_TOKENS < caption_tokens(LONG)


def test_the_note_names_only_the_long_captions():
    assert long_caption_note({"a.png": SHORT}) is None
    note = long_caption_note({"a.png": SHORT, "b.png": LONG})
    assert note.startswith("1 caption is longer") and "b.png" in note and "a.png" not in note
    many = long_caption_note({f"{i}.png": LONG for i in range(7)})
    assert many.startswith("7 captions") and "and 2 more" in many


def test_check_folder_warns_on_a_long_caption_only(tmp_path):
    write_images(tmp_path, 2, caption=SHORT)
    (tmp_path / "img01.txt").write_text(LONG, encoding="utf-8")
    report = check_folder(tmp_path, CheckSettings(resolution=32))
    codes = {f.path.name: {i.code for i in f.issues} for f in report.files}
    assert "long-caption" in codes["img01.png"] and "long-caption" not in codes["img00.png"]
    message = next(i.message for f in report.files for i in f.issues if i.code == "long-caption")
    assert "img01.txt" in message and str(caption_tokens(LONG)) in message


def test_prepare_puts_the_note_in_the_runs_notes(tiny_project):
    from lorakit.train.prepare import prepare

    project, cfg = tiny_project
    (project.dataset_dir / "2_zkx" / "img02.txt").write_text(LONG, encoding="utf-8")
    run = prepare(project, cfg, Accelerator(cpu=True))
    notes = [n for n in run.notes if "longer than the text encoder" in n]
    assert len(notes) == 1 and "img02.png" in notes[0] and "img00.png" not in notes[0]
