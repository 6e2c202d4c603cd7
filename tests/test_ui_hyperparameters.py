"""Notebook 02's form, built headless: one widget per setting, edits reach value(), every button is a plain call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ipywidgets as widgets
import pytest

from lorakit.config.presets import apply_preset
from lorakit.config.schema import SECTIONS, TrainConfig, default_of, field_keys, iter_fields
from lorakit.errors import ConfigError
from lorakit.project import Project
from lorakit.ui.hyperparameters import HyperparameterForm, lr_figure

FIXTURE = Path(__file__).resolve().parent / "data" / "kohya_ss_settings_as_pasted.txt"  # copied from shared/fixtures


def _inputs(w: widgets.Widget) -> list[widgets.Widget]:
    """Every value widget inside the settings accordion."""
    if isinstance(w, widgets.Box):
        return [x for child in w.children for x in _inputs(child)]
    return [w] if isinstance(w, widgets.ValueWidget) and not isinstance(w, (widgets.HTML, widgets.Label)) else []


def test_one_widget_per_setting_with_its_help():
    form = HyperparameterForm(TrainConfig())
    n = sum(1 for _ in iter_fields())
    assert len(form.fields) == n == len(_inputs(form.sections)) == len(field_keys())
    assert len(form.sections.children) == len(SECTIONS)
    kinds = {bool: widgets.Checkbox, int: widgets.IntText, float: widgets.FloatText, list: widgets.Textarea,
             str: widgets.Text}
    for key, f in field_keys():
        w, _ = form.fields[key]
        want = widgets.Dropdown if f.metadata.get("choices") else kinds[type(default_of(f))]
        assert type(w) is want, key
        assert w.tooltip == f.metadata["help"] and w.description == key.split(".")[1]
    html_text = " ".join(x.value for x in _all(form.sections) if isinstance(x, widgets.HTML))
    assert "alpha/rank" in html_text  # the help is visible beside each input, not only on hover


def _all(w):
    yield w
    for child in getattr(w, "children", ()):
        yield from _all(child)


def test_editing_a_widget_changes_the_value():
    form = HyperparameterForm(TrainConfig())
    form.fields["network.rank"][0].value = 64
    form.fields["optimizer.lr_scheduler"][0].value = "cosine_with_restarts"
    form.fields["sampling.sample_prompts"][0].value = "a photo of fr3dd\n\nfr3dd on a bike --w 768"
    form.fields["data.flip_aug"][0].value = True
    cfg = form.value()
    assert (cfg.network.rank, cfg.optimizer.lr_scheduler, cfg.data.flip_aug) == (64, "cosine_with_restarts", True)
    assert cfg.sampling.sample_prompts == ["a photo of fr3dd", "fr3dd on a bike --w 768"]


def test_invalid_values_are_explained_at_once():
    form = HyperparameterForm(TrainConfig())
    form.fields["optimizer.unet_lr"][0].value = 0.0
    assert "kohya default is 1e-4" in form.status.value
    with pytest.raises(ConfigError, match="unet_lr"):
        form.value()
    form.fields["optimizer.unet_lr"][0].value = 2e-4
    assert "valid" in form.status.value and form.value().optimizer.unet_lr == 2e-4


def test_set_value_shows_any_config():
    cfg = apply_preset("style").replace({"sampling.sample_prompts": ["x", "y"]})
    form = HyperparameterForm()
    form.set_value(cfg)
    assert form.value() == cfg


def test_preset_fills_the_form_and_keeps_the_project_settings():
    form = HyperparameterForm(TrainConfig().replace({"saving.output_name": "fr3dd"}))
    cfg = form.apply_preset("character")
    assert form.fields["network.rank"][0].value == 128
    assert form.value() == cfg and cfg.saving.output_name == "fr3dd"
    assert form.kind == form.kind_box.value == "character"


def test_kohya_import_fills_the_form_and_shows_the_report():
    if not FIXTURE.is_file():
        pytest.fail(f"test fixture missing: {FIXTURE} (tests/data/ is part of the repository)")
    form = HyperparameterForm(TrainConfig().replace({"data.dataset_dir": "imgs", "model.base_model": "/m/v21.ckpt"}))
    result = form.import_kohya(FIXTURE.read_text(encoding="utf-8"))
    cfg = form.value()
    assert (cfg.network.rank, cfg.optimizer.optimizer, cfg.training.seed) == (256, "Adafactor", 58008)
    assert (cfg.data.dataset_dir, cfg.model.base_model) == ("imgs", "/m/v21.ckpt")  # the project's own are kept
    assert "stabilityai/stable-diffusion-2-1" in form.status.value
    assert "scale_weight_norms" in form.report.value and result.unsupported


def _project(tmp_path, images: int) -> Project:
    """A project whose 10_fr3dd folder holds ``images`` (empty) image files: counted, never opened."""
    project = Project.create(tmp_path / "proj")
    folder = project.dataset_dir / "10_fr3dd"
    folder.mkdir(parents=True)
    for i in range(images):
        (folder / f"{i:02d}.png").write_bytes(b"")
    return project


def test_steps_preview_and_save(tmp_path):
    project = _project(tmp_path, 6)
    form = HyperparameterForm(TrainConfig().replace({"training.max_train_epochs": 3}), project)
    plan = form.refresh()
    assert (plan.steps_per_epoch, plan.total_steps) == (60, 180)
    assert "60 steps per epoch" in form.steps_out.value and form.steps_out.value.count("<tr>") == 4
    path = form.save()
    assert path == project.config_path and TrainConfig.load(path) == form.value()
    with pytest.raises(ConfigError, match="No project"):
        HyperparameterForm().save()


def test_lr_preview_uses_the_training_schedule():
    import matplotlib

    matplotlib.use("Agg")
    from lorakit.train.optimizers import lr_curve

    cfg = apply_preset("style")
    fig = lr_figure(cfg, 300, 100)
    unet, te = fig.axes[0].get_lines()[:2]
    curve = lr_curve(cfg, 300)
    assert list(unet.get_ydata()) == [u for _, u, _ in curve]
    assert list(te.get_ydata()) == [t for _, _, t in curve]
    assert max(unet.get_ydata()) == pytest.approx(1e-4) and unet.get_ydata()[0] == 0.0  # warm-up from 0


def test_the_library_never_imports_ipywidgets():
    code = ("import sys, lorakit.config.schema, lorakit.config.kohya, lorakit.config.presets, lorakit.train.steps, lorakit.cli.config; "
            "sys.exit('ipywidgets' in sys.modules)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == 0


def test_the_form_suggests_repeats_and_epochs_for_the_dataset_and_uses_them(tmp_path):
    project = _project(tmp_path, 12)
    form = HyperparameterForm(TrainConfig(), project, kind="character")
    form.refresh()
    assert "Suggested for 12 images (character)" in form.steps_out.value
    assert "effective learning rate" in form.steps_out.value
    suggestion = form.suggestion()
    cfg = form.use_suggestion()
    assert (cfg.data.repeats, cfg.training.max_train_epochs) == (suggestion.repeats, suggestion.epochs)
    assert form.value() == cfg
    empty = HyperparameterForm(TrainConfig(), Project.create(tmp_path / "empty"))
    assert empty.suggestion() is None
    with pytest.raises(ConfigError, match="no training images"):
        empty.use_suggestion()


def test_the_form_measures_speeds_then_suggests_a_batch_and_scales_the_learning_rate(tmp_path, tiny_sd1):
    project = _project(tmp_path, 24)
    cfg = TrainConfig().replace({"model.base_model": str(tiny_sd1), "data.resolution": 64, "data.enable_bucket": False,
                                 "network.rank": 4, "training.train_batch_size": 1, "optimizer.unet_lr": 1e-4,
                                 "optimizer.text_encoder_lr": 5e-5})
    form = HyperparameterForm(cfg, project, kind="character")
    assert "no speeds measured at two batch sizes" in form.suggestion().text()
    probe = form.measure_speed((1, 2, 4), steps=2)
    assert set(probe.steps_per_second) == {1, 2, 4} and "images/s" in form.status.value
    suggestion = form.suggestion()
    assert suggestion.batch is not None and suggestion.batch.images_per_second  # chosen from the measured speeds
    chosen = suggestion.batch_size
    assert chosen in (1, 2, 4) and f"Batch {chosen}" in form.steps_out.value
    used = form.use_suggestion()
    assert used.training.train_batch_size == chosen
    assert used.optimizer.unet_lr == pytest.approx(float(f"{1e-4 * (chosen ** 0.5):.3g}"))
    assert (used.data.repeats, used.training.max_train_epochs) == (suggestion.repeats, suggestion.epochs)
    form.vram_box.value = 0.0001  # a card too small for any batch: batch 1 and the memory fixes
    assert form.suggestion().batch_size == 1 and "even batch 1 does not fit" in form.suggestion().text()
