"""WD14 ONNX taggers (model.onnx + selected_tags.csv) through onnxruntime, on a tiny model whose tags follow the
image's mean colour (lorakit.dataset.wd14.TINY_TAGS), offline."""

from __future__ import annotations

import builtins
import csv

import numpy as np
import pytest
from PIL import Image

from lorakit.cli.main import main
from lorakit.dataset.captioners import caption_folder, load_captioner
from lorakit.dataset.captions import apply_changes
from lorakit.dataset.wd14 import Wd14Settings, build_tiny_wd14, preprocess
from lorakit.errors import ConfigError, LorakitError, ModelError

RED, DARK_RED, BLUE = (255, 0, 0), (128, 0, 0), (0, 0, 255)
HOOD = "little red riding hood (grimm)"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_tiny_wd14(tmp_path_factory.mktemp("m") / "wd14")


def tag(model, *images, **settings) -> list[list[str]]:
    tagger = load_captioner(Wd14Settings(model=str(model), **settings))
    return [c.split(", ") if c else [] for c in tagger.caption([Image.new("RGB", (40, 40), c) for c in images],
                                                                  progress=False)]


def test_preprocessing_pads_on_white_resizes_and_feeds_bgr():
    arr = preprocess(Image.new("RGB", (10, 40), RED), 32)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.float32
    assert arr[16, 0].tolist() == [255.0, 255.0, 255.0]  # white padding left and right
    assert arr[16, 16].tolist() == [0.0, 0.0, 255.0]  # red, in BGR order


def test_a_red_image_gets_the_red_tag_and_a_blue_one_the_blue_tag(model):
    red, blue = tag(model, RED, BLUE)
    assert "red theme" in red and "blue theme" not in red
    assert blue == ["blue theme"]  # no rating tag by default
    thin = load_captioner(Wd14Settings(model=str(model))).caption([Image.new("RGB", (10, 40), RED)], progress=False)
    assert "white background" in thin[0]  # the padding is white


def test_thresholds_and_the_character_threshold(model):
    assert tag(model, DARK_RED) == [["red theme"]]  # the character scores 0.73: under 0.85
    assert tag(model, DARK_RED, character_threshold=0.7) == [["red theme", HOOD]]
    assert tag(model, RED) == [["red theme", HOOD]]  # 0.95: a character tag above its threshold
    assert tag(model, DARK_RED, general_threshold=0.9) == [[]]  # red theme scores 0.88
    # a character tag never passes on the general threshold alone
    assert HOOD not in tag(model, DARK_RED, general_threshold=0.05, character_threshold=0.9)[0]


def test_undesired_always_first_underscores_ratings_and_separator(model):
    assert tag(model, RED, undesired_tags=["red_theme"]) == [[HOOD]]
    assert tag(model, RED, always_first_tags=["little red riding hood (grimm)", "blue theme"]) == [[HOOD, "red theme"]]
    assert tag(model, RED, underscores_to_spaces=False) == [["red_theme", "little_red_riding_hood_(grimm)"]]
    assert tag(model, BLUE, rating_tags=True) == [["general", "blue theme"]]
    assert tag(model, BLUE, rating_tags=True, undesired_tags=["general"]) == [["blue theme"]]
    tagger = load_captioner(Wd14Settings(model=str(model), tag_separator=",", prefix="photo of zkx"))
    assert tagger.caption([Image.new("RGB", (8, 8), RED)], progress=False) == [f"photo of zkx,red theme,{HOOD}"]
    with pytest.raises(ConfigError, match="comma"):
        Wd14Settings(model=str(model), tag_separator=" ")


def test_caption_folder_never_touches_existing_captions(model, tmp_path):
    folder = tmp_path / "ds" / "1_zkx"
    folder.mkdir(parents=True)
    for i, colour in enumerate((RED, BLUE, RED)):
        Image.new("RGB", (24, 24), colour).save(folder / f"{i}.png")
    (folder / "0.txt").write_text("mine", encoding="utf-8")
    tagger = load_captioner(Wd14Settings(model=str(model), prefix="zkx", batch_size=1))
    changes = caption_folder(tagger, tmp_path / "ds", progress=False)
    assert [(c.image.name, c.after) for c in changes] == [("1.png", "zkx, blue theme"), ("2.png", f"zkx, red theme, {HOOD}")]
    apply_changes(changes, overwrite=False)
    assert (folder / "0.txt").read_text(encoding="utf-8") == "mine"


def test_a_model_with_a_fixed_batch_size_and_the_onnx_file_as_path(tmp_path):
    path = build_tiny_wd14(tmp_path / "b1", batch=1)
    tagger = load_captioner(Wd14Settings(model=str(path / "model.onnx")))
    out = tagger.caption([Image.new("RGB", (8, 8), c) for c in (RED, BLUE, DARK_RED)], progress=False)
    assert out == [f"red theme, {HOOD}", "blue theme", "red theme"]


def test_clear_errors_before_any_work(model, tmp_path, monkeypatch):
    short = build_tiny_wd14(tmp_path / "short")
    rows = list(csv.reader((short / "selected_tags.csv").open(encoding="utf-8")))
    with open(short / "selected_tags.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows[:-1])
    with pytest.raises(ModelError, match="lists 8 tags but model.onnx scores 9"):
        load_captioner(Wd14Settings(model=str(short)))
    (short / "selected_tags.csv").unlink()
    with pytest.raises(ModelError, match="No selected_tags.csv"):
        load_captioner(Wd14Settings(model=str(short)))
    with pytest.raises(FileNotFoundError, match="No model folder"):
        load_captioner(Wd14Settings(model=str(tmp_path / "nowhere")))
    with pytest.raises(ModelError, match="--download"):
        load_captioner(Wd14Settings(model="SmilingWolf/not-in-the-cache"))

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(LorakitError, match=r'pip install "lorakit\[wd14\]"'):
        load_captioner(Wd14Settings(model=str(model)))


def test_cli_caption_with_wd14(model, tmp_path, capsys):
    folder = tmp_path / "ds" / "1_zkx"
    folder.mkdir(parents=True)
    for i, colour in enumerate((RED, BLUE)):
        Image.new("RGB", (24, 24), colour).save(folder / f"{i}.png")
    (folder / "1.txt").write_text("mine", encoding="utf-8")
    args = ["caption", str(tmp_path / "ds"), "--captioner", "wd14", "--model", str(model), "--general-threshold",
            "0.35", "--character-threshold", "0.9", "--undesired-tags", "white background",
            "--always-first", "red theme", "--keep-underscores"]
    assert main(args) == 0
    assert "1 captions written" in capsys.readouterr().out
    assert (folder / "0.txt").read_text(encoding="utf-8").strip() == "red_theme, little_red_riding_hood_(grimm)"
    assert (folder / "1.txt").read_text(encoding="utf-8") == "mine"
    assert main(["caption", str(tmp_path / "ds"), "--captioner", "wd14", "--model", str(model),
                 "--threshold", "0.5"]) == 2
    assert "--threshold: an option of --captioner tagger" in capsys.readouterr().err
    assert main(["caption", str(tmp_path / "ds"), "--captioner", "wd14", "--model", str(model),
                 "--trust-remote-code"]) == 2
    assert "carries no Python code" in capsys.readouterr().err
