"""Automatic captioners through the real loading code, on tiny random models of the real classes, offline."""

from __future__ import annotations

import pytest
from dataset_corpus import pattern

from lorakit.dataset.captioners import (
    BlipSettings,
    TaggerSettings,
    build_tiny_blip,
    build_tiny_tagger,
    caption_folder,
    load_captioner,
    model_source,
)
from lorakit.dataset.captions import apply_changes

TAGS = ["red_hair", "solo", "smile", "general", "cat", "dog"]


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return build_tiny_blip(tmp_path_factory.mktemp("m") / "blip", words=["a", "photo", "of", "red", "blue", "cat", "dog"])


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    return build_tiny_tagger(tmp_path_factory.mktemp("m") / "tagger", tags=TAGS)


@pytest.fixture()
def folder(tmp_path):
    ds = tmp_path / "dataset"
    f = ds / "2_zkx"
    f.mkdir(parents=True)
    for i in range(5):
        pattern((48 + 8 * i, 40), seed=i).save(f / f"{i}.png")
    (f / "0.txt").write_text("my own caption", encoding="utf-8")
    return ds


def test_blip_captions_missing_ones_with_prefix_and_never_touches_existing(blip_dir, folder):
    blip = load_captioner(BlipSettings(model=str(blip_dir), prefix="photo of zkx", num_beams=2, min_length=3,
                                       max_length=8, batch_size=2))
    assert blip.model.__class__.__name__ == "BlipForConditionalGeneration"
    changes = caption_folder(blip, folder, progress=False)
    assert sorted(c.image.name for c in changes) == ["1.png", "2.png", "3.png", "4.png"]
    vocab = {"a", "photo", "of", "red", "blue", "cat", "dog", "zkx", "photo of zkx"}
    for c in changes:
        assert c.after.startswith("photo of zkx, ") and c.after != "photo of zkx, "
        assert set(c.after.replace(",", " ").split()) <= vocab
    apply_changes(changes, overwrite=False)
    assert (folder / "2_zkx" / "0.txt").read_text(encoding="utf-8") == "my own caption"
    assert (folder / "2_zkx" / "3.txt").read_text(encoding="utf-8").startswith("photo of zkx, ")


def test_blip_is_deterministic_and_batching_does_not_change_captions(blip_dir, folder):
    one = load_captioner(BlipSettings(model=str(blip_dir), num_beams=1, max_length=8, batch_size=1))
    four = load_captioner(BlipSettings(model=str(blip_dir), num_beams=1, max_length=8, batch_size=4))
    a = [c.after for c in caption_folder(one, folder, only_missing=False, progress=False)]
    b = [c.after for c in caption_folder(four, folder, only_missing=False, progress=False)]
    assert a == b and len(a) == 5


def test_tagger_threshold_and_excluded_tags(tagger_dir, folder):
    everything = load_captioner(TaggerSettings(model=str(tagger_dir), threshold=0.0))
    tags = [c.after.split(", ") for c in caption_folder(everything, folder, only_missing=False, progress=False)]
    assert all(sorted(t) == sorted(["red hair", "solo", "smile", "cat", "dog"]) for t in tags)  # 'general' excluded
    nothing = load_captioner(TaggerSettings(model=str(tagger_dir), threshold=1.01, prefix="zkx"))
    assert {c.after for c in caption_folder(nothing, folder, only_missing=False, progress=False)} == {"zkx"}
    two = load_captioner(TaggerSettings(model=str(tagger_dir), threshold=0.0, max_tags=2, exclude=[],
                                        underscores_to_spaces=False))
    probs = two.scores([pattern(seed=0)])[0]
    top = [TAGS[i] for i in probs.argsort(descending=True)[:2]]
    assert caption_folder(two, folder, only_missing=False, progress=False)[0].after == ", ".join(top)


def test_a_classifier_that_is_not_multi_label_is_refused(tmp_path):
    from transformers import ViTForImageClassification

    path = build_tiny_tagger(tmp_path / "t", tags=["a", "b"])
    model = ViTForImageClassification.from_pretrained(path)
    model.config.problem_type = "single_label_classification"
    model.save_pretrained(path)
    with pytest.raises(ValueError, match="not a tagger"):
        load_captioner(TaggerSettings(model=str(path)))


def test_model_sources_local_hub_and_missing(tmp_path, blip_dir):
    assert model_source(str(blip_dir), allow_download=False) == (str(blip_dir), True)
    assert model_source("Salesforce/blip-image-captioning-large", allow_download=True) == (
        "Salesforce/blip-image-captioning-large", False)
    with pytest.raises(FileNotFoundError, match="No model folder"):
        model_source(str(tmp_path / "nowhere"), allow_download=True)
    with pytest.raises(ValueError, match="No captioning model"):
        model_source("", allow_download=False)
    with pytest.raises(FileNotFoundError, match="allow_download"):
        load_captioner(BlipSettings(model="someone/not-cached-captioner"))


TOY_CODE = '''
from transformers import ViTConfig, ViTForImageClassification


class ToyTaggerConfig(ViTConfig):
    model_type = "lorakit_toy_tagger"


class ToyTagger(ViTForImageClassification):
    config_class = ToyTaggerConfig
'''


def test_trust_remote_code_reaches_transformers_and_its_absence_is_explained(tmp_path, monkeypatch):
    import json

    import transformers.dynamic_module_utils as dynamic

    from lorakit.errors import ModelError

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # not the user's cache
    path = build_tiny_tagger(tmp_path / "custom", tags=["a", "b"])
    (path / "toy_tagger.py").write_text(TOY_CODE, encoding="utf-8")
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="lorakit_toy_tagger", auto_map={"AutoConfig": "toy_tagger.ToyTaggerConfig",
                                                             "AutoModelForImageClassification": "toy_tagger.ToyTagger"})
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="--trust-remote-code"):
        load_captioner(TaggerSettings(model=str(path)))
    tagger = load_captioner(TaggerSettings(model=str(path), trust_remote_code=True))
    assert type(tagger.model).__name__ == "ToyTagger" and tagger.labels == ["a", "b"]


def test_blip_passes_trust_remote_code_to_both_loaders(blip_dir, monkeypatch):
    import lorakit.dataset.captioners as captioners

    seen, real = [], captioners._load
    monkeypatch.setattr(captioners, "_load", lambda cls, *a, **kw: seen.append((cls.__name__, kw)) or real(cls, *a, **kw))
    load_captioner(BlipSettings(model=str(blip_dir), trust_remote_code=True))
    assert [(name, kw["trust_remote_code"]) for name, kw in seen] == [("AutoProcessor", True),
                                                                     ("AutoModelForImageTextToText", True)]
    seen.clear()
    load_captioner(BlipSettings(model=str(blip_dir)))
    assert {kw["trust_remote_code"] for _, kw in seen} == {False}
