"""Issue 16's corpus of hostile and broken inputs: each class gives its sentence (or the right result), leaves
every input byte-identical and writes nothing outside the project."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dataset_corpus import (
    BAD_CONFIG_VALUES,
    BAD_FOLDERS,
    BAD_KOHYA_VALUES,
    SECRET,
    bad_folder_dataset,
    conflicting_project,
    extreme_aspect_dataset,
    hostile_pickle,
    link_source,
    non_utf8_dataset,
    outside_files,
    pattern,
    tree_digests,
)

from lorakit.cli.main import main
from lorakit.config.kohya import import_kohya
from lorakit.config.schema import TrainConfig, check_clip_skip
from lorakit.dataset.checks import check_folder, verify_dataset
from lorakit.dataset.importing import import_images
from lorakit.dataset.scan import assign_buckets, folder_problem, parse_folder_name, scan_dataset
from lorakit.errors import ConfigError, GenerateError, LorakitError, ResumeError
from lorakit.lora.file import tag_frequency
from lorakit.lora.prompt_tags import find_lora
from lorakit.project import Project
from lorakit.train.state import STATE_FILE, load_state


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg and msg.rstrip().endswith((".", ")")), msg


@pytest.fixture
def world(tmp_path):
    """An outside folder with a secret, and the tree's state to compare against afterwards."""
    outside = outside_files(tmp_path / "outside")
    return tmp_path, outside, tree_digests(outside)


# ---- nothing outside leaks in --------------------------------------------------------------------------
def test_import_copies_regular_files_and_lists_the_links_it_skipped(world):
    tmp, outside, before_out = world
    src = link_source(tmp / "src", outside)
    before_src = tree_digests(src)
    project = Project.create(tmp / "proj")
    report = import_images(src, project, token="zkx", repeats=2)
    dest = project.dataset_dir / "2_zkx"
    assert sorted(p.name for p in dest.iterdir()) == ["good.png", "good.txt", "leaky.png"]
    assert not any(p.is_symlink() for p in dest.iterdir())
    skipped = {p.name: why for p, why in report.links}
    assert set(skipped) == {"leaky.txt", "stolen.png", "alias.png", "broken.png"}
    assert all("link" in why for why in skipped.values())
    assert "4 links skipped" in report.summary() and "link skipped" in report.format_table()
    assert SECRET not in "".join(p.read_text(errors="replace") for p in dest.glob("*.txt"))
    assert tree_digests(src) == before_src and tree_digests(outside) == before_out


def test_follow_links_takes_only_links_that_stay_inside_the_source(world):
    tmp, outside, before_out = world
    src = link_source(tmp / "src", outside)
    project = Project.create(tmp / "proj")
    report = import_images(src, project, token="zkx", repeats=2, follow_links=True)
    dest = project.dataset_dir / "2_zkx"
    assert sorted(p.name for p in dest.iterdir()) == ["alias.png", "good.png", "good.txt", "leaky.png"]
    assert (dest / "alias.png").read_bytes() == (src / "inner" / "real.png").read_bytes()
    why = {p.name: w for p, w in report.links}
    assert set(why) == {"leaky.txt", "stolen.png", "broken.png"}
    assert "outside" in why["leaky.txt"] and "outside" in why["stolen.png"] and "broken" in why["broken.png"]
    assert tree_digests(outside) == before_out


def test_a_caption_linked_from_outside_never_reaches_the_lora_metadata(world):
    tmp, outside, _ = world
    project = Project.create(tmp / "proj")
    folder = project.dataset_dir / "2_zkx"
    folder.mkdir(parents=True)
    pattern(seed=1).save(folder / "a.png")
    (folder / "a.txt").symlink_to(outside / "secret.txt")
    pattern(seed=2).save(folder / "b.png")
    (folder / "b.txt").write_text("photo of zkx, red", encoding="utf-8")
    scan = scan_dataset(project.dataset_dir)
    assert [i.path.name for i in scan.items] == ["b.png"]
    assert len(scan.caption_errors) == 1 and "outside" in scan.caption_errors[0]  # training refuses to start
    assert SECRET not in json.dumps(tag_frequency(scan.train_items))
    report = check_folder(project.dataset_dir)
    assert any(i.code == "caption-link" for f in report.files for i in f.issues)


def test_lora_tags_resolve_only_inside_the_given_folders(world):
    tmp, outside, _ = world
    loras = tmp / "loras"
    loras.mkdir()
    (loras / "mine.safetensors").write_bytes(b"x")
    (outside / "secret.safetensors").write_bytes(b"x")
    (loras / "sneaky.safetensors").symlink_to(outside / "secret.safetensors")
    assert find_lora("mine", [loras]) == loras / "mine.safetensors"
    for name in ("../outside/secret", "../../secret", str(outside / "secret"), "..\\outside\\secret", "sneaky"):
        with pytest.raises(GenerateError) as e:
            find_lora(name, [loras])
        _one_sentence(str(e.value))
        assert "outside" in str(e.value)


# ---- nothing in a project runs code ----------------------------------------------------------------------
def test_a_planted_pickle_state_is_refused_and_nothing_is_written(world):
    tmp, _, _ = world
    project = Project.create(tmp / "proj")
    marker = tmp / "pwned"
    project.state_dir.mkdir(parents=True, exist_ok=True)
    for name in ("state.pt", STATE_FILE):
        (project.state_dir / name).write_bytes(hostile_pickle(marker))
    before = tree_digests(tmp)
    for name in ("state.pt", STATE_FILE):
        with pytest.raises(ResumeError) as e:
            load_state(project.state_dir / name)
        _one_sentence(str(e.value))
        assert "start without --resume" in str(e.value) and name in str(e.value)
    assert not marker.exists() and tree_digests(tmp) == before


# ---- import never mixes --------------------------------------------------------------------------------
def test_a_stem_already_in_the_project_is_a_conflict_and_nothing_of_it_is_copied(tmp_path):
    project = Project.create(tmp_path / "proj")
    dest, src = conflicting_project(project.dataset_dir / "2_zkx", tmp_path / "src")
    before_dest, before_src = tree_digests(dest), tree_digests(src)
    report = import_images(src, project, token="zkx", repeats=2)  # no IsADirectoryError
    conflicts = {p.name: other.name for p, other in report.conflicts}
    assert conflicts == {"good_1.png": "good_1.jpg", "good_2.png": "good_2.png", "good_3.png": "good_3",
                         "good_4.png": "good_4.png"}
    after = tree_digests(dest)
    assert {k: v for k, v in after.items() if k in before_dest} == before_dest  # the link still dangles
    assert sorted(set(after) - set(before_dest)) == ["good_5.png", "good_5.txt"]
    table = report.format_table()
    assert "good_1.jpg is already in" in table and "nothing of 'good_1' copied" in table
    assert tree_digests(src) == before_src


# ---- silent skipping -----------------------------------------------------------------------------------
def test_folders_training_skips_are_reported_with_the_reason(tmp_path):
    root = bad_folder_dataset(tmp_path / "dataset")
    before = tree_digests(root)
    for name, words in BAD_FOLDERS.items():
        assert parse_folder_name(name) is None and words in folder_problem(name), name  # '²_x' never crashes
    scan = scan_dataset(root)
    assert [i.path.name for i in scan.items] == ["fine.png"]
    text = "\n".join(scan.problems)
    assert all(f"{name}: " in text for name in BAD_FOLDERS) and "broken.png: unreadable image" in text
    assert "stray.png: directly in" in text
    report = check_folder(root)
    skipped = {f.path.name if f.path.parent == root else f.path.parent.name: f for f in report.files
               if any(i.code == "skipped" for i in f.issues)}
    assert set(skipped) == {*BAD_FOLDERS, "stray.png"}
    assert len(report.errors) == len(BAD_FOLDERS) + 2  # + the stray and the unreadable one
    assert f"{len(BAD_FOLDERS) + 2} unusable" in report.summary()
    assert not verify_dataset(root).ok
    assert tree_digests(root) == before


def test_dataset_check_cli_exits_1_and_json_parses(tmp_path, capsys):
    root = bad_folder_dataset(tmp_path / "dataset")
    assert main(["dataset", "check", str(root), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["skipped"] == len(BAD_FOLDERS) + 1


def test_non_utf8_names_are_printed_escaped_and_json_stays_valid(tmp_path):
    root = non_utf8_dataset(tmp_path / "dataset")
    before = tree_digests(root)
    for args in (["--json"], []):
        done = subprocess.run([sys.executable, "-m", "lorakit", "dataset", "check", str(root), *args],
                              capture_output=True, env={"PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1",
                                                        "PATH": "/usr/bin:/bin"}, timeout=120)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        out = done.stdout.decode("utf-8")  # valid UTF-8
        if args:
            assert [f["file"] for f in json.loads(out)["files"]] == ["1_zkx/caf\\xe9.png"]
        else:
            assert "caf\\xe9.png" in out
    assert tree_digests(root) == before


# ---- every value checked where it is cheapest ----------------------------------------------------------
def test_buckets_stay_within_min_and_max_and_extreme_ratios_get_a_note(tmp_path):
    root = extreme_aspect_dataset(tmp_path / "dataset")
    items = scan_dataset(root).items
    notes: list[str] = []
    assign_buckets(items, 512, True, 256, 1024, 64, no_upscale=True, notes=notes)
    for it in items:
        assert all(256 <= side <= 1024 for side in it.bucket), (it.path.name, it.bucket)
    by_name = {it.path.name: it.bucket for it in items}
    assert by_name["strip.png"] == (1024, 256) and by_name["banner.png"] == (1024, 256)
    assert len(notes) == 2 and all("center-cropped" in n for n in notes)


@pytest.mark.parametrize("key", sorted(BAD_CONFIG_VALUES))
def test_bad_config_values_are_refused_with_a_sentence(key, tmp_path):
    value, words = BAD_CONFIG_VALUES[key]
    with pytest.raises(ConfigError) as e:
        TrainConfig().replace({key: value})
    assert words in str(e.value)
    _one_sentence(str(e.value))


def test_bad_config_values_in_a_toml_fail_config_check_with_exit_status(tmp_path, capsys):
    path = tmp_path / "lorakit.toml"
    path.write_text(TrainConfig().to_toml().replace("unet_lr = 0.0001", "unet_lr = inf"), encoding="utf-8")
    before = path.read_bytes()
    assert main(["config", "check", str(path)]) != 0
    err = capsys.readouterr().err
    assert "optimizer.unet_lr = inf is not a finite number" in err and "Traceback" not in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("key", sorted(BAD_KOHYA_VALUES))
def test_bad_kohya_values_are_refused_naming_the_key(key):
    value, words = BAD_KOHYA_VALUES[key]
    with pytest.raises(ConfigError) as e:
        import_kohya({key: value})
    assert words in str(e.value)
    _one_sentence(str(e.value))


def test_clip_skip_against_the_encoder_depth():
    check_clip_skip(2, 12)
    with pytest.raises(ConfigError, match="has 2 layers"):
        check_clip_skip(12, 2)


def test_import_refuses_absurd_repeats_and_caption_extensions(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    pattern(seed=1).save(src / "a.png")
    project = Project.create(tmp_path / "proj")
    for kwargs, words in (({"repeats": 10**30}, "repeats must be 1 to 10000"),
                          ({"repeats": 2, "caption_extension": ""}, "must start with '.'")):
        with pytest.raises(LorakitError, match=words):
            import_images(src, project, token="zkx", **kwargs)
    assert not any(project.dataset_dir.rglob("*.png"))


# ---- the file system says no ---------------------------------------------------------------------------
def _refuse_writes_under(monkeypatch, folder):
    """Make ``folder`` read-only: for real where permissions apply, by refusing the OS calls as root."""
    import builtins
    import errno
    import os
    import tempfile

    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return
    inside = str(folder.resolve())

    def guard(fn, arg=0):
        def refuse(*args, **kwargs):
            target = kwargs.get("dir") if fn is tempfile.mkstemp else args[arg] if len(args) > arg else None
            mode = args[1] if fn is builtins.open and len(args) > 1 else kwargs.get("mode", "r")
            writes = fn is not builtins.open or any(c in str(mode) for c in "wax+")
            if target is not None and writes and os.path.abspath(os.fspath(target)).startswith(inside):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(target))
            return fn(*args, **kwargs)
        return refuse

    monkeypatch.setattr(os, "mkdir", guard(os.mkdir))
    monkeypatch.setattr(tempfile, "mkstemp", guard(tempfile.mkstemp))
    monkeypatch.setattr(builtins, "open", guard(builtins.open))


def test_a_read_only_project_is_one_sentence_and_nothing_changes(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src"
    src.mkdir()
    pattern(seed=1).save(src / "a.png")
    (src / "a.txt").write_text("photo of zkx", encoding="utf-8")
    project = Project.create(tmp_path / "proj")
    before_src, before_proj = tree_digests(src), tree_digests(project.root)
    _refuse_writes_under(monkeypatch, project.root)
    for argv in (["dataset", "import", str(src), str(project.root), "--token", "zkx", "--repeats", "2"],
                 ["config", "init", str(project.root), "--preset", "character", "--force"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: Permission denied: ") and str(project.root) in err, err
        assert "give yourself access to it, or choose a folder of your own." in err
        _one_sentence(err)
    monkeypatch.undo()
    assert tree_digests(src) == before_src and tree_digests(project.root) == before_proj


def test_names_near_the_255_byte_limit_import_caption_and_scan(tmp_path):
    from lorakit.dataset.captions import read_caption, write_caption
    from lorakit.files import atomic_write_text

    stem = "é" * 100 + "x" * 51  # 251 bytes in UTF-8: the longest stem whose .png and .txt still fit
    assert len(stem.encode()) + 4 == 255
    src = tmp_path / "src"
    src.mkdir()
    pattern(seed=1).save(src / f"{stem}.png")
    project = Project.create(tmp_path / "proj")
    report = import_images(src, project, token="zkx", repeats=2)
    dest = project.dataset_dir / "2_zkx"
    assert (dest / f"{stem}.png").is_file() and not report.conflicts
    assert write_caption(dest / f"{stem}.png", "photo of zkx, red").written
    assert read_caption(dest / f"{stem}.txt") == "photo of zkx, red"
    assert [i.path.name for i in scan_dataset(project.dataset_dir).items] == [f"{stem}.png"]
    atomic_write_text(tmp_path / ("y" * 255), "fits")  # the temporary name is shortened, not the file's
    assert (tmp_path / ("y" * 255)).read_text() == "fits"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(("code", "words"), [("ENOSPC", "the disk is full"), ("ENAMETOOLONG", "at most 255 bytes"),
                                             ("EROFS", "mounted read-only"), ("EACCES", "give yourself access")])
def test_file_system_errors_say_what_to_do(code, words):
    import errno

    from lorakit.cli.main import one_line

    text = one_line(OSError(getattr(errno, code), "Some reason", "/proj/output/x.safetensors"))
    assert text.startswith("Some reason: /proj/output/x.safetensors; ") and words in text
    _one_sentence(text)
