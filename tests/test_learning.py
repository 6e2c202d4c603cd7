"""The toy base model draws what it is asked, and the demo LoRA measurably learns the new shape, in both worlds.

The learning test trains the demo recipe for 12 of its 16 epochs (600 steps, the cosine schedule fitted to 12
epochs) and scores fewer prompts than bench/learning.py (measured here with the recipe's min-SNR weighting and
learning rates 2e-3 / 1e-3: likeness 0.92, adaptability 1.00, ordinary 1.00; 150 s for the file on one core). Its
thresholds are below that, below what the full recipe reaches in the bench (likeness 0.92 for each of three training
runs at epoch 16, strength 1; adaptability and ordinary prompts 1.00; data/demo/README.md) and below issue 8's
targets (likeness >= 0.9, adaptability >= 0.85, ordinary >= 0.9): they check that the concept is learned
(likeness far above the base model's 0) while colours and backgrounds stay obeyed and the ordinary shapes stay
ordinary.

The second world (lorakit.demo.worlds.SECOND: another base, the crescent under 'zorb') gets the same recipe
carried over as a user would carry it (base model, trigger word and folders changed, nothing tuned) for 8 epochs
(the cosine fitted to 8; measured: 21 of 24 trigger prompts drew the crescent, adaptability 1.00, ordinary 1.00,
85 s on one core); its thresholds are stated beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lorakit.demo import toyworld as tw
from lorakit.demo.recipe import demo_config
from lorakit.demo.scorer import score_batch

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "data" / "toy-base"
sys.path.insert(0, str(REPO / "bench"))

# the CI run: thresholds for a shorter training than the demo's recipe
CI_EPOCHS = 12
CI_LIKENESS = 19 / 24  # crosses among the 24 trigger prompts: measured 22; 18 without min-SNR weighting
CI_ADAPTABILITY = 0.85
CI_ORDINARY = 0.8
BASE_LIKENESS_MAX = 0.1


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base_pipe():
    """The shipped base model, loaded once for the tests that only sample from it."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(BASE, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_base_model_is_small_and_loads_offline_with_diffusers(base_pipe):
    size = sum(f.stat().st_size for f in BASE.rglob("*") if f.is_file())
    assert size <= 30e6
    assert not list(BASE.rglob("*.bin")), "weights must be safetensors"
    pipe = base_pipe
    sched = pipe.scheduler.config
    assert sched.prediction_type == "v_prediction" and sched.rescale_betas_zero_snr
    assert sched.timestep_spacing == "trailing"
    latents = pipe.vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
    assert latents.shape == (1, 4, 16, 16)
    tok = pipe.tokenizer
    assert all(len(tok.tokenize(w)) == 1 for w in (*tw.COLORS, *tw.BASE_SHAPES, *tw.EXTRA_SHAPES, tw.TRIGGER))


def test_base_model_draws_the_asked_colour_shape_and_background(base_pipe):
    pipe = base_pipe
    asked = tw.base_eval_set(12, seed=99)
    images = pipe([e.prompt() for e in asked], num_inference_steps=25, guidance_scale=4.0,
                  generator=[torch.Generator().manual_seed(i) for i in range(len(asked))]).images
    result = score_batch(images, asked)
    assert result.correct >= 10 / 12, [i for i in result.items if not i["correct"]]


def test_base_model_draws_its_extra_shapes_but_no_cross(base_pipe):
    """The richer pretraining (ring, diamond, star, frame, crescent under spare words) shows; the cross stays new."""
    import random

    pipe = base_pipe
    triples = tw.all_triples(tuple(tw.EXTRA_SHAPES))
    random.Random(3).shuffle(triples)
    asked = [tw.Expected(*t) for t in triples[:15]]
    images = pipe([e.prompt() for e in asked], num_inference_steps=25, guidance_scale=4.0,
                  generator=[torch.Generator().manual_seed(i) for i in range(len(asked))]).images
    result = score_batch(images, asked)
    assert result.correct >= 11 / 15, [i for i in result.items if not i["correct"]]  # measured 0.85 over 126
    assert not any(i["shape"] == "cross" for i in result.items)


def test_bench_scores_fewer_prompts_or_other_sampling_seeds_when_asked():
    import learning

    assert learning.eval_spec() == learning.EvalSpec()
    spec = learning.eval_spec(12, seed=3000)
    assert (spec.n_seen, spec.n_unseen, spec.n_ordinary, spec.seed) == (6, 12, 12, 3000)
    assert (spec.steps, spec.cfg, spec.sampler) == (learning.EvalSpec.steps, learning.EvalSpec.cfg, "Euler a")


@pytest.mark.slow
def test_demo_lora_learns_the_concept_without_leaking(tmp_path):
    import learning

    from lorakit.evaluate.generate import Generator

    cfg = demo_config()
    cfg.training.max_train_epochs = CI_EPOCHS
    cfg.saving.save_every_n_epochs = 0
    cfg.sampling.sample_every_n_epochs = 0
    cfg.model.base_model = str(BASE)
    project = learning.prepare_project(tmp_path / "demo")
    checkpoints, _, _ = learning.train_demo(project, cfg)
    assert [p.name for p in checkpoints] == ["blicket.safetensors"]
    spec = learning.EvalSpec(n_seen=8, n_unseen=16, n_ordinary=16)
    gen = Generator(str(BASE))
    base = learning.evaluate(gen, None, 0.0, spec)
    lora = learning.evaluate(gen, checkpoints[-1], 1.0, spec, epoch=CI_EPOCHS)
    print(base, lora, sep="\n")
    assert base.likeness < BASE_LIKENESS_MAX, base
    assert lora.likeness >= CI_LIKENESS, lora
    assert lora.adaptability >= CI_ADAPTABILITY, lora
    assert lora.ordinary >= CI_ORDINARY, lora


# the second world (lorakit.demo.worlds.SECOND): the demo's recipe carried over as a user would, never tuned there
SECOND_CI_EPOCHS = 8
SECOND_CI_LIKENESS = 18 / 24  # crescents among the 24 trigger prompts: measured 21; the base draws 0
SECOND_CI_ADAPTABILITY = 0.85
SECOND_CI_ORDINARY = 0.8


@pytest.mark.slow
def test_the_demo_recipe_carried_over_teaches_the_second_world(tmp_path):
    """Base model, trigger word and folders changed, nothing else: the crescent is learned under 'zorb'."""
    import learning

    from lorakit.demo.worlds import SECOND
    from lorakit.evaluate.generate import Generator

    cfg = learning.carry_over(demo_config(), SECOND)
    cfg.training.max_train_epochs = SECOND_CI_EPOCHS
    cfg.saving.save_every_n_epochs = 0
    cfg.sampling.sample_every_n_epochs = 0
    project = learning.prepare_project(tmp_path / "second", SECOND)
    checkpoints, _, _ = learning.train_demo(project, cfg)
    assert [p.name for p in checkpoints] == ["zorb.safetensors"]
    spec = learning.EvalSpec(n_seen=8, n_unseen=16, n_ordinary=16)
    gen = Generator(str(SECOND.base_dir))
    base = learning.evaluate(gen, None, 0.0, spec, world=SECOND)
    lora = learning.evaluate(gen, checkpoints[-1], 1.0, spec, epoch=SECOND_CI_EPOCHS, world=SECOND)
    print(base, lora, sep="\n")
    assert base.likeness < BASE_LIKENESS_MAX, base
    assert lora.likeness >= SECOND_CI_LIKENESS, lora
    assert lora.adaptability >= SECOND_CI_ADAPTABILITY, lora
    assert lora.ordinary >= SECOND_CI_ORDINARY, lora
