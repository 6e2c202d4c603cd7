"""scripts/make_screenshots.py: the README's form pictures are drawn from the live widget objects, all of them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import ipywidgets as widgets
from PIL import Image

from lorakit.dataset.checks import CheckSettings
from lorakit.ui.dataset import CheckForm, ImportForm

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_screenshots.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_screenshots", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def descriptions(w: widgets.Widget) -> list[str]:
    """Every description in the tree, found independently of the renderer."""
    own = [w.description] if getattr(w, "description", "") else []
    return own + [d for child in getattr(w, "children", ()) for d in descriptions(child)]


def test_the_renderer_draws_every_widget_of_a_nested_form(tmp_path):
    shots = load_script()
    importer = ImportForm("~/photos/fred", "fr3dd!e", 15, "", "")
    check = CheckForm(CheckSettings(resolution=512))
    button = widgets.Button(description="import now", button_style="primary")
    # the real forms two and three levels down: an accordion holding a box holding the forms' boxes
    tree = widgets.Accordion(children=[widgets.HBox([importer.widget, widgets.VBox([check.widget, button])])],
                             titles=("Import and check",), selected_index=0)
    out = tmp_path / "form.png"

    texts = shots.render(tree, out, width=1000, out_width=900)

    assert out.is_file() and 1_000 < out.stat().st_size < 150_000
    with Image.open(out) as im:
        assert im.width == 900 and 150 < im.height < 1500
        assert len(set(im.convert("L").getdata())) > 2  # something drawn, not a blank page
    wanted = descriptions(tree)
    assert {"images folder", "trigger token", "repeats", "reg images folder", "resolution", "blurry below",
            "duplicate ≤ bits", "import now"} <= set(wanted)
    assert [d for d in wanted if d not in texts] == []
    assert {"Import and check", "~/photos/fred", "fr3dd!e", "15", "512"} <= set(texts)
    assert "20.00" in texts  # the slider's readout (blur threshold)


def test_a_collapsed_section_hides_its_widgets_and_html_loses_its_tags(tmp_path):
    shots = load_script()
    tree = widgets.VBox([
        widgets.HTML("<b>Axes</b>: <i>checkpoint</i>, strength<br><span style='color:#cf222e'>red</span>"),
        widgets.Accordion(children=[widgets.Text(value="hidden value", description="inside")], titles=("closed",)),
        widgets.Checkbox(value=True, description="ticked"), widgets.Dropdown(options=["a", "b"], value="b"),
    ])

    texts = shots.render(tree, tmp_path / "x.png", width=600, out_width=600)

    assert "closed" in texts and "inside" not in texts and "hidden value" not in texts
    assert {"Axes", ":", "checkpoint", ",", "strength", "red", "ticked", "☑", "b", "▾"} <= set(texts)
    assert not any("<" in t for t in texts)
