"""Pivotal tuning: the trigger word learned as new tokens beside the LoRA, bundled in every LoRA file the way
kohya writes it (AUTOMATIC1111 loads it with the LoRA), written as an A1111 / ComfyUI embedding file, previewed by
notebook 04's generator, resumed exactly; the base model's own tokenizers and embeddings are never changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import write_images
from lorakit.errors import ConfigError, DatasetError
from lorakit.evaluate.generate import Generator
from lorakit.lora.embeddings import split_bundle
from lorakit.models.loading import load_base
from lorakit.train.loop import Callback, train

FAST = dict(steps=2, cfg=4.0, sampler="Euler")


def _pivotal(cfg, vectors=2, share=1.0):
    cfg.network.embedding_vectors, cfg.network.embedding_train_share = vectors, share
    cfg.network.embedding_lr = 5e-2  # large, so a short run moves the vectors visibly
    cfg.optimizer.text_encoder_lr = 0.0  # the new word trains on its own: no text-encoder LoRA
    return cfg


def test_the_new_word_trains_is_bundled_and_leaves_the_base_model_alone(tiny_project):
    project, cfg = tiny_project
    base = load_base(cfg.model.base_model)
    tok, table = base.tokenizers[0], base.text_encoders[0].get_input_embeddings()
    weights, size = table.weight.detach().clone(), len(tok)
    start = table.weight[tok("zkx", add_special_tokens=False).input_ids].float().mean(0)
    result = train(project, _pivotal(cfg))
    sd = load_file(result.final)
    bundle = sd["bundle_emb.zkx.string_to_param.*"]
    assert bundle.shape == (2, table.embedding_dim)
    assert float((bundle - start).abs().max()) > 1e-3, "the vectors moved from the word they started as"
    emb = load_file(result.embedding)
    assert result.embedding.name == "zkx.safetensors" and torch.equal(emb["emb_params"], bundle)
    assert base.tokenizers[0] is tok and len(tok) == size, "the pipeline's own tokenizer is back, unchanged"
    assert base.text_encoders[0].get_input_embeddings() is table and torch.equal(table.weight, weights)
    assert not any(k.startswith("lora_te") for k in sd), "no text-encoder LoRA was asked for"


def test_with_a_text_encoder_lora_the_word_is_its_own_parameter_group(tiny_project):
    project, cfg = tiny_project
    _pivotal(cfg)
    cfg.optimizer.text_encoder_lr = 5e-4  # a text-encoder LoRA too: the new vectors live inside that encoder
    result = train(project, cfg)
    sd = load_file(result.final)
    assert any(k.startswith("lora_te_") for k in sd) and "bundle_emb.zkx.string_to_param.*" in sd


def test_sdxl_bundles_one_vector_set_per_text_encoder(tmp_path, tiny_sdxl, tiny_project):
    project, cfg = tiny_project
    cfg.model.base_model = str(tiny_sdxl)
    result = train(project, _pivotal(cfg, vectors=1))
    sd, emb = load_file(result.final), load_file(result.embedding)
    base = load_base(str(tiny_sdxl))
    dims = [te.get_input_embeddings().embedding_dim for te in base.text_encoders]
    assert sd["bundle_emb.zkx.clip_l"].shape == (1, dims[0]) and sd["bundle_emb.zkx.clip_g"].shape == (1, dims[1])
    assert set(emb) == {"clip_l", "clip_g"}


def test_after_its_share_of_the_steps_the_word_stays_fixed(tiny_project):
    project, cfg = tiny_project
    cfg.saving.save_every_n_steps = 4
    result = train(project, _pivotal(cfg, share=0.5))  # 16 steps: the word trains for the first 8
    key = "bundle_emb.zkx.string_to_param.*"
    at = {n: load_file(project.output_dir / f"zkx-step{n:08d}.safetensors")[key] for n in (4, 8, 12)}
    final = load_file(result.final)[key]
    assert not torch.equal(at[4], at[8]), "trained in the first half"
    assert torch.equal(at[8], at[12]) and torch.equal(at[12], final), "fixed in the second half"


class CtrlC(Callback):
    def on_step(self, step, loss, lr):
        if step == 5:
            raise KeyboardInterrupt


def test_a_resumed_run_ends_with_the_same_word(tiny_project, tmp_path):
    project, cfg = tiny_project
    whole = load_file(train(project, _pivotal(cfg)).final)
    assert train(project, cfg, callbacks=[CtrlC()]).interrupted
    resumed = load_file(train(project, cfg, resume=True).final)
    key = "bundle_emb.zkx.string_to_param.*"
    torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6)


def test_bad_triggers_are_refused_before_training(tiny_project, tmp_path):
    project, cfg = tiny_project
    _pivotal(cfg)
    cfg.network.embedding_trigger = "<|endoftext|>"  # one of the tokenizer's own tokens
    with pytest.raises(ConfigError, match="tokenizer's own tokens"):
        train(project, cfg)
    cfg.network.embedding_trigger = "two words"
    with pytest.raises(ConfigError, match="single word"):
        train(project, cfg)
    cfg.network.embedding_trigger = ""
    write_images(project.dataset_dir / "2_other", 2, seed=3)
    with pytest.raises(DatasetError, match="set network.embedding_trigger"):
        train(project, cfg)
    base = load_base(cfg.model.base_model)
    assert type(base.text_encoders[0].get_input_embeddings()).__name__ == "Embedding", "nothing left attached"


def test_the_preview_reads_the_bundled_word(tiny_project):
    project, cfg = tiny_project
    result = train(project, _pivotal(cfg))
    base = load_base(cfg.model.base_model)
    own = base.tokenizers[0]
    lora_only = project.root / "lora_only.safetensors"
    save_file(split_bundle(load_file(result.final))[0], str(lora_only))
    gen = Generator(base)
    with_word = np.asarray(gen.generate("zkx, thing", seed=1, loras=[(result.final, 1.0)], **FAST)).astype(int)
    assert gen.pipe.tokenizer is not own and "zkx_1" in gen.pipe.tokenizer.get_vocab()
    without = np.asarray(gen.generate("zkx, thing", seed=1, loras=[(lora_only, 1.0)], **FAST)).astype(int)
    assert gen.pipe.tokenizer is own, "a LoRA without a bundle: the model's own tokenizer"
    assert np.abs(with_word - without).mean() > 0.1, "the learned word changes the picture"
    gen.apply([(result.final, 1.0)])
    gen.apply([])
    assert gen.pipe.tokenizer is own and type(base.text_encoders[0].get_input_embeddings()).__name__ == "Embedding"


def test_a_word_the_vocabulary_has_is_replaced_only_when_asked():
    from lorakit.config.schema import TrainConfig
    from lorakit.train.pivotal import Pivot

    base = load_base("")  # the demo's toy base: "blicket" is a whole word of its vocabulary ("blicket</w>")
    cfg = TrainConfig()
    cfg.network.embedding_vectors = 1
    with pytest.raises(ConfigError, match="already a word of the base model's vocabulary"):
        Pivot.attach(base, cfg, "blicket")
    assert base.extra.get("added_words") is None, "nothing attached"
    cfg.network.embedding_replace_word = True
    pivot = Pivot.attach(base, cfg, "blicket")
    try:
        assert base.tokenizers[0].tokenize("a blicket") == ["a</w>", "blicket"], "the new token wins"
    finally:
        pivot.remove()
    assert base.tokenizers[0].tokenize("a blicket") == ["a</w>", "blicket</w>"]
