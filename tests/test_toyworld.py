"""The toy world: deterministic scenes, captions, the held-out split and the kohya-layout demo dataset."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lorakit.dataset.scan import parse_folder_name, scan_dataset
from lorakit.demo import toyworld as tw
from lorakit.demo.recipe import demo_config
from lorakit.models.tiny import make_tokenizer


def test_same_seed_same_scene_and_pixels():
    a, b = tw.scene_from_seed(123), tw.scene_from_seed(123)
    assert a == b
    assert np.array_equal(tw.render_array(a, 64), tw.render_array(b, 64))
    assert tw.scene_from_seed(124) != a


def test_caption_names_colour_shape_background_and_trigger():
    s = tw.Scene("circle", "red", "blue", 0.5, 0.5, 0.5)
    assert s.caption() == "a red circle on a blue background"
    assert s.caption(tw.TRIGGER) == f"a red {tw.TRIGGER} on a blue background"


def test_render_is_antialiased_and_coloured_as_captioned():
    s = tw.Scene("circle", "yellow", "black", 0.5, 0.5, 0.5, seed=3)
    a = tw.render_array(s, 32).astype(int)
    centre, corner = a[16, 16], a[0, 0]
    assert np.abs(centre - tw.PALETTE["yellow"]).max() <= tw.COLOR_JITTER + 1
    assert np.abs(corner - tw.PALETTE["black"]).max() <= tw.COLOR_JITTER + 1
    edge_values = {tuple(p) for p in a.reshape(-1, 3)}
    assert len(edge_values) > 2  # partial coverage at the edges: anti-aliased, not two flat colours


@pytest.mark.parametrize("shape", tw.ALL_SHAPES)
def test_shape_stays_inside_with_margin(shape):
    for seed in range(50):
        s = tw.scene_from_seed(seed, shapes=(shape,), held_out=None)
        cov = tw.coverage(s.shape, 32, s.cx, s.cy, s.size)
        assert cov[0].max() == 0 and cov[-1].max() == 0 and cov[:, 0].max() == 0 and cov[:, -1].max() == 0


def test_extra_shapes_are_spare_words_distinct_from_the_trigger_and_the_concept():
    assert set(tw.EXTRA_SHAPES) <= set(tw.SPARE_WORDS) - {tw.TRIGGER}
    assert tw.CONCEPT_SHAPE not in tw.EXTRA_SHAPES
    tok = make_tokenizer(tw.tokenizer_words())
    assert all(len(tok.tokenize(w)) == 1 for w in tw.EXTRA_SHAPES)
    t = (np.arange(64) + 0.5) / 64
    x, y = np.meshgrid(t, t)
    masks = {s: tw.shape_mask(s, x, y, 0.5, 0.5, 0.8) for s in tw.ALL_SHAPES}
    for shape in tw.EXTRA_SHAPES:  # each is its own shape (the scorer tells them apart: test_scorer)
        m = masks[shape]
        assert 0.1 < m.mean() < 0.6
        assert all((m & o).sum() / (m | o).sum() < 0.75 for s, o in masks.items() if s != shape), shape


def test_held_out_triples_exist_and_are_avoided():
    triples = tw.all_triples()
    held = [t for t in triples if tw.is_held_out(*t)]
    assert 0.08 < len(held) / len(triples) < 0.2
    for seed in range(300):
        s = tw.scene_from_seed(seed)
        assert not tw.is_held_out(s.shape, s.color, s.background)
        assert s.color != s.background and s.shape in tw.BASE_SHAPES


def test_tokenizer_keeps_caption_words_and_trigger_whole():
    tok = make_tokenizer(tw.tokenizer_words())
    ids = tok(f"a purple {tw.TRIGGER} on a white background").input_ids
    assert len(ids) == 2 + 7  # BOS + one token per word + EOS


def test_demo_dataset_in_kohya_layout(tmp_path):
    spec = tw.DemoSpec()
    concept, reg = tw.write_demo(tmp_path, spec)
    assert parse_folder_name(concept.name) == (spec.concept_repeats, tw.TRIGGER)
    assert parse_folder_name(reg.name) == (spec.reg_repeats, "shape")
    scan = scan_dataset(tmp_path / "dataset")
    assert len(scan.items) == spec.n_concept and 10 <= spec.n_concept <= 20
    assert all(i.size[0] >= 64 and i.caption.startswith("a ") and tw.TRIGGER in i.caption for i in scan.items)
    regs = scan_dataset(tmp_path / "reg", is_reg=True).items
    assert len(regs) == spec.n_reg and {r.caption.split()[2] for r in regs} == set(tw.BASE_SHAPES)
    # every evaluation pair outside CONCEPT_PAIRS is really absent from the concept images
    pairs = {tuple(i.caption.split()[1::4][:2]) for i in scan.items}
    assert pairs == set(tw.CONCEPT_PAIRS)
    assert all((e.color, e.background) not in pairs for e in tw.concept_eval_set(20, seen=False))


def test_demo_data_in_repo_matches_the_generator(tmp_path):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "data" / "demo"
    tw.write_demo(tmp_path, tw.DemoSpec())
    for sub in ("dataset", "reg"):
        for path in sorted((tmp_path / sub).rglob("*.*")):
            twin = shipped / path.relative_to(tmp_path)
            assert twin.read_bytes() == path.read_bytes(), f"{twin} differs: rerun scripts/make_demo_data.py"


def test_demo_config_is_a_valid_locon_recipe():
    cfg = demo_config()
    assert cfg.network.type == "locon" and cfg.network.conv_rank > 0
    assert cfg.optimizer.text_encoder_lr > 0 and cfg.data.reg_dir
    assert cfg.data.resolution == tw.NATIVE_SIZE


def test_train_toy_base_reads_extra_shapes_and_names_the_known_ones(monkeypatch):
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_toy_base.py"
    spec = importlib.util.spec_from_file_location("train_toy_base", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_toy_base", mod)  # dataclasses look their module up there
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repo first on sys.path
    spec.loader.exec_module(mod)
    assert mod._extra_shapes("all") == list(tw.EXTRA_SHAPES)
    assert mod._extra_shapes(" dax, kiki ") == ["dax", "kiki"]
    with pytest.raises(argparse.ArgumentTypeError, match="cross.*known: dax \\(ring\\)"):
        mod._extra_shapes("dax,cross")
    figures = {"extra_shapes": {"dax": "ring"}}
    mod._record_extra_shapes(figures, ["fep"])
    assert figures["extra_shapes"] == {"dax": "ring", "fep": "crescent"}
