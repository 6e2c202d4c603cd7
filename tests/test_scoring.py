"""Generic scores on tiny random CLIP / DINOv2 models: embeddings, likeness, adaptability, copy check, adaptability
prompts, the pick sentence, the frame, and no images drawn for prompts that cannot be scored."""

from __future__ import annotations

import numpy as np
import pytest
from lora_fakes import write_kohya_lora
from PIL import Image

from conftest import write_images
from lorakit.errors import DatasetError, ModelError
from lorakit.evaluate import judge
from lorakit.evaluate.generate import Generator
from lorakit.evaluate.grid import make_grid
from lorakit.evaluate.grid_spec import Cell, build_spec, plan
from lorakit.evaluate.scoring import (
    EmbeddingScorer,
    ScoringModels,
    adaptability_prompts,
    build_tiny_clip,
    build_tiny_dinov2,
    edit_caption,
    edits_text,
    load_encoders,
    parse_edits,
)
from lorakit.models.loading import load_base
from lorakit.pictures import HIGHLIGHT
from lorakit.project import Project

FAST = dict(steps=2, cfg=4.0, sampler="Euler")
WORDS = ("photo", "of", "zkx", "thing", "red", "black", "hair", "raincoat", "pencil", "sketch", "anime", "style")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    clip, dino = build_tiny_clip(root / "clip", WORDS), build_tiny_dinov2(root / "dino")
    return load_encoders(ScoringModels(clip=str(clip), image=str(dino)))  # offline: local folders only


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_sd1):
    project = Project.create(tmp_path_factory.mktemp("scoring") / "proj")
    write_images(project.dataset_dir / "2_zkx", 4, caption="photo of zkx, black hair, white shirt")
    base = load_base(str(tiny_sd1))
    for i, name in enumerate(["zkx-000001", "zkx"]):
        write_kohya_lora(project.output_dir / f"{name}.safetensors", base, seed=10 + i, scale=0.2 + 0.1 * i)
    return project


class Counting:
    """A Generator wrapper that counts the images it is asked for."""

    def __init__(self, gen: Generator) -> None:
        self.gen, self.images, self.base = gen, 0, gen.base

    def generate_batch(self, prompts, **kwargs):
        self.images += len(prompts)
        return self.gen.generate_batch(prompts, **kwargs)


def cell(prompt: str = "photo of zkx", ckpt: str | None = "/o/zkx.safetensors", strength: float = 1.0, seed: int = 1):
    return Cell(prompt, "", seed, 4.0, 2, "Euler", ckpt, strength)


def test_embeddings_are_normalised_deterministic_and_batch_independent(encoders, project):
    images = [Image.open(p).convert("RGB") for p in judge.training_images(project)]
    a, b = encoders.images(images), encoders.images(images)
    assert a.shape == (4, 32) and torch_allclose(a.norm(dim=-1), 1.0)
    assert torch_allclose(a, b), "the same images give the same embeddings"
    assert torch_allclose(encoders.images(images[:1])[0], a[0], atol=1e-5), "batching does not change them"
    assert encoders.clip_images(images).shape == (4, 16) and encoders.texts(["photo of zkx", "red hair"]).shape == (2, 16)


def torch_allclose(x, y, atol: float = 1e-6) -> bool:
    import torch

    return bool(torch.allclose(x, torch.as_tensor(y, dtype=x.dtype).expand_as(x), atol=atol))


def test_copy_check_likeness_and_adaptability_follow_their_definitions(encoders, project):
    paths = judge.training_images(project)
    edits = [e for e in adaptability_prompts(project) if e.attribute == "colour"]
    scorer = EmbeddingScorer(encoders, paths, edits, top_k=2)
    copied = Image.open(paths[2]).convert("RGB")
    check = scorer.copy_check(copied)
    assert check.nearest == paths[2] and check.similarity == pytest.approx(1.0, abs=1e-4) and check.copy
    s = scorer(cell(), copied)
    assert s["nearest"] == paths[2].name and s["copy"] and s["adaptability"] is None, "not an edited prompt"
    # likeness: mean of the top-2 similarities over the training images' own leave-one-out mean, clipped to 0..1
    ref = scorer.reference
    emb = encoders.images([copied])[0]
    sims = (ref @ emb).sort(descending=True).values
    loo = ref @ ref.T
    loo.fill_diagonal_(-2.0)
    self_sim = float(loo.sort(dim=1, descending=True).values[:, :2].mean())
    assert s["likeness"] == pytest.approx(min(1.0, max(0.0, float(sims[:2].mean()) / self_sim)), abs=1e-3)
    noise = Image.fromarray(np.full((64, 64, 3), 128, np.uint8))
    edited = scorer(cell(edits[0].prompt, seed=5), noise)
    e = encoders.clip_images([noise])[0]
    follows = float(e @ encoders.texts([edits[0].prompt])[0] > e @ encoders.texts([edits[0].original])[0])
    assert edited["adaptability"] == follows and edited["attribute"] == "colour"


def test_adaptability_prompts_change_one_attribute_from_the_users_captions(project):
    edits = {e.attribute: e for e in adaptability_prompts(project)}
    assert list(edits) == ["colour", "clothing", "background", "style", "medium"]
    assert all(e.original == "photo of zkx, black hair, white shirt 0" for e in edits.values())
    assert edits["colour"].prompt == "photo of zkx, red hair, white shirt 0"
    assert edits["clothing"].prompt == "photo of zkx, black hair, white raincoat 0"
    assert edits["background"].prompt.endswith(", in front of snowy mountains")
    assert edits["style"].prompt.endswith(", anime style")
    assert edits["medium"].prompt == "pencil sketch of zkx, black hair, white shirt 0"
    toy = {e.attribute: e.prompt for e in adaptability_prompts(["a red blicket on a green background"], ["blicket"])}
    assert toy["colour"] == "a blue blicket on a green background", "a colour absent from the caption"
    assert toy["background"] == "a red blicket on a blue background"
    assert edit_caption("zkx in a park", "background") == ("zkx in a beach", True)
    assert adaptability_prompts(["a cat"], ["zkx"])[0].original == "zkx, a cat", "the trigger goes in front"
    assert parse_edits(edits_text(list(edits.values()))) == list(edits.values()), "listed, edited, read back"
    with pytest.raises(ValueError, match="attribute: caption => edited caption"):
        parse_edits("colour: only a caption")


def test_wrong_model_kinds_and_unreadable_images_say_what_to_change(tmp_path, encoders, project):
    from transformers import BertConfig, BertModel

    text_only = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50)).save_pretrained(text_only)
    with pytest.raises(ModelError, match="not a CLIP-like model"):
        load_encoders(ScoringModels(clip=str(text_only)))
    clip = encoders.settings.clip
    with pytest.raises(ModelError, match="takes no images"):
        load_encoders(ScoringModels(clip=clip, image=str(text_only)))
    with pytest.raises(ModelError, match="--download"):
        load_encoders(ScoringModels(clip="nobody/no-such-clip"))
    with pytest.raises(ModelError, match="No CLIP model"):
        load_encoders(ScoringModels(clip=str(tmp_path / "missing" / "clip.bin")))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png.*fix or remove it"):
        EmbeddingScorer(encoders, [*judge.training_images(project), broken])
    assert broken.read_bytes() == b"not a png", "nothing is overwritten"


def test_the_suggestion_names_the_numbers_and_the_copies():
    choices = [judge.Choice("zkx-000006", 0.8, 0.81, 0.77, 12),
               judge.Choice("zkx-000010", 0.8, 0.95, 0.25, 12, copies=["014.png"]),
               judge.Choice("zkx-000002", 0.8, 0.2, 1.0, 12)]
    best = judge.pick_best(choices, ["zkx-000002", "zkx-000006", "zkx-000010"])
    assert best.checkpoint == "zkx-000006", "the weaker of the two decides"
    assert judge.suggestion(choices, best) == ("Suggested: epoch 6 at strength 0.8: likeness 0.81, adaptability 0.77 "
                                               "(12 images); epoch 10 copies training image 014.")
    assert "copies" in judge.choices_table(choices, best) and "014" in judge.choices_table(choices, best)
    points = judge.fit_curve_points(choices, 0.8, ["zkx-000002", "zkx-000006", "zkx-000010"])
    assert [p[0] for p in points] == ["zkx-000002", "zkx-000006", "zkx-000010"], "training order"
    curve = judge.fit_curve(choices, 0.8, ["zkx-000002", "zkx-000006", "zkx-000010"], best)
    assert curve.size == (600, 320)
    only_likeness = [judge.Choice("zkx", 1.0, 0.9, None, 4)]
    assert judge.pick_best(only_likeness) is None and "no adaptability prompt" in judge.suggestion(only_likeness, None)
    assert "judge the grid by eye" in judge.suggestion([], None).lower()


def test_unscorable_prompts_draw_nothing_and_edits_draw_only_their_cells(project, tiny_sd1, encoders):
    from lorakit.demo.judging import toy_scorer

    gen = Counting(Generator(str(tiny_sd1)))
    spec = build_spec(project, "checkpoint", "strength=1,0.5", prompt="photo of zkx, black hair", **FAST)
    drawn: dict = {}
    toy = judge.score_grid(gen, spec, project, toy_scorer(project), extra_seeds=3, cache=drawn)
    assert (toy.choices, toy.generated, gen.images) == ([], 0, 0), "a real-photo prompt: the toy scorer draws nothing"
    edits = adaptability_prompts(project)[:2]
    scorer = EmbeddingScorer(encoders, judge.training_images(project), edits)
    sweep = judge.score_grid(gen, spec, project, scorer, edits, cache=drawn)
    cells = [c for z in plan(spec, project) for row in z for c in row]
    distinct = {c.image_key() for c in cells}  # strength-0 / shared cells are drawn once
    assert len(cells) == 4 and sweep.generated == gen.images == len(distinct) * 3, "grid cells + 2 edits, one seed"
    result = make_grid(project, spec, generator=gen, annotate=scorer.annotate, cache=drawn,
                       best=judge.best_cell(project, judge.pick_best(sweep.choices)), stamp="scored")
    assert gen.images == len(distinct) * 3, "the grid reuses the scores' images"
    assert all(n.startswith("L ") for row in result.notes[0] for n in row)
    assert all(c.adaptability is not None and c.n == 3 for c in sweep.choices)
    assert result.best is not None and (np.asarray(result.grids[0]) == HIGHLIGHT).all(axis=-1).any(), "framed"
    more = judge.scoring_cells(spec, project, scorer, edits, extra_seeds=2)
    assert len(more) == len({c.image_key() for c in more}) == len(distinct) * 3 * 3, "each extra seed: one more set"


def test_a_cnn_image_model_gives_flat_normalised_embeddings(tmp_path, encoders, project):
    """A ResNet / ConvNeXt pools to (n, c, 1, 1): likeness embeddings are (n, c) and unit length all the same."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    try:
        from transformers import BitImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import BitImageProcessor as ImageProcessor
    folder = tmp_path / "resnet"
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
                ).save_pretrained(folder)
    ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    clip = tmp_path / "clip"
    build_tiny_clip(clip, WORDS)
    enc = load_encoders(ScoringModels(clip=str(clip), image=str(folder)))
    images = [Image.open(p).convert("RGB") for p in judge.training_images(project)]
    emb = enc.images(images)
    assert emb.shape == (4, 16) and torch_allclose(emb.norm(dim=-1), 1.0, atol=1e-5)
    scorer = EmbeddingScorer(enc, judge.training_images(project), top_k=2)
    assert scorer(cell(), images[0])["nearest"] == judge.training_images(project)[0].name
