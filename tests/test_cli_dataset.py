"""The dataset commands of the CLI: check (table / JSON, exit code), import, caption."""

from __future__ import annotations

import json

from dataset_corpus import digests, make_corpus, pattern

from lorakit.cli.main import main
from lorakit.dataset.captioners import build_tiny_blip


def test_check_json_lists_every_file_and_exits_1_on_unusable_files(tmp_path, capsys):
    folder = tmp_path / "3_zkx"
    make_corpus(folder)
    before = digests(tmp_path)
    assert main(["dataset", "check", str(tmp_path), "--json", "--resolution", "32"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert digests(tmp_path) == before
    by_file = {f["file"]: f for f in data["files"]}
    assert by_file["3_zkx/zero.png"]["status"] == "error"
    assert by_file["3_zkx/good.png"]["status"] == "ok" and by_file["3_zkx/good.png"]["sharpness"] > 20


def test_check_table_on_a_clean_folder_exits_0(tmp_path, capsys):
    for i in range(3):
        pattern(seed=i).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text("zkx", encoding="utf-8")
    assert main(["dataset", "check", str(tmp_path), "--resolution", "32"]) == 0
    out = capsys.readouterr().out
    assert "3 files checked" in out and "blur < 20" in out


def test_import_with_reg_and_a_clash_reports_an_error(tmp_path, capsys):
    src, reg = tmp_path / "photos", tmp_path / "women"
    src.mkdir()
    reg.mkdir()
    pattern(seed=1).save(src / "a.png")
    pattern(seed=2).save(reg / "w.jpg")
    proj = tmp_path / "proj"
    assert main(["dataset", "import", str(src), str(proj), "--token", "zkx", "--repeats", "4",
                 "--reg", str(reg), "--class-prompt", "woman"]) == 0
    assert (proj / "dataset" / "4_zkx" / "a.png").is_file()
    assert (proj / "dataset" / "reg" / "1_woman" / "w.jpg").is_file()
    pattern(seed=3).save(src / "a.jpg")
    assert main(["dataset", "import", str(src), str(proj), "--token", "zkx", "--repeats", "4"]) == 2
    assert "a.png" in capsys.readouterr().err


def test_caption_dry_run_writes_nothing_then_a_real_run_fills_the_gaps(tmp_path, capsys):
    model = build_tiny_blip(tmp_path / "blip", words=["red", "blue"])
    folder = tmp_path / "ds" / "1_zkx"
    folder.mkdir(parents=True)
    for i in range(3):
        pattern(seed=i).save(folder / f"{i}.png")
    (folder / "0.txt").write_text("mine", encoding="utf-8")
    args = ["caption", str(tmp_path / "ds"), "--captioner", "blip", "--model", str(model), "--prefix", "zkx",
            "--max-length", "6"]
    assert main([*args, "--dry-run"]) == 0
    assert sorted(p.name for p in folder.glob("*.txt")) == ["0.txt"]
    assert main(args) == 0
    assert "2 captions written" in capsys.readouterr().out
    assert (folder / "0.txt").read_text(encoding="utf-8") == "mine"
    assert (folder / "1.txt").read_text(encoding="utf-8").startswith("zkx")
    assert main(["caption", str(tmp_path / "ds"), "--captioner", "tagger", "--model", "nobody/nothing"]) == 2
    assert "--download" in capsys.readouterr().err


def test_caption_trust_remote_code_warns_and_options_of_another_captioner_are_refused(tmp_path, capsys):
    from lorakit.dataset.captioners import build_tiny_tagger

    model = build_tiny_tagger(tmp_path / "tagger", tags=["red", "blue"])
    folder = tmp_path / "ds" / "1_zkx"
    folder.mkdir(parents=True)
    pattern(seed=0).save(folder / "0.png")
    args = ["caption", str(tmp_path / "ds"), "--captioner", "tagger", "--model", str(model), "--dry-run"]
    assert main([*args, "--trust-remote-code", "--threshold", "0.0"]) == 0
    out = capsys.readouterr()
    assert "runs Python code from its repository" in out.err and "1 captions proposed" in out.out
    assert main(args) == 0
    assert "trust_remote_code" not in capsys.readouterr().err
    assert main([*args, "--beams", "2", "--general-threshold", "0.5"]) == 2
    assert "--beams: an option of --captioner blip" in capsys.readouterr().err
