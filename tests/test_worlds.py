"""The two toy worlds: the demo's, and the second one that lorakit's recipe was never tuned on."""

from __future__ import annotations

from collections import Counter

import pytest

from lorakit.demo import toyworld as tw
from lorakit.demo.worlds import DEMO, SECOND, WORLDS


def test_the_demo_world_is_the_demo_dataset_as_before():
    assert [(s.color, s.background, s.cx) for s in DEMO.concept_scenes()] == [
        (s.color, s.background, s.cx) for s in tw.concept_scenes(20)]
    assert DEMO.reg_scenes() == tw.reg_scenes(48, tw.DemoSpec().seed + 1000)
    assert DEMO.concept_eval_set(12, seen=False) == tw.concept_eval_set(12, seen=False)
    assert DEMO.base_eval_set(30) == tw.base_eval_set(30)


@pytest.mark.parametrize("world", list(WORLDS.values()), ids=list(WORLDS))
def test_each_concept_is_new_to_its_base_and_apart_from_its_colours(world):
    assert world.concept_shape not in world.base_shapes
    assert world.trigger not in world.base_shapes and world.trigger in tw.SPARE_WORDS
    pairs = world.concept_pairs
    assert len(set(pairs)) == len(pairs) and all(c != b for c, b in pairs)
    # every colour at least twice as the shape's colour and twice as the background: the shape, not a colour, is
    # what all the concept images share
    assert min(Counter(c for c, _ in pairs).values()) >= 2 and set(c for c, _ in pairs) == set(tw.COLORS)
    assert min(Counter(b for _, b in pairs).values()) >= 2 and set(b for _, b in pairs) == set(tw.COLORS)
    unseen = world.concept_eval_set(40, seen=False)
    assert unseen and not {(e.color, e.background) for e in unseen} & set(pairs)


def test_the_second_world_differs_in_what_a_recipe_could_be_tuned_to():
    assert SECOND.base_dir != DEMO.base_dir and SECOND.concept_shape != DEMO.concept_shape
    assert SECOND.trigger != DEMO.trigger and SECOND.n_concept != DEMO.n_concept and SECOND.n_reg != DEMO.n_reg
    assert (SECOND.unet_channels, SECOND.text_width) != (DEMO.unet_channels, DEMO.text_width)
    assert set(SECOND.concept_pairs) != set(DEMO.concept_pairs)


def test_a_world_writes_its_dataset_in_kohya_layout(tmp_path):
    concept, reg = SECOND.write_dataset(tmp_path / "dataset", tmp_path / "dataset" / "reg")
    assert concept.name == f"{SECOND.concept_repeats}_zorb" and reg.name == "1_shape"
    images = sorted(concept.glob("*.png"))
    assert len(images) == SECOND.n_concept and len(list(reg.glob("*.png"))) == SECOND.n_reg
    assert images[0].with_suffix(".txt").read_text().strip() == SECOND.concept_scenes()[0].caption("zorb")
    assert "zorb" in images[0].with_suffix(".txt").read_text()


def test_the_second_base_loads_offline_and_draws_its_shapes_but_no_crescent():
    import torch
    from diffusers import StableDiffusionPipeline

    from lorakit.demo.scorer import score_batch

    torch.set_num_threads(1)
    assert not list(SECOND.base_dir.rglob("*.bin")), "weights must be safetensors"
    pipe = StableDiffusionPipeline.from_pretrained(SECOND.base_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.block_out_channels == list(SECOND.unet_channels)
    assert pipe.text_encoder.config.hidden_size == SECOND.text_width
    asked = [tw.Expected(*t) for t in tw.all_triples(SECOND.base_shapes)[5::25]]  # every shape, a few pairs each
    trigger = SECOND.concept_eval_set(6)
    images = pipe([e.prompt() for e in asked] + [e.prompt(SECOND.trigger) for e in trigger], num_inference_steps=20,
                  guidance_scale=4.0, generator=[torch.Generator().manual_seed(i) for i in range(len(asked) + 6)]).images
    result = score_batch(images[: len(asked)], asked)
    assert {e.shape for e in asked} == set(SECOND.base_shapes)
    assert result.correct >= 0.8, [i for i in result.items if not i["correct"]]  # 0.95 over all 294 triples
    assert score_batch(images[len(asked):], trigger).likeness == 0, "the base has never seen the crescent"
