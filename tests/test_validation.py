"""Validation loss: a held-out share (or a folder) never trained on, fixed noise, logged per checkpoint."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import write_images
from lorakit.config.schema import TrainConfig
from lorakit.dataset.scan import ImageItem, scan_dataset
from lorakit.errors import ConfigError, DatasetError
from lorakit.evaluate.validation import checkpoint_losses, lowest, read_validation, validation_figure
from lorakit.train import prepare as prepare_module
from lorakit.train.events import Callback
from lorakit.train.loop import Position, batch_loss, train
from lorakit.train.progress import loss_figure
from lorakit.train.validation import Validation, choose_images, split_items


def items(names: list[str], folder: str = "2_zkx") -> list[ImageItem]:
    return [ImageItem(Path(folder) / n, "c", 2, folder=folder) for n in names]


def one_sentence(message: str) -> bool:
    text = message.replace("e.g. ", "")
    return text.endswith(".") and text.count(". ") == 0 and "\n" not in text


# ---- which images ------------------------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_at_least_one_and_stable_when_images_are_added():
    names = [f"img{i:02d}.png" for i in range(20)]
    kept, held = split_items(items(names), 0.1, seed=7)
    again_kept, again_held = split_items(items(list(reversed(names))), 0.1, seed=7)
    assert sorted(h.path.name for h in held) == sorted(h.path.name for h in again_held)  # order does not matter
    assert len(held) == 2 and len(kept) == 18
    assert not {k.path.name for k in kept} & {h.path.name for h in held}
    assert {k.path.name for k in kept} | {h.path.name for h in held} == set(names)
    assert len(split_items(items(names[:3]), 0.1, seed=7)[1]) == 1  # at least one
    other_seed = {h.path.name for h in split_items(items(names), 0.1, seed=8)[1]}
    assert other_seed != {h.path.name for h in held}
    # five more images (still 2 held out of 25): the earlier choice stays unless a new image ranks before it
    grown = {h.path.name for h in split_items(items(names + [f"new{i}.png" for i in range(5)]), 0.1, seed=7)[1]}
    ranked_new = grown - set(names)
    assert len(grown & {h.path.name for h in held}) == 2 - len(ranked_new)


def test_a_split_that_leaves_no_training_image_is_refused_in_one_sentence():
    with pytest.raises(DatasetError, match="leaves none to train on") as e:
        split_items(items(["only.png"]), 0.1, seed=0)
    assert one_sentence(str(e.value))


def test_config_checks():
    with pytest.raises(ConfigError, match="between 0 and 0.5"):
        TrainConfig().replace({"validation.split": 0.6})
    with pytest.raises(ConfigError, match="nothing to measure"):
        TrainConfig().replace({"validation.enabled": True, "validation.split": 0.0})
    cfg = TrainConfig().replace({"validation.enabled": True, "validation.every_n_steps": 5})
    assert TrainConfig.from_toml(cfg.to_toml()) == cfg


def test_validation_folder_refusals(tiny_project):
    project, cfg = tiny_project
    cfg.validation.enabled = True
    scan = scan_dataset(project.dataset_dir)
    cfg.validation.dir = "dataset/2_zkx"  # inside the training folder
    with pytest.raises(DatasetError, match="overlaps data.dataset_dir") as e:
        choose_images(project, cfg, scan)
    assert one_sentence(str(e.value))
    folder = project.root / "validation"
    write_images(folder, 2, seed=5)
    cfg.validation.dir = "validation"
    assert [it.caption for it in choose_images(project, cfg, scan)] == ["zkx, thing 0", "zkx, thing 1"]
    shutil.copy(project.dataset_dir / "2_zkx" / "img01.png", folder / "copy.png")  # a training image, renamed
    with pytest.raises(DatasetError, match="is also a training image") as e:
        choose_images(project, cfg, scan)
    assert "img01.png" in str(e.value) and one_sentence(str(e.value))
    (folder / "copy.png").unlink()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match="broken.png cannot be read") as e:
        choose_images(project, cfg, scan)
    assert one_sentence(str(e.value))
    assert sorted(p.name for p in folder.iterdir()) == ["broken.png", "img00.png", "img00.txt", "img01.png",
                                                        "img01.txt"]  # nothing touched


# ---- the loss ----------------------------------------------------------------------------------------------


def test_loss_is_fixed_on_the_same_weights_and_moves_with_the_lora(tiny_project):
    from accelerate import Accelerator

    project, cfg = tiny_project
    cfg.validation.enabled = True
    accelerator = Accelerator(cpu=True)
    run = prepare_module.prepare(project, cfg, accelerator)
    try:
        assert len(run.validation) == 1 and run.validation[0] not in run.items
        rows: list[dict] = []
        cache: dict = {}
        v = Validation(run, project.validation_log, Callback(), rows=rows,
                       loss=lambda batch, fixed: batch_loss(run, batch, Position(), 0, "cpu", accelerator, cache,
                                                            fixed=fixed))
        rng_before = run.noise_gen.get_state()
        first, second = v.value(), v.value()
        assert first == second and math.isfinite(first)
        assert torch.equal(run.noise_gen.get_state(), rng_before)  # training's noise is not consumed
        assert all(m.training for m in run.trained)  # back in training mode
        with torch.no_grad():
            for p in run.params:
                p.add_(0.05 * torch.randn_like(p))
        assert v.value() != first
    finally:
        run.net.detach()


class Recorder(Callback):
    def __init__(self) -> None:
        self.info: dict = {}
        self.validation: list[tuple[int, float, str]] = []

    def on_start(self, info: dict) -> None:
        self.info = info

    def on_validation(self, step: int, loss: float, checkpoint: str) -> None:
        self.validation.append((step, loss, checkpoint))


def test_held_out_images_are_never_trained_and_the_loss_is_logged_per_checkpoint(tiny_project, monkeypatch):
    project, cfg = tiny_project
    cfg.validation.enabled = True
    batched: list[str] = []
    real = prepare_module.epoch_batches

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        batched.extend(s.item.path.name for b in out for s in b)
        return out

    monkeypatch.setattr(prepare_module, "epoch_batches", spy)
    rec = Recorder()
    result = train(project, cfg, callbacks=[rec])
    held = [Path(p).name for p in rec.info["validation"]]
    assert len(held) == 1 and batched and held[0] not in batched
    assert len(set(batched)) == 3
    assert result.steps == 12  # 3 images x 2 repeats x 2 epochs
    per_checkpoint = checkpoint_losses(result.validation)
    assert [r["checkpoint"] for r in per_checkpoint] == ["base model"] + [p.name for p in result.checkpoints]
    assert per_checkpoint[0]["step"] == 0 and per_checkpoint[-1]["step"] == 12
    assert per_checkpoint[0]["loss"] != per_checkpoint[-1]["loss"]  # the LoRA changed it
    assert [(s, c) for s, _, c in rec.validation] == [(r["step"], r["checkpoint"]) for r in result.validation]
    logged = [json.loads(line) for line in project.validation_log.read_text().splitlines()]
    assert logged == result.validation == read_validation(project)
    assert lowest(per_checkpoint)["checkpoint"] in {p.name for p in result.checkpoints}
    fig = validation_figure(per_checkpoint)
    assert "lowest" in fig.axes[0].get_legend().get_texts()[0].get_text()
    live = loss_figure(result.losses, validation=result.validation)  # notebook 03: beside the training loss
    red = live.axes[1].get_lines()[0]
    assert list(red.get_xdata()) == sorted({r["step"] for r in result.validation})


def test_resume_keeps_the_split_and_the_log(tiny_project):
    project, cfg = tiny_project
    cfg.validation.enabled = True
    cfg.validation.every_n_steps = 4
    first, second = Recorder(), Recorder()
    part = train(project, cfg, callbacks=[first], stop_after_steps=5)
    assert part.interrupted and [r["step"] for r in part.validation] == [0, 4]
    done = train(project, cfg, callbacks=[second], resume=True)
    assert second.info["validation"] == first.info["validation"]
    steps = [r["step"] for r in done.validation]
    assert steps[:2] == [0, 4] and steps.count(0) == 1 and 12 in steps
    assert len({r["session"] for r in read_validation(project)}) == 1
    assert not (project.output_dir / "previous").exists()  # nothing moved aside or overwritten


def test_off_by_default_changes_nothing(tiny_project):
    project, cfg = tiny_project
    assert not cfg.validation.enabled
    cfg.training.max_train_epochs = 1
    result = train(project, cfg)
    assert result.steps == 8 and result.validation == [] and not project.validation_log.exists()
