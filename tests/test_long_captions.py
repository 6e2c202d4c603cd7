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


def test_windows_of_75_tokens_as_sd_scripts_joins_them(tiny_sd1, tiny_sdxl):
    """max_token_length 150: the caption's tokens in two windows of 75, each with start and end tokens; encoded
    apart and joined to 1 + 150 + 1 states; the first window's states are those of the 75-token encoding; SDXL's
    pooled embedding is the first window's."""
    import torch

    from lorakit.models.loading import load_base

    base = load_base(str(tiny_sd1))
    fam, tok = base.family, base.tokenizers[0]
    words = tok(LONG, add_special_tokens=False).input_ids
    assert len(words) > 150
    (ids,) = fam.tokenize(base, [LONG, SHORT], 150)
    assert ids.shape == (2, 2, 77)
    for w in range(2):
        assert ids[0, w, 0] == tok.bos_token_id and ids[0, w, 76] == tok.eos_token_id
        assert ids[0, w, 1:76].tolist() == words[w * 75:(w + 1) * 75]
    short = tok(SHORT, add_special_tokens=False).input_ids
    assert ids[1, 0, 1:1 + len(short)].tolist() == short and ids[1, 1, 1] == tok.eos_token_id, "an empty window"
    with torch.no_grad():
        long_h, _ = fam.encode_windows(base, [ids], 1)
        one_h, _ = fam.encode_windows(base, fam.tokenize(base, [LONG, SHORT]), 1)
        first, _ = fam.encode(base, [ids[:, 0]], 1)
    assert long_h.shape[:2] == (2, 152) and one_h.shape[:2] == (2, 77)
    torch.testing.assert_close(long_h[:, :76], first[:, :76])
    assert not torch.allclose(long_h[0, 76:151], first[0, 1:76]), "the second window says something else"

    xl = load_base(str(tiny_sdxl))
    with torch.no_grad():
        ids2 = xl.family.tokenize(xl, [LONG], 225)
        hidden, pooled = xl.family.encode_windows(xl, ids2, 1)
        _, pooled_first = xl.family.encode(xl, [i[:, 0] for i in ids2], 1)
    assert [i.shape for i in ids2] == [(1, 3, 77)] * 2 and hidden.shape[1] == 227
    torch.testing.assert_close(pooled, pooled_first)


def test_training_reads_the_windows_and_the_note_counts_them(tiny_project):
    import torch
    from accelerate import Accelerator

    from lorakit.models.loading import load_base
    from lorakit.train.loop import encode_text, train
    from lorakit.train.prepare import prepare

    project, cfg = tiny_project
    tok = load_base(cfg.model.base_model).tokenizers[0]
    words = [f"detail{i} of the red coat" for i in range(60)]
    mid = next(", ".join(words[:k]) for k in range(60) if 120 < caption_tokens(", ".join(words[:k]), tok) <= 225)
    (project.dataset_dir / "2_zkx" / "img02.txt").write_text(mid, encoding="utf-8")
    narrow = prepare(project, cfg, Accelerator(cpu=True))
    assert [n for n in narrow.notes if "longer than the text encoder's 75 tokens" in n and "= 150" in n]
    wide = cfg.replace({"data.max_token_length": 225})
    run = prepare(project, wide, Accelerator(cpu=True))
    assert not [n for n in run.notes if "longer than the text encoder" in n], "225 tokens read: nothing is cut"
    with torch.no_grad():
        hidden, _ = encode_text(run.base, wide, [mid, SHORT], False, {})
    assert hidden.shape[1] == 227
    result = train(project, wide.replace({"training.max_train_steps": 2}))
    assert result.final.is_file()
    too_long = long_caption_note({"a.png": LONG * 3}, limit=150)
    assert "longer than the text encoder's 150 tokens" in too_long and "max_token_length = 225" in too_long
    assert "max_token_length" not in long_caption_note({"a.png": LONG * 3}, limit=225)
