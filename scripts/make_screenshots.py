"""Pictures of the five notebooks' forms for the README, drawn from the live ipywidgets objects, and notebook 04's grid.

    python scripts/make_screenshots.py /tmp/demo-project            # a project `lorakit demo` trained
    python scripts/make_screenshots.py PROJECT --out docs/images

There is no browser here, so this is not a screenshot: each notebook's form is built as the notebook builds it
(``lorakit.ui``), and one renderer walks the widget tree (boxes, accordions, tabs and their children) and draws
every widget roughly as JupyterLab lays it out: its description, its current value in a box, dropdowns with a ▾,
checkboxes ☑/☐, buttons as filled boxes, HTML as text without its tags, images as the images they hold.
Notebook 04's grid is the project's newest grid PNG, downscaled.

``render(widget, path)`` returns the list of texts it drew (tests check that the descriptions are all there).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
import sys
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# JupyterLab's widget metrics (ipywidgets 8 CSS), in CSS pixels; 1 px = 1 pt at 72 dpi
FONT = 13
ROW = 28  # --jp-widgets-inline-height
MARGIN = 2  # --jp-widgets-margin
INLINE_WIDTH = 300  # --jp-widgets-inline-width: a description and its input together
LABEL_WIDTH = 80  # --jp-widgets-inline-label-width
BUTTON_WIDTH = 148  # --jp-widgets-inline-width-short
READOUT_WIDTH = 64
LINE = 18  # line height of HTML text
INK, GREY, BORDER, FILL, BLUE = "#212121", "#757575", "#9e9e9e", "#eeeeee", "#2196f3"
BUTTON_STYLES = {"primary": "#2196f3", "success": "#4caf50", "info": "#00bcd4", "warning": "#ff9800",
                 "danger": "#f44336"}


# ---- text ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    bold: bool = False
    italic: bool = False
    mono: bool = False
    color: str = INK
    scale: float = 1.0
    glue: bool = False  # no space before this word: '<b>Axes</b>:' is one run of text

    def props(self, size: float = FONT) -> FontProperties:
        return FontProperties(family="DejaVu Sans Mono" if self.mono else "DejaVu Sans", size=size * self.scale,
                              weight="bold" if self.bold else "normal", style="italic" if self.italic else "normal")


class _Measure:
    """Text widths in CSS px, measured at the dpi the picture is drawn at (hinting makes widths depend on it)."""

    scale = 1.0
    renderer = RendererAgg(10, 10, 72)

    @classmethod
    def at(cls, scale: float) -> None:
        cls.scale, cls.renderer = scale, RendererAgg(10, 10, 72 * scale)


def text_width(text: str, style: Style = Style(), size: float = FONT) -> float:
    if not text:
        return 0.0
    w, _, _ = _Measure.renderer.get_text_width_height_descent(text, style.props(size), ismath=False)
    return float(w) / _Measure.scale


def fit(text: str, width: float, style: Style = Style(), ellipsis: bool = True) -> str:
    """``text`` cut to ``width`` px (with … where it was cut, as CSS text-overflow: ellipsis does)."""
    if text_width(text, style) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits with its ellipsis
        mid = (lo + hi + 1) // 2
        if text_width(text[:mid] + ("…" if ellipsis else ""), style) <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + ("…" if ellipsis and lo < len(text) else "")


def wrap(words: list[tuple[str, Style]], width: float, size: float = FONT) -> list[list[tuple[str, Style, float]]]:
    """Greedy line breaking of styled words; each line is [(word, style, x offset)]. '\\n' breaks a line."""
    lines: list[list[tuple[str, Style, float]]] = [[]]
    x = 0.0
    for word, style in words:
        if word == "\n":
            lines.append([])
            x = 0.0
            continue
        space = text_width(" ", style, size) if lines[-1] and not style.glue else 0.0
        w = text_width(word, style, size)
        if lines[-1] and x + space + w > width and not style.glue:
            lines.append([])
            x, space = 0.0, 0.0
        if w > width:  # one word wider than the line: cut it
            word, w = fit(word, width, style), width
        lines[-1].append((word, style, x + space))
        x += space + w
    return lines if any(lines) else []


# ---- HTML: paragraphs and tables of styled words ---------------------------------------------------------------
@dataclass
class Block:
    kind: str  # "para" | "table" | "pre"
    words: list[tuple[str, Style]] = field(default_factory=list)
    rows: list[list[tuple[list[tuple[str, Style]], bool]]] = field(default_factory=list)  # cells: (words, header)


class _HTMLBlocks(HTMLParser):
    """HTML as paragraphs of styled words and tables of cells: what a widget's HTML looks like, without the tags."""

    BLOCK = {"p", "div", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "table", "pre", "hr"}
    HEADINGS = {"h1": 1.5, "h2": 1.3, "h3": 1.15, "h4": 1.0, "h5": 0.9}

    def __init__(self, base: Style) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.styles = [base]
        self.tags: list[str] = []
        self.para = Block("para")
        self.table: Block | None = None
        self.cell: list[tuple[str, Style]] | None = None
        self.header = False
        self.pre = 0
        self.spaced = True  # whether the text so far ends in white space (the next word then starts a new one)

    def _flush(self) -> None:
        if self.para.words:
            self.blocks.append(self.para)
        self.para = Block("pre" if self.pre else "para")

    def _style(self, tag: str, attrs: list[tuple[str, str | None]]) -> Style:
        s = self.styles[-1]
        if tag in ("b", "strong", "th") or tag in self.HEADINGS:
            s = replace(s, bold=True)
        if tag in ("i", "em"):
            s = replace(s, italic=True)
        if tag in ("code", "pre", "tt", "kbd"):
            s = replace(s, mono=True)
        if tag == "small":
            s = replace(s, scale=s.scale * 0.85)
        if tag in self.HEADINGS:
            s = replace(s, scale=self.HEADINGS[tag])
        css = dict(attrs).get("style") or ""
        if m := re.search(r"(?:^|;)\s*color\s*:\s*([^;]+)", css):
            s = replace(s, color=m[1].strip())
        return s

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            (self.cell if self.cell is not None else self.para.words).append(("\n", self.styles[-1]))
            return
        if tag in ("img", "input", "meta", "hr"):
            return
        if tag in self.BLOCK or tag == "li":
            if tag == "pre":
                self.pre += 1
            if tag == "table":
                self._flush()
                self.table = Block("table")
            elif self.cell is None:
                self._flush()
        if tag == "tr" and self.table is not None:
            self.table.rows.append([])
        if tag in ("td", "th") and self.table is not None:
            if not self.table.rows:
                self.table.rows.append([])
            self.cell, self.header = [], tag == "th"
        self.tags.append(tag)
        self.styles.append(self._style(tag, attrs))
        if tag == "li":
            self.para.words.append(("•", self.styles[-1]))

    def handle_endtag(self, tag):
        if tag not in self.tags:
            return
        while self.tags:  # close anything left open inside it
            t = self.tags.pop()
            self.styles.pop()
            if t == "pre":
                self.pre -= 1
            if t in ("td", "th") and self.table is not None and self.cell is not None:
                self.table.rows[-1].append((self.cell, self.header))
                self.cell = None
            if t == "table" and self.table is not None:
                self.blocks.append(self.table)
                self.table = None
            if (t in self.BLOCK or t == "li") and self.cell is None:
                self._flush()
            if t == tag:
                break

    def handle_data(self, data):
        style = self.styles[-1]
        target = self.cell if self.cell is not None else self.para.words
        if self.cell is None and self.table is not None:
            return  # whitespace between a table's cells
        if self.pre and self.cell is None:
            for i, line in enumerate(data.split("\n")):
                if i:
                    target.append(("\n", style))
                if line:
                    target.append((line, style))
            return
        words = data.split()
        if words:
            glued = not data[0].isspace() and not self.spaced and bool(target) and target[-1][0] != "\n"
            target.append((words[0], replace(style, glue=glued)))
            target.extend((word, style) for word in words[1:])
            self.spaced = data[-1].isspace()
        elif data:
            self.spaced = True

    def close(self):
        super().close()
        if self.table is not None:
            self.blocks.append(self.table)
        self._flush()


def html_blocks(text: str, base: Style = Style()) -> list[Block]:
    parser = _HTMLBlocks(base)
    parser.feed(text)
    parser.close()
    return parser.blocks


# ---- the canvas: drawing operations in CSS pixels, replayed into matplotlib at the end -----------------------------
class Canvas:
    def __init__(self) -> None:
        self.ops: list[tuple] = []
        self.texts: list[str] = []

    def rect(self, x, y, w, h, face="white", edge=BORDER, radius=0.0, lw=1.0) -> None:
        self.ops.append(("rect", x, y, w, h, face, edge, radius, lw))

    def text(self, x, y, s, style: Style = Style(), size=FONT, ha="left") -> None:
        """``s`` with its baseline's vertical centre at ``y`` (a row's middle)."""
        if s.strip():
            self.ops.append(("text", x, y, s, style, size, ha))
            self.texts.append(s)

    def image(self, x, y, w, h, array) -> None:
        self.ops.append(("image", x, y, w, h, array))

    def line(self, x0, y0, x1, y1, color=BORDER, lw=1.0) -> None:
        self.ops.append(("line", x0, y0, x1, y1, color, lw))

    def circle(self, x, y, r, face="white", edge=BORDER) -> None:
        self.ops.append(("circle", x, y, r, face, edge))

    def save(self, path: Path, width: float, height: float, out_width: int) -> None:
        dpi = 72 * out_width / width
        fig = plt.figure(figsize=(width / 72, height / 72), dpi=72)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        for z, op in enumerate(self.ops):  # later operations on top, whatever their kind
            kind, *a = op
            if kind == "rect":
                x, y, w, h, face, edge, radius, lw = a
                if radius:
                    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0,rounding_size={radius}",
                                                facecolor=face, edgecolor=edge, linewidth=lw, zorder=z))
                else:
                    ax.add_patch(Rectangle((x, y), w, h, facecolor=face, edgecolor=edge, linewidth=lw, zorder=z))
            elif kind == "text":
                x, y, s, style, size, ha = a
                p = style.props(size)
                ax.text(x, y, s, fontproperties=p, color=style.color, ha=ha, va="center_baseline", zorder=z)
            elif kind == "image":
                x, y, w, h, array = a
                small = array.shape[1] * 2 <= w  # pixel art (the toy world's 32 px images): keep it crisp
                ax.imshow(array, extent=(x, x + w, y + h, y), aspect="auto",
                          interpolation="nearest" if small else "antialiased", zorder=z)
            elif kind == "line":
                x0, y0, x1, y1, color, lw = a
                ax.plot([x0, x1], [y0, y1], color=color, linewidth=lw, solid_capstyle="round", zorder=z)
            elif kind == "circle":
                x, y, r, face, edge = a
                ax.add_patch(matplotlib.patches.Circle((x, y), r, facecolor=face, edgecolor=edge, linewidth=1,
                                                        zorder=z))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
        plt.close(fig)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a form is a few flat colours and antialiased text: 256 colours look the same at a third of the size
        Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


# ---- sizes -------------------------------------------------------------------------------------------------
def css_px(value, avail: float, default: float | None = None) -> float | None:
    """A CSS length ('420px', '80%', 'auto', None) in px; ``default`` when it says nothing usable."""
    if value in (None, "", "auto", "initial", "inherit"):
        return default
    text = str(value).strip()
    if m := re.fullmatch(r"([\d.]+)\s*px", text):
        return float(m[1])
    if m := re.fullmatch(r"([\d.]+)\s*%", text):
        return avail * float(m[1]) / 100
    if m := re.fullmatch(r"calc\((.+)\)", text):  # calc(100% - 10px) and the like: near enough
        return css_px(m[1].split()[0], avail, default)
    return default


def label_width(w: widgets.Widget) -> float:
    """The width of a widget's description area (0 when it has no description, as ipywidgets 8 hides it)."""
    if not getattr(w, "description", ""):
        return 0.0
    given = getattr(getattr(w, "style", None), "description_width", "") or ""
    if given == "initial":
        return text_width(w.description) + 8
    return css_px(given, INLINE_WIDTH, LABEL_WIDTH) or LABEL_WIDTH


def hidden(w: widgets.Widget) -> bool:
    layout = getattr(w, "layout", None)
    return layout is not None and (layout.display == "none" or layout.visibility == "hidden")


# ---- the renderer: one function per kind of widget, over the tree --------------------------------------------------
class Renderer:
    """Lays out a widget tree top to bottom as JupyterLab would and records what to draw on a Canvas."""

    def __init__(self, canvas: Canvas) -> None:
        self.c = canvas

    def measure(self, w: widgets.Widget, avail: float) -> tuple[float, float]:
        scratch = Renderer(Canvas())
        return scratch.place(w, 0, 0, avail)

    # each place_* draws ``w`` with its top-left corner at (x, y) within ``avail`` px and returns (width, height)
    def place(self, w: widgets.Widget, x: float, y: float, avail: float) -> tuple[float, float]:
        if hidden(w):
            return 0.0, 0.0
        for cls, method in self.DISPATCH:
            if isinstance(w, cls):
                return method(self, w, x, y, avail)
        return self.place_unknown(w, x, y, avail)

    # -- containers --
    def place_vbox(self, w, x, y, avail):
        width = css_px(w.layout.width, avail, avail)
        top, widest = y, 0.0
        for child in w.children:
            cw, ch = self.place(child, x, y, width)
            y += ch
            widest = max(widest, cw)
        return max(widest, css_px(w.layout.width, avail, 0) or 0), y - top

    def place_hbox(self, w, x, y, avail):
        width = css_px(w.layout.width, avail, avail)
        left, tallest = x, 0.0
        for child in w.children:
            cw, ch = self.place(child, x, y, max(width - (x - left), 40))
            x += cw
            tallest = max(tallest, ch)
        return x - left, tallest

    def place_accordion(self, w, x, y, avail):
        width = css_px(w.layout.width, avail, avail)
        top = y
        for i, child in enumerate(w.children):
            is_open = w.selected_index == i
            title = w.titles[i] if i < len(w.titles) and w.titles[i] else f"({i + 1})"
            self.c.rect(x + 2, y + 2, width - 4, 32, face=FILL, edge="#bdbdbd")
            self.c.text(x + 14, y + 18, "▾" if is_open else "▸", Style(color=GREY))
            self.c.text(x + 30, y + 18, fit(title, width - 50), Style(bold=is_open))
            y += 34
            if is_open:
                _, ch = self.measure(child, width - 28)
                self.c.rect(x + 2, y, width - 4, ch + 24, face="white", edge="#bdbdbd")
                self.place(child, x + 14, y + 12, width - 28)
                y += ch + 26
        return width, y - top

    def place_tab(self, w, x, y, avail):
        width = css_px(w.layout.width, avail, avail)
        top, tx = y, x + 2
        for i, _ in enumerate(w.children):
            title = w.titles[i] if i < len(w.titles) and w.titles[i] else f"({i + 1})"
            tw = min(max(text_width(title) + 24, 72), 160)
            chosen = w.selected_index == i
            self.c.rect(tx, y + 2, tw, 30, face="white" if chosen else FILL, edge="#bdbdbd")
            if chosen:
                self.c.rect(tx, y + 2, tw, 2, face=BLUE, edge=BLUE, lw=0)
            self.c.text(tx + tw / 2, y + 17, fit(title, tw - 12), Style(bold=chosen), ha="center")
            tx += tw
        y += 32
        if w.selected_index is not None and w.selected_index < len(w.children):
            child = w.children[w.selected_index]
            _, ch = self.measure(child, width - 28)
            self.c.rect(x + 2, y, width - 4, ch + 24, face="white", edge="#bdbdbd")
            self.place(child, x + 14, y + 12, width - 28)
            y += ch + 26
        return width, y - top

    # -- a description and an input beside it --
    def _description(self, w, x, y, height=ROW) -> float:
        lw = label_width(w)
        if lw:
            self.c.text(x + lw - 8, y + height / 2, fit(w.description, lw - 10), ha="right")
        return lw

    def _inline_width(self, w, avail, default=INLINE_WIDTH) -> float:
        return min(css_px(w.layout.width, avail, default), avail)

    def place_text(self, w, x, y, avail):
        width = self._inline_width(w, avail)
        lw = self._description(w, x, y + MARGIN)
        bx, bw = x + lw, max(width - lw, 40) - 2 * MARGIN
        self.c.rect(bx + MARGIN, y + MARGIN, bw, ROW)
        value = "•" * len(w.value) if isinstance(w, widgets.Password) else str(w.value)
        text, style = (value, Style()) if value else (getattr(w, "placeholder", "") or "", Style(color=GREY))
        self.c.text(bx + MARGIN + 8, y + MARGIN + ROW / 2, fit(text, bw - 16, style, ellipsis=False), style)
        return max(width, lw + 40), ROW + 2 * MARGIN

    def place_textarea(self, w, x, y, avail):
        width = self._inline_width(w, avail)
        rows = w.rows or 2
        height = css_px(w.layout.height, avail, rows * 17 + 10)
        lw = self._description(w, x, y + MARGIN, ROW)
        bx, bw = x + lw + MARGIN, max(width - lw, 40) - 2 * MARGIN
        self.c.rect(bx, y + MARGIN, bw, height)
        value = str(w.value)
        style = Style() if value else Style(color=GREY)
        words = [(word, style) for part in (value or w.placeholder or "").split("\n")
                 for word in [*part.split(), "\n"]]
        for i, line in enumerate(wrap(words[:-1], bw - 16)):
            if 6 + (i + 1) * 17 > height:
                break
            for word, st, dx in line:
                self.c.text(bx + 8 + dx, y + MARGIN + 4 + 8.5 + i * 17, word, st)
        return max(width, lw + 40), height + 2 * MARGIN

    def place_dropdown(self, w, x, y, avail):
        width = self._inline_width(w, avail)
        lw = self._description(w, x, y + MARGIN)
        bx, bw = x + lw + MARGIN, max(width - lw, 40) - 2 * MARGIN
        self.c.rect(bx, y + MARGIN, bw, ROW)
        label = w.label if w.label is not None else ""
        self.c.text(bx + 8, y + MARGIN + ROW / 2, fit(str(label), bw - 30))
        self.c.text(bx + bw - 14, y + MARGIN + ROW / 2, "▾", Style(color=GREY))
        return max(width, lw + 40), ROW + 2 * MARGIN

    def place_select(self, w, x, y, avail):
        width = self._inline_width(w, avail)
        rows = getattr(w, "rows", 5) or 5
        lw = self._description(w, x, y + MARGIN)
        bx, bw = x + lw + MARGIN, max(width - lw, 40) - 2 * MARGIN
        height = rows * 20 + 8
        self.c.rect(bx, y + MARGIN, bw, height)
        chosen = set(w.index) if isinstance(w.index, tuple) else {w.index}
        for i, label in enumerate(w._options_labels[:rows]):
            ly = y + MARGIN + 4 + i * 20
            if i in chosen:
                self.c.rect(bx + 1, ly, bw - 2, 20, face="#bbdefb", edge="#bbdefb", lw=0)
            self.c.text(bx + 8, ly + 10, fit(label, bw - 16))
        return max(width, lw + 40), height + 2 * MARGIN

    def place_checkbox(self, w, x, y, avail):
        indent = label_width(w) if w.indent else 0.0
        if w.indent and not getattr(w.style, "description_width", ""):
            indent = LABEL_WIDTH
        mid = y + MARGIN + ROW / 2
        style = Style(color=GREY) if w.disabled else Style()
        self.c.text(x + indent + MARGIN, mid, "☑" if w.value else "☐", replace(style, scale=1.35))
        self.c.text(x + indent + MARGIN + 22, mid, w.description, style)
        width = indent + 26 + text_width(w.description)
        return max(min(css_px(w.layout.width, avail, 0) or 0, avail), width + 8), ROW + 2 * MARGIN

    def place_slider(self, w, x, y, avail):
        width = self._inline_width(w, avail)
        lw = self._description(w, x, y + MARGIN)
        track = max(width - lw - READOUT_WIDTH, 60)
        mid = y + MARGIN + ROW / 2
        x0, x1 = x + lw + 8, x + lw + track - 8
        lo, hi = float(w.min), float(w.max)
        span = (hi - lo) or 1.0
        values = list(w.value) if isinstance(w.value, tuple | list) else [w.value]
        at = [x0 + (x1 - x0) * (float(v) - lo) / span for v in values]
        self.c.line(x0, mid, x1, mid, color="#bdbdbd", lw=3)
        self.c.line(at[0] if len(at) > 1 else x0, mid, at[-1], mid, color="#90caf9", lw=3)
        for a in at:
            self.c.circle(a, mid, 6.5, face="white", edge="#757575")
        if w.readout:
            fmt = w.readout_format or "d"
            text = "–".join(format(v, fmt) for v in values)
            self.c.text(x + lw + track + 6, mid, text)
        return max(width, lw + track + READOUT_WIDTH), ROW + 2 * MARGIN

    def _button(self, x, y, width, text, style_name, color=None, chosen=False) -> None:
        face = color or BUTTON_STYLES.get(style_name or "", FILL)
        if chosen:
            face = "#bdbdbd" if face == FILL else face
        ink = "white" if face not in (FILL, "#bdbdbd") else INK
        self.c.rect(x, y, width, ROW, face=face, edge=face if face != FILL else "#e0e0e0", radius=3)
        self.c.text(x + width / 2, y + ROW / 2, fit(text, width - 12), Style(color=ink, bold=chosen), ha="center")

    def place_button(self, w, x, y, avail):
        width = css_px(w.layout.width, avail, max(BUTTON_WIDTH, text_width(w.description) + 28))
        self._button(x + MARGIN, y + MARGIN, width, w.description, w.button_style, w.style.button_color)
        return width + 2 * MARGIN, ROW + 2 * MARGIN

    def place_toggle_buttons(self, w, x, y, avail):
        lw = self._description(w, x, y + MARGIN)
        bx = x + lw + MARGIN
        for i, label in enumerate(w._options_labels):
            bw = css_px(getattr(w.style, "button_width", ""), avail, max(text_width(label) + 28, 72))
            self._button(bx, y + MARGIN, bw, label, w.button_style, chosen=i == w.index)
            bx += bw + 4
        return bx - x, ROW + 2 * MARGIN

    def place_toggle_button(self, w, x, y, avail):
        width = css_px(w.layout.width, avail, max(BUTTON_WIDTH, text_width(w.description) + 28))
        self._button(x + MARGIN, y + MARGIN, width, w.description, w.button_style, chosen=bool(w.value))
        return width + 2 * MARGIN, ROW + 2 * MARGIN

    def place_progress(self, w, x, y, avail):
        width = self._inline_width(w, avail)
        lw = self._description(w, x, y + MARGIN)
        bw = max(width - lw, 40) - 2 * MARGIN
        share = (float(w.value) - w.min) / ((w.max - w.min) or 1)
        self.c.rect(x + lw + MARGIN, y + MARGIN + 8, bw, 12, face=FILL, edge=FILL)
        self.c.rect(x + lw + MARGIN, y + MARGIN + 8, bw * max(0.0, min(share, 1.0)), 12, face=BLUE, edge=BLUE)
        return width, ROW + 2 * MARGIN

    # -- text and pictures --
    def place_html(self, w, x, y, avail, value=None):
        text = w.value if value is None else value
        width = min(css_px(w.layout.width, avail, avail), avail)
        lw = self._description(w, x, y + MARGIN) if getattr(w, "description", "") else 0.0
        blocks = html_blocks(text)
        if not blocks:
            return 0.0, 0.0
        top, widest = y, 0.0
        y += 4
        for b in blocks:
            if b.kind == "table":
                bw, bh = self._table(b, x + lw, y, width - lw)
            else:
                bw, bh = self._para(b.words, x + lw, y, width - lw)
            widest, y = max(widest, bw), y + bh + 4
        return lw + widest, y - top

    def _para(self, words, x, y, width) -> tuple[float, float]:
        lines = wrap(words, width)
        widest = 0.0
        for i, line in enumerate(lines):
            for word, style, dx in line:
                self.c.text(x + dx, y + LINE / 2 + i * LINE, word, style)
            if line:
                widest = max(widest, line[-1][2] + text_width(line[-1][0], line[-1][1]))
        return widest, len(lines) * LINE

    def _table(self, b: Block, x, y, width) -> tuple[float, float]:
        ncol = max(len(r) for r in b.rows)
        natural = [0.0] * ncol
        for row in b.rows:
            for j, (cell, header) in enumerate(row):
                st = [(t, replace(s, bold=s.bold or header)) for t, s in cell]
                natural[j] = max(natural[j], sum(text_width(t, s) + 4 for t, s in st))
        pad = 12
        longest = [0.0] * ncol  # the narrowest a column can be: its longest word
        for row in b.rows:
            for j, (cell, header) in enumerate(row):
                for t, s in cell:
                    longest[j] = max(longest[j], text_width(t, replace(s, bold=s.bold or header)))
        cols = [n + pad for n in natural]
        if sum(cols) > width:  # CSS's automatic table layout: each column between its longest word and its text
            low = [m + pad for m in longest]
            spare = max(width - sum(low), 0.0)
            stretch = sum(c - lo for c, lo in zip(cols, low, strict=True)) or 1.0
            cols = [lo + (c - lo) * spare / stretch for c, lo in zip(cols, low, strict=True)]
        top = y
        for i, row in enumerate(b.rows):
            height = LINE
            cx = x
            laid = []
            for j, (cell, header) in enumerate(row):
                st = [(t, replace(s, bold=s.bold or header)) for t, s in cell]
                lines = wrap(st, cols[j] - pad)
                laid.append((cx, lines))
                height = max(height, len(lines) * LINE)
                cx += cols[j]
            if i % 2 == 1:
                self.c.rect(x, y, sum(cols), height + 4, face="#f5f5f5", edge="#f5f5f5", lw=0)
            for cx, lines in laid:
                for k, line in enumerate(lines):
                    for word, style, dx in line:
                        self.c.text(cx + dx, y + 2 + LINE / 2 + k * LINE, word, style)
            y += height + 4
        return sum(cols), y - top

    def place_label(self, w, x, y, avail):
        return self.place_html(w, x, y, avail, value=html.escape(w.value))

    def place_image(self, w, x, y, avail):
        data = bytes(w.value)
        if not data:
            return 0.0, 0.0
        return self._picture(Image.open(io.BytesIO(data)), x, y, avail, css_px(w.width or w.layout.width, avail))

    def _picture(self, im: Image.Image, x, y, avail, width=None):
        im = im.convert("RGB")
        width = min(width or im.width, avail - 2 * MARGIN)
        height = im.height * width / im.width
        self.c.image(x + MARGIN, y + MARGIN, width, height, np.asarray(im))
        return width + 2 * MARGIN, height + 2 * MARGIN

    def place_output(self, w, x, y, avail):
        top, widest = y, 0.0
        for out in w.outputs:
            data = out.get("data", {}) if out.get("output_type") != "stream" else {"text/plain": out.get("text", "")}
            if "image/png" in data:
                im = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
                cw, ch = self._picture(im, x, y, avail)
            elif "text/html" in data:
                cw, ch = self.place_html(widgets.HTML(), x, y, avail, value=data["text/html"])
            elif "text/plain" in data:
                lines = [(line, Style(mono=True)) for line in str(data["text/plain"]).splitlines()]
                words = [p for line in lines for p in (line, ("\n", Style()))]
                cw, ch = self._para(words[:-1], x, y, avail)
            else:
                continue
            widest, y = max(widest, cw), y + ch
        return widest, y - top

    def place_unknown(self, w, x, y, avail):
        """A widget this renderer has no drawing for: its class name and description in a dashed box."""
        width = min(INLINE_WIDTH, avail)
        self.c.rect(x + MARGIN, y + MARGIN, width - 2 * MARGIN, ROW, face="#fafafa", edge="#bdbdbd")
        name = type(w).__name__ + (f": {w.description}" if getattr(w, "description", "") else "")
        self.c.text(x + 10, y + MARGIN + ROW / 2, fit(name, width - 20), Style(color=GREY, italic=True))
        return width, ROW + 2 * MARGIN

    # most specific classes first: Accordion and Tab are Boxes, Textarea is not a Text, sliders share a base
    DISPATCH = [
        (widgets.Accordion, place_accordion), (widgets.Tab, place_tab), (widgets.HBox, place_hbox),
        (widgets.Box, place_vbox),
        (widgets.Label, place_label), (widgets.HTML, place_html), (widgets.HTMLMath, place_html),
        (widgets.Textarea, place_textarea), (widgets.Password, place_text), (widgets.Text, place_text),
        (widgets.Combobox, place_text),
        (widgets.IntText, place_text), (widgets.FloatText, place_text), (widgets.BoundedIntText, place_text),
        (widgets.BoundedFloatText, place_text),
        (widgets.IntSlider, place_slider), (widgets.FloatSlider, place_slider), (widgets.IntRangeSlider, place_slider),
        (widgets.FloatRangeSlider, place_slider), (widgets.FloatLogSlider, place_slider),
        (widgets.Checkbox, place_checkbox), (widgets.ToggleButton, place_toggle_button),
        (widgets.ToggleButtons, place_toggle_buttons), (widgets.Button, place_button),
        (widgets.Dropdown, place_dropdown), (widgets.Select, place_select), (widgets.SelectMultiple, place_select),
        (widgets.IntProgress, place_progress), (widgets.FloatProgress, place_progress),
        (widgets.Image, place_image), (widgets.Output, place_output),
    ]


def render(widget: widgets.Widget, path: str | Path, width: int = 900, out_width: int = 900,
           title: str = "") -> list[str]:
    """Draw ``widget`` (and everything inside it) as a PNG of ``out_width`` px laid out ``width`` CSS px wide.

    Returns the texts drawn, in order: descriptions, values, labels, HTML words, button captions.
    """
    _Measure.at(out_width / width)
    canvas = Canvas()
    pad = 16
    y = pad
    if title:
        canvas.text(pad, y + 10, title, Style(color=GREY, italic=True), size=12)
        y += 28
    _, height = Renderer(canvas).place(widget, pad, y, width - 2 * pad)
    total = y + height + pad
    canvas.ops.insert(0, ("rect", 0.5, 0.5, width - 1, total - 1, "white", "#e0e0e0", 0.0, 1.0))
    canvas.save(Path(path), width, total, out_width)
    return canvas.texts


# ---- the five notebooks' forms, built as the notebooks build them ---------------------------------------------------
def heading(text: str) -> widgets.HTML:
    return widgets.HTML(f"<h3>{html.escape(text)}</h3>")


def setup_picture(project_dir: Path):
    """Notebook 00: the base model and project boxes, the checkpoint picker, and the setup check's table."""
    from lorakit.doctor import run_checks
    from lorakit.ui.setup import doctor_table, setup_form
    from lorakit.ui.user_folders import CheckpointPicker

    form, model_box, project_box = setup_form("", str(project_dir))
    picker = CheckpointPicker(model_box, folders=[], download=False)  # no A1111 install here: the empty list
    rows = run_checks(model_box.value, project_box.value, download=False)
    return widgets.VBox([form, picker.widget, heading("The setup check"), doctor_table(rows)])


def dataset_picture(project_dir: Path):
    """Notebook 01: import (as a first run on the demo sees it), the checks' thresholds and the mask helper."""
    from lorakit.dataset.captions import image_files
    from lorakit.dataset.checks import CheckSettings
    from lorakit.demo.recipe import DEMO_DATA
    from lorakit.project import Project
    from lorakit.ui import dataset as ui

    project = Project(project_dir.resolve())
    cfg = project.load_config()
    # the parameters cell's defaults on a project without images: the demo's images and regularization images
    importer = ui.ImportForm(str(DEMO_DATA / "dataset"), "blicket", 10, str(DEMO_DATA / "reg"), "shape")
    check = ui.CheckForm(CheckSettings(resolution=cfg.data.resolution))
    masks = ui.MaskHelper(project, image_files(project.dataset_dir), masked_loss=cfg.data.masked_loss)
    masks.mode.value = "background"  # one click on: a proposed mask (the default 'show' has none, all white)
    return widgets.VBox([heading("Import"), importer.widget, heading("Check"), check.widget,
                         heading("Masks (optional): learn only the subject"), masks.widget])


def hyperparameters_picture(project_dir: Path):
    """Notebook 02: the whole form, the network section open, with its validity and GPU-memory lines."""
    from lorakit.demo.recipe import notebook_setup
    from lorakit.ui.hyperparameters import HyperparameterForm

    project, cfg, _ = notebook_setup(str(project_dir))
    form = HyperparameterForm(cfg, project)
    form.sections.selected_index = 1  # Network: adapter kind, rank and alpha
    form.memory()  # what the form's background estimate shows a second after it appears
    return form.widget


def train_picture(project_dir: Path):
    """Notebook 03: the quick settings form and the run's loss plot (from the project's logs/loss.jsonl)."""
    from lorakit.demo.recipe import notebook_setup
    from lorakit.train.progress import loss_figure
    from lorakit.train.state import STATE_FILE
    from lorakit.ui.dataset import image_widget
    from lorakit.ui.train import TrainForm

    project, cfg, _ = notebook_setup(str(project_dir))
    form = TrainForm(cfg, can_resume=(project.state_dir / STATE_FILE).is_file(), loras=project.checkpoints())
    parts = [form.widget]
    log = project.root / "logs" / "loss.jsonl"
    if log.is_file():
        losses = [json.loads(line)["loss"] for line in log.read_text().splitlines() if line.strip()]
        fig = loss_figure(losses)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        parts += [heading("The run"), image_widget(Image.open(buf))]
    return widgets.VBox(parts)


def grid_form_picture(project_dir: Path):
    """Notebook 04: the grid form, filled with the project's sample settings."""
    from lorakit.demo.recipe import notebook_setup
    from lorakit.ui.grid import GridForm

    project, cfg, _ = notebook_setup(str(project_dir))
    return GridForm(project, cfg).widget


PICTURES = {  # file: (how to build it, layout width in CSS px, caption)
    "00_setup_check.png": (setup_picture, 1000, "00_setup_check: the boxes and the setup check"),
    "01_dataset.png": (dataset_picture, 900, "01_dataset_and_captions: import, check, masks (after a click on 'background')"),
    "02_hyperparameters.png": (hyperparameters_picture, 1040, "02_hyperparameters: the form"),
    "03_train.png": (train_picture, 900, "03_train: the form and the loss"),
    "04_form.png": (grid_form_picture, 900, "04_evaluate_xy_grid: the grid's form"),
}


def grid_picture(project_dir: Path, out: Path, width: int = 900, max_bytes: int = 150_000) -> Path:
    """The project's newest grid PNG, downscaled to ``width`` px (fewer colours if it is still too large)."""
    grids = sorted((project_dir / "grids").glob("*.png"), key=lambda p: p.stat().st_mtime)
    if not grids:
        raise SystemExit(f"no grid in {project_dir / 'grids'}: run `lorakit demo` (or notebook 04) first")
    im = Image.open(grids[-1]).convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out, optimize=True)
    for colours in (256, 128, 64):
        if out.stat().st_size <= max_bytes:
            break
        im.quantize(colours, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a project trained by `lorakit demo` (its grids/ and output/)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--only", nargs="*", help="file names to make (default: all six)")
    args = parser.parse_args(argv)
    if not (args.project / "lorakit.toml").is_file():
        raise SystemExit(f"{args.project} has no lorakit.toml: give a project `lorakit demo` trained")
    for name, (build, width, title) in PICTURES.items():
        if args.only and name not in args.only:
            continue
        texts = render(build(args.project), args.out / name, width=width, title=title)
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1e3:.0f} kB, {len(texts)} texts")
    if not args.only or "04_grid.png" in args.only:
        path = grid_picture(args.project, args.out / "04_grid.png")
        print(f"{path}: {path.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
