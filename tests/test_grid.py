"""X/Y/Z grids: axes, headers, PNG parameters, JSON, reuse and batching, A1111/ComfyUI exports, judging helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from lora_fakes import write_kohya_lora
from PIL import Image

from lorakit.errors import GenerateError, GridError
from lorakit.evaluate import handoff
from lorakit.evaluate.generate import Generator
from lorakit.evaluate.grid import make_grid, mixed_groups, render_cells
from lorakit.evaluate.grid_spec import Cell, build_spec, parse_axis, plan
from lorakit.evaluate.judge import lora_effect, nearest_training_images, side_by_side, trigger_words, verdict
from lorakit.models.loading import load_base
from lorakit.pictures import HIGHLIGHT
from lorakit.project import Project

FAST = dict(steps=2, cfg=4.0, sampler="Euler")


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_sd1):
    """A project with 4 training images, a config, and three checkpoints as another trainer would write them."""
    from conftest import write_images
    from lorakit.config.schema import TrainConfig

    project = Project.create(tmp_path_factory.mktemp("grid") / "proj")
    write_images(project.dataset_dir / "2_zkx", 4)
    cfg = TrainConfig()
    cfg.model.base_model = str(tiny_sd1)
    cfg.sampling.sample_prompts = ["zkx, thing --n blurry"]
    cfg.sampling.sample_steps, cfg.sampling.sample_cfg, cfg.sampling.sample_sampler = 2, 4.0, "euler"
    cfg.save(project.config_path)
    base = load_base(str(tiny_sd1))
    for i, name in enumerate(["zkx-000001", "zkx-000002", "zkx"]):
        write_kohya_lora(project.output_dir / f"{name}.safetensors", base, seed=10 + i, scale=0.2 + 0.1 * i)
    return project


@pytest.fixture(scope="module")
def gen(tiny_sd1):
    return Generator(str(tiny_sd1))


class Counting:
    """A Generator wrapper that counts the images it is asked for."""

    def __init__(self, gen: Generator) -> None:
        self.gen, self.images, self.calls, self.base = gen, 0, 0, gen.base

    def generate_batch(self, prompts, **kwargs):
        self.images += len(prompts)
        self.calls += 1
        return self.gen.generate_batch(prompts, **kwargs)


def test_axes_parse_and_teach(project):
    assert parse_axis("checkpoint", project).labels == ["zkx-000001", "zkx-000002", "zkx"]
    assert parse_axis("epoch=zkx-000002,zkx", project).labels == ["zkx-000002", "zkx"]
    assert parse_axis("strength=1, 0.5,0").values == [1.0, 0.5, 0.0]
    assert parse_axis("sampler=Euler a|dpm++_2m_karras").values == ["Euler a", "DPM++ 2M Karras"]
    assert parse_axis("cfg=4,7").values == [4.0, 7.0] and parse_axis("steps=2,3").values == [2, 3]
    with pytest.raises(GridError, match="axes are: checkpoint"):
        parse_axis("colour=red")
    with pytest.raises(GridError, match="have: zkx-000001"):
        parse_axis("checkpoint=zkx-000009", project)
    with pytest.raises(GridError, match="strength=1,0.75,0.5"):
        parse_axis("strength")
    spec = build_spec(project, "prompt=thing,shape", "seed=1,2")
    assert spec.prompt == "zkx, thing"  # the project's sample prompt, without its --n option
    cells = plan(spec, project)
    assert [c.prompt for c in cells[0][0]] == ["zkx, thing", "zkx, shape"]
    assert [row[0].seed for row in cells[0]] == [1, 2]
    assert cells[0][0][0].checkpoint.endswith("zkx.safetensors"), "no checkpoint axis: the last checkpoint"
    with pytest.raises(GridError, match="does not occur"):
        plan(build_spec(project, "prompt=cat,dog"), project)


def test_grid_files_headers_and_reuse(project, gen):
    spec = build_spec(project, "checkpoint", "strength=1,0", "seed=3,4", **FAST)
    counting = Counting(gen)
    result = make_grid(project, spec, generator=counting, stamp="t1")
    assert [p.name for p in result.paths] == ["t1-z0.png", "t1-z1.png"]
    assert result.images == 12 and result.generated == 8, "strength 0 is the base image, sampled once per seed"
    assert counting.images == 8
    assert result.batches == counting.calls == 4, "the two seeds of each LoRA setting share a batch"
    assert "images/s" in result.summary()
    png = Image.open(result.paths[1])
    w, h = png.size
    assert w > 3 * 192 and h > 2 * 192, "3 columns × 2 rows of 64 px cells enlarged ×3, plus headers"
    params = png.text["parameters"]
    assert params.startswith("zkx, thing <lora:zkx-000001:1>\n")
    assert "Steps: 2, Sampler: Euler, CFG scale: 4, Seed: 4, Size: 64x64" in params
    assert 'X Type: Prompt S/R, X Values: "<lora:zkx-000001:,<lora:zkx-000002:,<lora:zkx:"' in params
    record = json.loads(result.paths[1].with_suffix(".json").read_text())
    assert record["axes"]["z"]["values"] == [3, 4] and record["generated"] == 8
    assert record["cells"][1][0]["strength"] == 0.0
    top_left = np.asarray(result.cell_images[1][0][0])
    assert not np.array_equal(top_left, np.asarray(result.cell_images[0][0][0])), "Z changes the seed"
    assert np.array_equal(np.asarray(result.cell_images[0][1][0]), np.asarray(result.cell_images[0][1][2]))


def test_same_settings_same_pixels(project, gen):
    spec = build_spec(project, "checkpoint=zkx-000002,zkx", "strength=0.5", **FAST)
    one = make_grid(project, spec, generator=gen, stamp="same1")
    gen.generate("something else", seed=99, loras=[(project.checkpoints()[0], 1.0)], **FAST)
    two = make_grid(project, spec, generator=Generator(gen.base), stamp="same2")
    a, b = Image.open(one.paths[0]), Image.open(two.paths[0])
    assert np.array_equal(np.asarray(a), np.asarray(b))
    single = gen.generate("zkx, thing", seed=1, loras=[(project.checkpoints()[2], 0.5)], **FAST)
    # a cell drawn alone: the same picture; a batch of several rounds a few values differently on CPU (as A1111's
    # batch size does), so within one level of 255 on a handful of pixels
    diff = np.abs(np.asarray(single, float) - np.asarray(one.cell_images[0][0][1], float))
    assert diff.max() <= 1 and diff.mean() < 1e-3, "a cell is reproducible alone"


def test_cells_that_share_settings_are_batched(project, gen):
    spec = build_spec(project, "seed=1,2,3", "strength=1,0.5", **FAST)
    counting = Counting(gen)
    cells = [c for z in plan(spec, project) for row in z for c in row]
    rendered = render_cells(counting, cells, batch_size=2)
    assert rendered.generated == 6 and counting.calls == rendered.batches == 4  # 2 strengths × ceil(3 / 2)
    batched = render_cells(gen, cells, batch_size=8)
    assert batched.batches == 2
    for c in cells:  # batching does not change a cell's pixels beyond rounding
        diff = np.abs(np.asarray(batched.images[c.image_key()], np.int16) - np.asarray(rendered.images[c.image_key()]))
        assert diff.max() <= 2


def test_notes_and_highlight(project, gen):
    spec = build_spec(project, "checkpoint=zkx-000001,zkx", "strength=1,0.5", **FAST)
    result = make_grid(project, spec, generator=gen, stamp="notes",
                       annotate=lambda cell, img: f"s={cell.strength:g}", best=lambda r: (0, 1, 1))
    assert result.notes[0] == [["s=1", "s=1"], ["s=0.5", "s=0.5"]]
    assert json.loads(result.paths[0].with_suffix(".json").read_text())["notes"][1][0] == "s=0.5"
    grid = np.asarray(result.grids[0])
    frame = np.all(grid == HIGHLIGHT, axis=-1)
    ys, xs = np.nonzero(frame)
    assert xs.min() > grid.shape[1] // 2 and ys.min() > grid.shape[0] // 2, "the frame is on the bottom-right cell"


def _apply_sr(prompt: str, search: str, value: str) -> str:
    return prompt.replace(search, value)


def test_a1111_values_reproduce_every_cell(project, gen):
    spec = build_spec(project, "checkpoint", "strength=1,0.75,0", **FAST)
    cells = plan(spec, project)[0]
    text = handoff.a1111_xyz_text(spec, cells[0][0], (64, 64), "tiny")
    lines = dict(line.split(": ", 1) for line in text.splitlines() if line.startswith(("X ", "Y ")))
    prompt = text.split("parameters\n", 1)[1].splitlines()[0]
    xs, ys = lines["X values"].split(","), lines["Y values"].split(",")
    assert lines["X type"] == lines["Y type"] == "Prompt S/R"
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            for order in ((x, xs[0], y, ys[0]), (y, ys[0], x, xs[0])):  # A1111 may apply X or Y first
                p = _apply_sr(_apply_sr(prompt, order[1], order[0]), order[3], order[2])
                assert p == handoff.a1111_prompt(spec, cells[j][i])
                assert p.endswith(handoff.lora_tag(cells[j][i].checkpoint, cells[j][i].strength))


def test_comfyui_workflow_is_a_valid_graph(project, gen):
    spec = build_spec(project, "checkpoint=zkx-000001,zkx", "strength=1,0", **FAST)
    result = make_grid(project, spec, generator=gen, stamp="comfy")
    a1111, comfy = result.exports
    assert a1111.name == "comfy.a1111.txt" and "models/Lora/: zkx-000001.safetensors, zkx.safetensors" in a1111.read_text()
    graph = json.loads(comfy.read_text())
    kinds = [n["class_type"] for n in graph.values()]
    for needed in ("CheckpointLoaderSimple", "LoraLoader", "CLIPTextEncode", "KSampler", "VAEDecode", "SaveImage"):
        assert needed in kinds
    assert kinds.count("SaveImage") == 4 and kinds.count("LoraLoader") == 2  # strength 0 cells skip the LoRA
    for node in graph.values():  # every link points at an existing node's output
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph and isinstance(value[1], int)
    loras = [n["inputs"] for n in graph.values() if n["class_type"] == "LoraLoader"]
    assert {(x["lora_name"], x["strength_model"], x["strength_clip"]) for x in loras} == {
        ("zkx-000001.safetensors", 1.0, 1.0), ("zkx.safetensors", 1.0, 1.0)}
    ks = next(n["inputs"] for n in graph.values() if n["class_type"] == "KSampler")
    assert (ks["sampler_name"], ks["steps"], ks["seed"]) == ("euler", 2, 1)


def test_does_it_do_anything(project, gen, tiny_sd1, tmp_path):
    base = load_base(str(tiny_sd1))
    weak = write_kohya_lora(tmp_path / "weak.safetensors", base, seed=5, alpha=1e-6)
    last = project.checkpoints()[-1]
    grid = make_grid(project, build_spec(project, "checkpoint=zkx", "strength=1", prompt="thing", **FAST),
                     generator=gen, stamp="effect")
    counting = Counting(gen)
    effects = lora_effect(counting, [weak, last], "thing", seeds=(1, 2), triggers=["zkx"], cache=grid.rendered, **FAST)
    assert counting.images == 5, "2 base + 2 weak + 1 (seed 2 of the last checkpoint: seed 1 is the grid's cell)"
    assert [e.checkpoint for e in effects] == ["weak", "zkx"]
    assert effects[0].verdict == "no effect" and "trigger word (zkx)" in effects[0].advice
    assert effects[1].verdict == "ok" and effects[1].mean_abs_diff > 1.0
    assert verdict(120.0)[0] == "extreme" and verdict(10.0)[0] == "ok"


def test_nearest_training_image(project):
    paths = sorted(project.dataset_dir.glob("2_zkx/*.png"))
    with Image.open(paths[2]) as im:
        copy = im.convert("RGB").resize((32, 32))
    matches = nearest_training_images(copy, project, k=2)
    assert matches[0].path == paths[2] and matches[0].distance < matches[1].distance
    assert trigger_words(project) == ["zkx"]
    panel = side_by_side(copy, matches, size=96)
    assert panel.size == (3 * (96 + 8) + 8, 96 + 36)


def test_cli_grid(project, tiny_sd1, capsys):
    from lorakit.cli.main import main

    code = main(["grid", str(project.root), "--x", "checkpoint=zkx", "--y", "strength=1,0", "--steps", "2",
                 "--sampler", "Euler", "--base-model", str(tiny_sd1)])
    out = capsys.readouterr().out
    assert code == 0 and "images/s" in out
    assert any(line.endswith(".png") for line in out.splitlines())


def test_toy_scores_pick_the_best_checkpoint_and_strength():
    from lorakit.demo import toyworld as tw
    from lorakit.demo.judging import toy_annotator, toy_expected, toy_scorer
    from lorakit.evaluate.grid import GridResult
    from lorakit.evaluate.grid_spec import Cell
    from lorakit.evaluate.judge import best_cell, choices_table, pick_best, score_choices, suggestion

    prompt = "a yellow blicket on a green background"
    assert toy_expected(prompt) == {"shape": "cross", "color": "yellow", "background": "green"}
    assert toy_expected("a red circle on a white background") == {"shape": "circle", "color": "red",
                                                                 "background": "white"}
    assert toy_expected("a photo of zkx") is None and toy_expected("a red dog on a blue background") is None

    def cell(ckpt, strength):
        return Cell(prompt, "", 1, 4.0, 25, "Euler a", f"/o/{ckpt}.safetensors", strength)

    drawn = {("b-000001", 1.0): ("cross", "yellow", "green"), ("b", 1.0): ("cross", "red", "green"),
             ("b-000001", 0.5): ("circle", "yellow", "green"), ("b", 0.5): ("square", "yellow", "green")}
    cells = [[cell(c, s) for c in ("b-000001", "b")] for s in (1.0, 0.5)]
    images = [[tw.render(tw.scene_for(*drawn[(c, s)], seed=3), 32) for c in ("b-000001", "b")] for s in (1.0, 0.5)]
    result = GridResult(cells=[cells], cell_images=[images])
    notes = [[toy_annotator()(c, im) for c, im in zip(r, ir, strict=True)] for r, ir in zip(cells, images, strict=True)]
    assert notes == [["L:yes A:yes", "L:yes A:no"], ["L:no A:yes", "L:no A:yes"]]
    choices = score_choices(result, toy_scorer())
    assert score_choices(result, lambda cell, image: None) == [], "cells the scorer cannot judge are left out"
    best = pick_best(choices)
    assert (best.checkpoint, best.strength, best.likeness, best.adaptability) == ("b-000001", 1.0, 1.0, 1.0)
    assert best_cell(scorer=toy_scorer())(result) == (0, 0, 0)
    assert best_cell(choice=choices[3])(result) == (0, 1, 1), "frames the choice it is given (b at 0.5)"
    assert "<- best" in choices_table(choices, best).splitlines()[1]
    assert [(c.checkpoint, c.strength) for c in choices] == [("b-000001", 1.0), ("b-000001", 0.5), ("b", 1.0),
                                                             ("b", 0.5)], "training order, strongest first"
    assert suggestion(choices, best).startswith("Suggested: epoch 1 at strength 1: likeness 1.00, adaptability 1.00")
    assert toy_scorer().can_score(prompt) and not toy_scorer().can_score("a photo of zkx"), "what is worth drawing"
    unlearned = [c for c in choices if not c.likeness]
    assert pick_best(unlearned) is None and "train longer" in suggestion(unlearned, None)


def test_ties_go_to_the_cell_whose_neighbours_also_work_then_to_less_training():
    from lorakit.evaluate.judge import Choice, pick_best

    def grid(likeness: dict[tuple[str, float], float]) -> list[Choice]:
        return [Choice(c, s, lk, 1.0, 8) for (c, s), lk in likeness.items()]

    order = ["b-000001", "b-000002", "b-000003", "b"]
    # every checkpoint draws it at strength 1; at 0.75 the first two only sometimes: b-000001 at 1 is a lone cell
    likeness = {("b-000001", 1.0): 1.0, ("b-000001", 0.75): 0.5, ("b-000002", 1.0): 1.0, ("b-000002", 0.75): 0.75,
                ("b-000003", 1.0): 1.0, ("b-000003", 0.75): 1.0, ("b", 1.0): 1.0, ("b", 0.75): 1.0}
    best = pick_best(grid(likeness), order)
    assert (best.checkpoint, best.strength) == ("b-000003", 1.0), "the first tied cell with every neighbour at 100%"
    even = {k: 1.0 for k in likeness}
    best = pick_best(grid(even), order)
    assert (best.checkpoint, best.strength) == ("b-000001", 0.75), "all equal: less training, lower strength"
    likeness[("b-000002", 0.75)] = 0.9
    best = pick_best(grid(likeness), order)
    assert best.likeness == 1.0, "a higher score still beats better neighbours"


def test_prompt_sr_over_lora_tags_as_in_a1111(project, gen):
    spec = build_spec(project, "prompt=zkx-000001,zkx", prompt="zkx, thing <lora:zkx-000001:0.8>", **FAST)
    result = make_grid(project, spec, generator=gen, stamp="tags")
    row = result.cells[0][0]
    assert [c.checkpoint for c in row] == [None, None], "the tags choose the LoRA: no default checkpoint on top"
    alone = gen.generate("zkx, thing", seed=1, loras=[(project.output_dir / "zkx.safetensors", 0.8)], **FAST)
    assert np.array_equal(np.asarray(alone), np.asarray(result.cell_images[0][0][1]))
    graph = json.loads(result.exports[1].read_text())
    loras = {(n["inputs"]["lora_name"], n["inputs"]["strength_model"]) for n in graph.values()
             if n["class_type"] == "LoraLoader"}
    assert loras == {("zkx-000001.safetensors", 0.8), ("zkx.safetensors", 0.8)}
    texts = {n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode"}
    assert "zkx, thing" in texts and not any("<lora:" in t for t in texts)


class CountingMixed(Counting):
    """Counting, for a generator that mixes LoRA files and strengths in one batch."""

    def can_mix(self, path) -> bool:
        return self.gen.can_mix(path)

    def generate_mixed(self, prompts, **kwargs):
        self.images += len(prompts)
        self.calls += 1
        return self.gen.generate_mixed(prompts, **kwargs)


def test_checkpoints_and_strengths_share_a_batch_with_the_same_pixels(project, gen, tmp_path):
    """A checkpoints × strengths grid is drawn in few pipeline calls (each file at one strength per call, the base
    model anywhere), and every cell is the picture it is alone, within rounding; a LyCORIS file (weight patching)
    and a <lora:> tag keep their own batches."""
    from test_patching import _write

    spec = build_spec(project, "checkpoint=zkx-000001,zkx-000002,zkx", "strength=0,0.5,1", **FAST)
    cells = [c for z in plan(spec, project) for row in z for c in row]
    mixed = CountingMixed(gen)
    rendered = render_cells(mixed, cells, batch_size=8)
    assert rendered.generated == len({c.image_key() for c in cells}) == 7, "strength 0: one picture for all"
    assert mixed.calls == rendered.batches == 2, "base + 3 files at 0.5, then 3 files at 1 (7 calls one by one)"
    for c in cells:
        alone = gen.generate(c.prompt, seed=c.seed, loras=[(c.checkpoint, c.strength)] if c.strength else [],
                             **FAST)
        diff = np.abs(np.asarray(alone, float) - np.asarray(rendered.images[c.image_key()], float))
        assert diff.max() <= 2 and diff.mean() < 0.05, (c.checkpoint, c.strength)

    loha = tmp_path / "loha.safetensors"
    _write(gen.base, "loha", loha)
    halves = [c for c in cells if c.strength == 0.5][:2]
    odd = [*halves, Cell("zkx, thing", "", 1, 4.0, 2, "Euler", str(loha), 1.0),
           Cell("zkx, thing <lora:zkx:0.5>", "", 1, 4.0, 2, "Euler", None, 0.0)]
    loads = gen.loads
    batches, rest = mixed_groups(odd, 8, gen.can_mix)
    assert [len(b) for b in batches] == [2] and [c.checkpoint for c in rest] == [str(loha), None]
    assert gen.loads == loads, "grouping reads headers only: no checkpoint is loaded to be asked about"
    from safetensors.torch import load_file, save_file

    worded = tmp_path / "worded.safetensors"
    sd = load_file(str(project.checkpoints()[0]))
    sd["bundle_emb.qwy.string_to_param.*"] = torch.zeros(1, gen.base.pipe.text_encoder.get_input_embeddings().embedding_dim)
    save_file(sd, str(worded))
    assert not gen.can_mix(worded) and gen.can_mix(project.checkpoints()[0]), "a bundled word keeps its own batch"
    out = render_cells(CountingMixed(gen), odd, batch_size=8, lora_dirs=[project.output_dir])
    assert out.generated == 4 and out.batches == 3


def test_a_mixed_batch_refuses_what_it_cannot_mix(project, gen):
    ck = project.checkpoints()
    with pytest.raises(GenerateError, match="two strengths"):
        gen.generate_mixed(["a", "b"], seeds=[1, 2], loras=[(ck[0], 1.0), (ck[0], 0.5)], **FAST)
    with pytest.raises(GenerateError, match="tags"):
        gen.generate_mixed(["a <lora:zkx:1>"], seeds=[1], loras=[None], **FAST)
    with pytest.raises(GenerateError, match="one seed and one LoRA"):
        gen.generate_mixed(["a", "b"], seeds=[1], loras=[None, None], **FAST)
    base = gen.generate_mixed(["zkx, thing"], seeds=[3], loras=[None], **FAST)[0]
    assert np.array_equal(np.asarray(base), np.asarray(gen.generate("zkx, thing", seed=3, **FAST)))


def test_sdxl_cells_mix_in_a_batch_like_sd1(tiny_sdxl, tmp_path):
    """SDXL's two text encoders and added conditioning take the mixed batch too: each image as drawn alone."""
    base = load_base(str(tiny_sdxl))
    files = []
    for i in range(2):
        files.append(tmp_path / f"x{i}.safetensors")
        write_kohya_lora(files[-1], base, seed=20 + i, scale=0.3)
    gen = Generator(base)
    loras = [(files[0], 1.0), (files[1], 0.5), None]
    mixed = gen.generate_mixed(["zkx, thing"] * 3, seeds=[1, 2, 3], loras=loras, **FAST)
    for (lora, image), seed in zip(zip(loras, mixed, strict=True), (1, 2, 3), strict=True):
        alone = gen.generate("zkx, thing", seed=seed, loras=[lora] if lora else [], **FAST)
        diff = np.abs(np.asarray(alone, float) - np.asarray(image, float))
        assert diff.max() <= 2 and diff.mean() < 0.05, lora
    assert not np.array_equal(np.asarray(mixed[0]), np.asarray(mixed[2])), "the LoRA changes the picture"


def test_stacked_lora_rows_match_peft_mixed_batches(project, gen, monkeypatch):
    """The stacked path (every file's down- and up-projections in one pass per layer) draws what peft's own mixed
    batch draws, within rounding, and is the path a plain LoRA takes; a layer that does not stack falls back."""
    from lorakit.evaluate import mixed_batch

    ck = project.checkpoints()
    loras = [None, (ck[0], 1.0), (ck[1], 0.5), (ck[-1], 0.75)]
    prompts, seeds = ["zkx, thing"] * 4, [1, 2, 3, 4]
    entered = []
    real_enter = mixed_batch.StackedRows.__enter__
    monkeypatch.setattr(mixed_batch.StackedRows, "__enter__", lambda self: entered.append(self) or real_enter(self))
    stacked = gen.generate_mixed(prompts, seeds=seeds, loras=loras, **FAST)
    assert len(entered) == 1 and entered[0].layers, "a plain LoRA file stacks"
    assert not entered[0]._hooks, "the hooks are gone after the call"
    monkeypatch.setattr(mixed_batch.StackedRows, "fits", lambda self: False)
    peft_way = gen.generate_mixed(prompts, seeds=seeds, loras=loras, **FAST)
    assert len(entered) == 1, "a batch that does not stack takes peft's path"
    for a, b in zip(stacked, peft_way, strict=True):
        diff = np.abs(np.asarray(a, float) - np.asarray(b, float))
        assert diff.max() <= 2 and diff.mean() < 0.05
    assert not np.array_equal(np.asarray(stacked[1]), np.asarray(stacked[0])), "the LoRA changes the picture"


def test_a_layer_with_a_bias_or_dora_does_not_stack():
    from peft import LoraConfig, get_peft_model

    from lorakit.evaluate.mixed_batch import StackedRows

    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Conv2d(8, 8, 3, padding=1))
    plain = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8)), LoraConfig(r=2, target_modules=["0"]))
    assert StackedRows([plain], ["default"]).fits()
    dora = get_peft_model(net, LoraConfig(r=2, target_modules=["0", "1"], use_dora=True))
    assert not StackedRows([dora], ["default", "__base__"]).fits()
    biased = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8)),
                            LoraConfig(r=2, target_modules=["0"], lora_bias=True))
    assert not StackedRows([biased], ["default"]).fits()
