"""Notebook 00: the setup check as a colour-coded table."""

from __future__ import annotations

import html

import ipywidgets as widgets

from lorakit.doctor import Row

COLORS = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "info": "#57606a"}


def doctor_table(rows: list[Row]) -> widgets.HTML:
    """An HTML table of (check, status, value, advice)."""
    body = "".join(
        f"<tr><td><b>{html.escape(r.check)}</b></td>"
        f"<td style='color:{COLORS.get(r.status, 'black')}'>{r.status.upper()}</td>"
        f"<td>{html.escape(r.value)}</td><td>{html.escape(r.advice)}</td></tr>"
        for r in rows
    )
    head = "<tr><th>check</th><th>status</th><th>found</th><th>what to do</th></tr>"
    return widgets.HTML(f"<table style='text-align:left'>{head}{body}</table>")


def setup_form(base_model: str, project: str) -> tuple[widgets.VBox, widgets.Text, widgets.Text]:
    """Two text boxes (base model, project folder); rerun the next cell after editing them."""
    model = widgets.Text(value=base_model, description="base model",
                         placeholder="empty = demo model; a folder or .safetensors file",
                         layout=widgets.Layout(width="80%"), style={"description_width": "110px"})
    proj = widgets.Text(value=project, description="project folder", layout=widgets.Layout(width="80%"),
                        style={"description_width": "110px"})
    return widgets.VBox([model, proj]), model, proj
