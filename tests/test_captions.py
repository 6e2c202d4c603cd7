"""Caption files and tag operations: previews write nothing, writes keep a backup, bad bytes are reported."""

from __future__ import annotations

import pytest
from dataset_corpus import digests, pattern

from lorakit.dataset.captions import (
    TagEdit,
    apply_changes,
    apply_edit,
    keep_tokens_for,
    parse_replacements,
    plan_edit,
    read_captions,
    tag_frequency,
    write_caption,
)
from lorakit.dataset.scan import process_caption


def test_prefix_goes_first_once_and_is_idempotent():
    edit = TagEdit(prefix="photo of fr3dd!e")
    once = apply_edit("smiling, photo of fr3dd!e, red hair", edit)
    assert once == "photo of fr3dd!e, smiling, red hair"
    assert apply_edit(once, edit) == once


def test_replace_remove_add_dedupe_front_in_order():
    edit = TagEdit(replace={"1girl": "woman", "watermark": ""}, remove=["lowres"], add=["outdoors", "Smile"],
                   front=["red hair", "woman"], dedupe=True)
    got = apply_edit("1girl, smile, lowres, watermark, red hair, smile, SMILE", edit)
    assert got == "red hair, woman, smile, outdoors"


def test_keep_tokens_protects_the_leading_tags():
    edit = TagEdit(remove=["zkx"], front=["blue"], keep_tokens=2, dedupe=True)
    assert apply_edit("zkx, red, blue, zkx, red", edit) == "zkx, red, blue"
    assert keep_tokens_for("photo of fr3dd!e, woman") == 2
    # and the trainer's shuffle keeps them first
    import random

    shuffled = process_caption("zkx, woman, a, b, c, d", random.Random(0), True, 2, 0.0, 0.0)
    assert shuffled.startswith("zkx, woman, ")


def test_underscores_become_spaces_and_replacements_parse():
    assert apply_edit("red_hair, 1girl", TagEdit(underscores_to_spaces=True)) == "red hair, 1girl"
    assert parse_replacements("1girl=woman, watermark=") == {"1girl": "woman", "watermark": ""}
    with pytest.raises(ValueError, match="old=new"):
        parse_replacements("nonsense")


def test_tag_frequency_counts_captions_not_repeats_and_words_for_sentences():
    tags = tag_frequency(["a, b, b", "b, c"])
    assert tags["b"] == 2 and tags["a"] == 1
    words = tag_frequency(["a red cross on a blue background", "a blue cross"])
    assert words["cross"] == 2 and words["blue"] == 2 and "a" not in words


@pytest.fixture()
def dataset(tmp_path):
    ds = tmp_path / "proj" / "dataset"
    folder = ds / "2_zkx"
    folder.mkdir(parents=True)
    for i, cap in enumerate(["red, zkx", "\ufeffzkx, blue, blue", None]):
        pattern(seed=i).save(folder / f"{i}.png")
        if cap is not None:
            (folder / f"{i}.txt").write_text(cap, encoding="utf-8")
    pattern(seed=7).save(folder / "bad.png")
    (folder / "bad.txt").write_bytes(b"caf\xe9, zkx")
    reg = ds / "reg" / "1_woman"
    reg.mkdir(parents=True)
    pattern(seed=8).save(reg / "w.png")
    (reg / "w.txt").write_text("woman", encoding="utf-8")
    return ds


def test_undecodable_caption_is_reported_not_crashed_and_left_alone(dataset):
    caps = {c.image.name: c for c in read_captions(dataset)}
    assert "not UTF-8" in caps["bad.png"].problem and caps["bad.png"].text == ""
    assert caps["1.png"].text == "zkx, blue, blue"  # BOM tolerated
    before = digests(dataset)
    changes = plan_edit(dataset, TagEdit(prefix="photo of zkx"))
    assert digests(dataset) == before  # planning writes nothing
    assert "bad.png" not in {c.image.name for c in changes}
    assert "w.png" not in {c.image.name for c in changes}  # class captions never get the trigger


def test_apply_backs_up_what_it_replaces_and_skips_when_not_allowed(dataset):
    folder = dataset / "2_zkx"
    changes = plan_edit(dataset, TagEdit(prefix="photo of zkx", dedupe=True))
    assert {c.image.name for c in changes} == {"0.png", "1.png", "2.png"}
    refused = apply_changes(changes, overwrite=False)
    assert [p.name for p in refused.written] == ["2.txt"]  # the one without a caption
    assert (folder / "0.txt").read_text(encoding="utf-8") == "red, zkx"
    result = apply_changes(plan_edit(dataset, TagEdit(prefix="photo of zkx", dedupe=True)))
    assert (folder / "1.txt").read_text(encoding="utf-8") == "photo of zkx, zkx, blue\n"
    assert result.backup is not None and result.backup.parent == dataset.parent / "captions-backup"
    assert (result.backup / "2_zkx" / "1.txt").read_bytes() == "\ufeffzkx, blue, blue".encode()


def test_write_caption_refuses_to_overwrite_unless_asked(dataset):
    image = dataset / "2_zkx" / "0.png"
    assert write_caption(image, "new").skipped
    assert (dataset / "2_zkx" / "0.txt").read_text(encoding="utf-8") == "red, zkx"
    result = write_caption(image, "new", overwrite=True)
    assert (dataset / "2_zkx" / "0.txt").read_text(encoding="utf-8") == "new\n"
    assert (result.backup / "2_zkx" / "0.txt").read_text(encoding="utf-8") == "red, zkx"
