"""Notebook 01: import, checks, buckets, crops, captions and tags as forms over the library's functions.

    form = ImportForm(source, token, repeats)
    form.widget                                   # edit, then run the next cell
    reports = run_import(project, form.value())   # the same call a button would make

Every button calls a plain method (``save``, ``next``, ``apply``) that the notebook's cells also call: a headless
run never clicks. Pictures are shown as PNG images inside widgets.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from PIL import Image

from lorakit.config.schema import TrainConfig
from lorakit.dataset.captioners import (
    REMOTE_CODE_WARNING,
    BlipSettings,
    TaggerSettings,
    build_tiny_blip,
    build_tiny_tagger,
)
from lorakit.dataset.captions import (
    CaptionChange,
    TagEdit,
    WriteResult,
    apply_changes,
    image_files,
    parse_replacements,
    parse_tag_list,
    read_captions,
    read_one,
    write_caption,
)
from lorakit.dataset.checks import CheckReport, CheckSettings, load_upright, report_sheet
from lorakit.dataset.crop import (
    Box,
    BucketRow,
    BucketSettings,
    box_from_fractions,
    bucket_sheet,
    center_box,
    crop_in_project,
    preview_box,
)
from lorakit.dataset.importing import ImportReport, import_images
from lorakit.dataset.masks import (
    background_mask,
    inspect_mask,
    masked_preview,
    rectangle_mask,
    save_mask,
)
from lorakit.dataset.scan import image_size
from lorakit.dataset.wd14 import Wd14Settings, build_tiny_wd14
from lorakit.demo.recipe import DEMO_DATA, demo_config
from lorakit.demo.toyworld import tokenizer_words
from lorakit.errors import DatasetError
from lorakit.project import Project

_STYLE = {"description_width": "150px"}
_WIDE = widgets.Layout(width="560px")
COLORS = {"ok": "#1a7f37", "warn": "#9a6700", "error": "#cf222e"}


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def image_widget(im: Image.Image) -> widgets.Image:
    return widgets.Image(value=png(im), format="png")


def html_table(head: list[str], rows: list[list[str]], max_rows: int = 200) -> widgets.HTML:
    """A plain HTML table (cells are escaped); long tables are cut with a note."""
    cut = len(rows) - max_rows
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[:max_rows])
    note = f"<p>… and {cut} more rows</p>" if cut > 0 else ""
    head_html = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return widgets.HTML(f"<table style='text-align:left'><tr>{head_html}</tr>{body}</table>{note}")


def _text(value: str, description: str, placeholder: str = "") -> widgets.Text:
    return widgets.Text(value=value, description=description, placeholder=placeholder, style=_STYLE, layout=_WIDE)


# ---- import ------------------------------------------------------------------------------------------
@dataclass
class ImportRequest:
    source: str
    token: str
    repeats: int
    reg_source: str = ""
    class_prompt: str = ""
    reg_repeats: int = 1


class ImportForm:
    """Source folder, trigger token and repeats (plus optional regularization images)."""

    def __init__(self, source: str, token: str, repeats: int, reg_source: str = "", class_prompt: str = "",
                 reg_repeats: int = 1):
        self.source = _text(source, "images folder", "your photos (a plain folder or a kohya layout)")
        self.token = _text(token, "trigger token", "a rare word, e.g. fr3dd!e")
        self.repeats = widgets.BoundedIntText(value=repeats, min=1, max=1000, description="repeats", style=_STYLE)
        self.reg_source = _text(reg_source, "reg images folder", "optional: class images")
        self.class_prompt = _text(class_prompt, "class prompt", "what the reg images show, e.g. woman")
        self.reg_repeats = widgets.BoundedIntText(value=reg_repeats, min=1, max=1000, description="reg repeats",
                                                  style=_STYLE)
        self.widget = widgets.VBox([self.source, self.token, self.repeats, self.reg_source, self.class_prompt,
                                    self.reg_repeats])

    def value(self) -> ImportRequest:
        return ImportRequest(self.source.value.strip(), self.token.value.strip(), self.repeats.value,
                             self.reg_source.value.strip(), self.class_prompt.value.strip(), self.reg_repeats.value)


def run_import(project: Project, request: ImportRequest) -> list[ImportReport]:
    """Import the images (and reg images) of ``request`` into the project; copies only (empty source: none)."""
    if not request.source:
        return []
    reports = [import_images(request.source, project, request.token, request.repeats)]
    if request.reg_source:
        if not request.class_prompt:
            raise ValueError("reg images need a class prompt: what they show (e.g. 'woman', 'dog').")
        reports.append(import_images(request.reg_source, project, request.class_prompt, request.reg_repeats,
                                     reg=True))
    return reports


def import_view(reports: list[ImportReport]) -> widgets.VBox:
    """One line per folder, then the files that were converted or skipped (with why)."""
    text = "<br>".join(html.escape(r.summary()) for r in reports) or "nothing imported: the project's images are used"
    parts: list[widgets.Widget] = [widgets.HTML(text)]
    rows = [[html.escape(r["file"]), r["result"], html.escape(r["notes"])]
            for rep in reports for r in rep.rows() if r["notes"] or r["result"] == "skipped"]
    if rows:
        parts.append(html_table(["file", "result", "notes"], rows))
    return widgets.VBox(parts)


# ---- checks ------------------------------------------------------------------------------------------
class CheckForm:
    """The thresholds of the checks."""

    def __init__(self, settings: CheckSettings):
        self.resolution = widgets.IntText(value=settings.resolution, description="resolution", style=_STYLE)
        self.blur = widgets.FloatSlider(value=settings.blur_threshold, min=0, max=60, step=1,
                                        description="blurry below", style=_STYLE)
        self.dup = widgets.IntSlider(value=settings.duplicate_distance, min=0, max=16,
                                     description="duplicate ≤ bits", style=_STYLE)
        self.widget = widgets.VBox([self.resolution, self.blur, self.dup])

    def value(self) -> CheckSettings:
        return CheckSettings(resolution=self.resolution.value, blur_threshold=self.blur.value,
                             duplicate_distance=self.dup.value)


def check_view(report: CheckReport, thumb: int = 96, cols: int = 8) -> widgets.VBox:
    """Summary, a table of the flagged files with their reasons, and a contact sheet of every image."""
    rows = [[html.escape(r["file"]), f"{r['width']}×{r['height']}", "-" if r["sharpness"] is None else str(r["sharpness"]),
             f"<span style='color:{COLORS[r['status']]}'>{r['status']}</span>",
             html.escape("; ".join(i["message"] for i in r["issues"]))]
            for r in report.rows() if r["issues"]]
    table = html_table(["file", "size", "sharpness", "status", "reasons"], rows) if rows else widgets.HTML(
        "<p>No file was flagged.</p>")
    parts = [widgets.HTML(f"<b>{html.escape(report.summary())}</b>"), table]
    if report.files:
        parts.append(image_widget(report_sheet(report, thumb, cols)))
    return widgets.VBox(parts)


# ---- buckets -----------------------------------------------------------------------------------------
class BucketForm:
    """The bucket settings of the training config (notebook 02 saves them in lorakit.toml)."""

    def __init__(self, settings: BucketSettings):
        self.resolution = widgets.IntText(value=settings.resolution, description="resolution", style=_STYLE)
        self.enable = widgets.Checkbox(value=settings.enable_bucket, description="enable buckets", style=_STYLE)
        self.min_reso = widgets.IntText(value=settings.min_bucket_reso, description="min bucket side", style=_STYLE)
        self.max_reso = widgets.IntText(value=settings.max_bucket_reso, description="max bucket side", style=_STYLE)
        self.step = widgets.IntText(value=settings.bucket_reso_steps, description="bucket_reso_steps", style=_STYLE)
        self.no_upscale = widgets.Checkbox(value=settings.bucket_no_upscale, description="no upscale",
                                           style=_STYLE)
        self.widget = widgets.VBox([self.resolution, self.enable, self.min_reso, self.max_reso, self.step,
                                    self.no_upscale])

    def value(self) -> BucketSettings:
        return BucketSettings(self.resolution.value, self.enable.value, self.min_reso.value, self.max_reso.value,
                              self.step.value, self.no_upscale.value)


def bucket_view(rows: list[BucketRow], counts: dict, thumb: int = 96, cols: int = 8) -> widgets.VBox:
    """Images per bucket, each image's bucket and how much of it survives the crop, and the cropped pictures."""
    summary = ", ".join(f"{w}×{h}: {n}" for (w, h), n in counts.items())
    table = html_table(["image", "size", "bucket", "kept"],
                       [[html.escape(r.path.name), f"{r.size[0]}×{r.size[1]}", f"{r.bucket[0]}×{r.bucket[1]}",
                         f"{r.kept:.0%}"] for r in rows])
    return widgets.VBox([widgets.HTML(f"<b>images per bucket</b>: {summary}"), table,
                         image_widget(bucket_sheet(rows, thumb, cols))])


# ---- crop --------------------------------------------------------------------------------------------
class CropHelper:
    """Pick an image, a centred box of some aspect or a manual box (sliders), see it, apply it."""

    def __init__(self, project: Project, images: list[Path]):
        self.project, self.images = project, images
        self.image = widgets.Dropdown(options=[(p.name, p) for p in images], description="image", style=_STYLE)
        self.mode = widgets.ToggleButtons(options=["none", "center", "manual"], value="none", description="crop")
        self.aspect = widgets.FloatText(value=1.0, description="aspect (w/h)", style=_STYLE)
        sliders = {"left": 0.0, "top": 0.0, "width": 1.0, "height": 1.0}
        self.sliders = {k: widgets.FloatSlider(value=v, min=0, max=1, step=0.01, description=k, style=_STYLE)
                        for k, v in sliders.items()}
        self.preview = widgets.Image(format="png")
        self.status = widgets.HTML()
        button = widgets.Button(description="crop (copy kept)")
        button.on_click(lambda _: self.apply())
        for w in (self.image, self.mode, self.aspect, *self.sliders.values()):
            w.observe(lambda _: self.refresh(), names="value")
        controls = widgets.VBox([self.image, self.mode, self.aspect, *self.sliders.values(), button, self.status])
        self.widget = widgets.HBox([controls, self.preview])
        self.refresh()

    def box(self) -> Box | None:
        """The box the controls describe (None when the mode is 'none' or there is no image)."""
        path = self.image.value
        if path is None or self.mode.value == "none":
            return None
        size = image_size(path)
        if self.mode.value == "center":
            return center_box(size, max(self.aspect.value, 0.05))
        s = {k: w.value for k, w in self.sliders.items()}
        return box_from_fractions(size, s["left"], s["top"], s["width"], s["height"])

    def refresh(self) -> None:
        path = self.image.value
        if path is None:
            return
        try:
            box = self.box() or Box(0, 0, *image_size(path))
            self.preview.value = png(preview_box(path, box, side=256))
        except Exception as e:  # a broken file or an impossible box: say so, keep the form alive
            self.status.value = html.escape(f"{path.name}: {type(e).__name__}: {e}")

    def apply(self) -> str:
        """Crop the chosen image in the project (its uncropped copy is kept in uncropped/)."""
        box = self.box()
        if box is None:
            message = "nothing to crop (choose 'center' or 'manual')"
        else:
            out = crop_in_project(self.project, self.image.value, box)
            message = f"cropped {out.name} to {box.size[0]}×{box.size[1]} (uncropped copy in {self.project.root / 'uncropped'})"
            self.refresh()
        self.status.value = html.escape(message)
        return message


# ---- masks -------------------------------------------------------------------------------------------
class MaskHelper:
    """Image and mask side by side; make a mask from a rectangle or from 'everything but the background colour'.

    ``apply()`` writes ``<name>_mask.png`` beside the image (an existing one only with *overwrite*);
    ``set_masked_loss()`` writes the *learn only the subject* toggle into lorakit.toml (data.masked_loss).
    """

    def __init__(self, project: Project, images: list[Path], masked_loss: bool = False):
        self.project, self.images = project, images
        self.image = widgets.Dropdown(options=[(p.name, p) for p in images], description="image", style=_STYLE)
        self.mode = widgets.ToggleButtons(options=["show", "rectangle", "background"], value="show",
                                          description="make a mask")
        self.tolerance = widgets.IntSlider(value=24, min=0, max=128, description="colour tolerance", style=_STYLE)
        sliders = {"left": 0.0, "top": 0.0, "width": 1.0, "height": 1.0}
        self.sliders = {k: widgets.FloatSlider(value=v, min=0, max=1, step=0.01, description=k, style=_STYLE)
                        for k, v in sliders.items()}
        self.overwrite = widgets.Checkbox(value=False, description="overwrite an existing mask")
        self.masked_loss = widgets.Checkbox(value=masked_loss, description="learn only the subject (masked loss)")
        self.preview = widgets.Image(format="png")
        self.status = widgets.HTML()
        button = widgets.Button(description="save mask")
        button.on_click(lambda _: self.apply())
        self.masked_loss.observe(lambda _: self.set_masked_loss(), names="value")
        for w in (self.image, self.mode, self.tolerance, *self.sliders.values()):
            w.observe(lambda _: self.refresh(), names="value")
        controls = widgets.VBox([self.image, self.mode, self.tolerance, *self.sliders.values(), self.overwrite,
                                 button, self.masked_loss, self.status])
        self.widget = widgets.HBox([controls, self.preview])
        self.refresh()

    def proposed(self) -> Image.Image | None:
        """The mask the controls describe (None in 'show' mode)."""
        path = self.image.value
        if path is None or self.mode.value == "show":
            return None
        im = load_upright(path)
        if self.mode.value == "background":
            return background_mask(im, self.tolerance.value)
        s = {k: w.value for k, w in self.sliders.items()}
        box = box_from_fractions(im.size, s["left"], s["top"], s["width"], s["height"])
        return rectangle_mask(im.size, (box.left, box.top, box.right, box.bottom))

    def refresh(self) -> None:
        path = self.image.value
        if path is None:
            return
        try:
            mask = self.proposed()
            if mask is None:
                info = inspect_mask(path)
                self.preview.value = png(masked_preview(path, info.source))
                self.status.value = html.escape(info.problem or info.describe())
            else:
                self.preview.value = png(masked_preview(path, mask))
                self.status.value = html.escape(f"proposed mask: {np.asarray(mask).mean() / 255:.0%} learnt")
        except Exception as e:  # a broken file: say so, keep the form alive
            self.status.value = html.escape(f"{path.name}: {type(e).__name__}: {e}")

    def apply(self) -> str:
        """Save the proposed mask as <name>_mask.png (nothing in 'show' mode)."""
        mask = self.proposed()
        if mask is None:
            message = "no mask written (choose 'rectangle' or 'background')"
        else:
            try:
                message = f"wrote {save_mask(self.image.value, mask, overwrite=self.overwrite.value)}"
            except DatasetError as e:
                message = str(e)
            self.mode.value = "show"  # show what is on disk now
            self.refresh()
        self.status.value = html.escape(message)
        return message

    def set_masked_loss(self) -> str:
        """Write the toggle into the project's lorakit.toml (data.masked_loss); without one, notebook 02 asks."""
        value = self.masked_loss.value
        if not self.project.config_path.is_file():
            message = f"data.masked_loss = {value}: set it in notebook 02 (it writes lorakit.toml)"
        else:
            cfg = self.project.load_config()
            if cfg.data.masked_loss != value:
                cfg.data.masked_loss = value
                cfg.save(self.project.config_path)
            message = f"data.masked_loss = {value} in {self.project.config_path}"
        self.status.value = html.escape(message)
        return message


# ---- captions ----------------------------------------------------------------------------------------
class CaptionEditor:
    """The image beside its caption; previous / next / save. Saving a changed caption backs up the old one."""

    def __init__(self, folder: Path, extension: str = ".txt", reg: bool = False):
        self.images = [c.image for c in read_captions(folder, extension, reg=reg)]
        self.extension, self.index = extension, 0
        self.picture = widgets.Image(format="png")
        self.text = widgets.Textarea(layout=widgets.Layout(width="420px", height="160px"))
        self.status = widgets.HTML()
        buttons = [widgets.Button(description=d) for d in ("◀ previous", "next ▶", "save")]
        for b, f in zip(buttons, (self.previous, self.next, self.save), strict=True):
            b.on_click(lambda _, f=f: f())
        self.widget = widgets.HBox([self.picture, widgets.VBox([self.text, widgets.HBox(buttons), self.status])])
        self.show(0)

    def show(self, index: int) -> None:
        if not self.images:
            self.status.value = "no images"
            return
        self.index = index % len(self.images)
        path = self.images[self.index]
        cap = read_one(path, self.extension)
        try:
            im = load_upright(path)
        except Exception as e:  # a broken file is shown as such; the checks say more
            im = Image.new("RGB", (160, 160), (200, 200, 200))
            cap.problem = cap.problem or f"image unreadable ({type(e).__name__})"
        im.thumbnail((320, 320))
        if max(im.size) < 160:
            im = im.resize((im.width * 4, im.height * 4), Image.Resampling.NEAREST)
        self.picture.value = png(im)
        self.text.value = cap.text
        self.status.value = html.escape(f"{self.index + 1}/{len(self.images)} {path.name}"
                                        + (f" — {cap.problem}" if cap.problem else ""))

    def next(self) -> None:
        self.show(self.index + 1)

    def previous(self) -> None:
        self.show(self.index - 1)

    def save(self) -> WriteResult:
        """Write the text box to the current image's caption (the previous text goes to captions-backup/)."""
        result = write_caption(self.images[self.index], self.text.value, overwrite=True, extension=self.extension)
        self.status.value = html.escape(result.summary())
        return result


class TagForm:
    """A tag edit (prefix, add, remove, replace, dedupe, move to front, keep_tokens) and whether to write it."""

    def __init__(self, prefix: str = "", keep_tokens: int = 0):
        self.prefix = _text(prefix, "trigger prefix", "e.g. photo of fr3dd!e")
        self.add = _text("", "add tags", "comma-separated")
        self.remove = _text("", "remove tags", "comma-separated")
        self.replace = _text("", "replace", "old=new, 1girl=woman")
        self.front = _text("", "move to front", "comma-separated")
        self.dedupe = widgets.Checkbox(value=True, description="remove duplicate tags", style=_STYLE)
        self.underscores = widgets.Checkbox(value=False, description="underscores → spaces", style=_STYLE)
        self.keep_tokens = widgets.BoundedIntText(value=keep_tokens, min=0, max=20, description="keep_tokens",
                                                  style=_STYLE)
        self.write = widgets.Checkbox(value=False, description="write the changes (old captions backed up)",
                                      style=_STYLE, layout=_WIDE)
        self.widget = widgets.VBox([self.prefix, self.add, self.remove, self.replace, self.front, self.dedupe,
                                    self.underscores, self.keep_tokens, self.write])

    def value(self) -> TagEdit:
        return TagEdit(prefix=self.prefix.value.strip(), add=parse_tag_list(self.add.value),
                       remove=parse_tag_list(self.remove.value), replace=parse_replacements(self.replace.value),
                       dedupe=self.dedupe.value, front=parse_tag_list(self.front.value),
                       keep_tokens=self.keep_tokens.value, underscores_to_spaces=self.underscores.value)


def changes_view(changes: list[CaptionChange], max_rows: int = 30) -> widgets.HTML:
    """Before → after for each proposed caption."""
    if not changes:
        return widgets.HTML("<p>No caption would change.</p>")
    rows = [[html.escape(c.image.name), html.escape(c.before) or "<i>(none)</i>", html.escape(c.after)]
            for c in changes]
    return html_table(["image", "before", "after"], rows, max_rows)


def write_if_asked(changes: list[CaptionChange], write: bool, overwrite: bool = True) -> str:
    """Apply the changes when the form says so; otherwise say that this was a preview."""
    if not write:
        return f"preview only: {len(changes)} captions would change (tick 'write' and rerun this cell to write them)"
    return apply_changes(changes, overwrite=overwrite).summary()


def frequency_chart(counts, top: int = 25, title: str = "how many captions contain each tag (or word)"):
    """A horizontal bar chart of the ``top`` most frequent tags (a matplotlib Figure)."""
    import matplotlib.pyplot as plt

    items = counts.most_common(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, max(1.5, 0.28 * len(items) + 0.8)))
    ax.barh([t for t, _ in items], [n for _, n in items], color="#4c72b0")
    ax.set_xlabel("captions containing it")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ---- automatic captions ------------------------------------------------------------------------------
MODES = {"preview (write nothing)": "preview", "images without a caption": "missing",
         "all images (old captions backed up)": "all"}


class CaptionerForm:
    """Which captioner, which model, its options, and what to caption."""

    def __init__(self, model: str = "", kind: str = "blip", prefix: str = "", mode: str = "missing"):
        self.kind = widgets.ToggleButtons(options=["blip", "tagger", "wd14"], value=kind, description="captioner")
        self.model = _text(model, "model", "local folder or hub id; empty = the demo's random toy model")
        self.download = widgets.Checkbox(value=False, description="allow download from the hub", style=_STYLE)
        self.trust = widgets.Checkbox(value=False, description="trust remote code (blip, tagger)", style=_STYLE,
                                      layout=_WIDE)
        self.trust_warning = widgets.HTML()
        self.trust.observe(lambda _: self._show_trust_warning(), names="value")
        self.prefix = _text(prefix, "prefix", "e.g. photo of fr3dd!e")
        self.beams = widgets.IntSlider(value=3, min=1, max=8, description="beams (blip)", style=_STYLE)
        self.lengths = widgets.IntRangeSlider(value=(5, 40), min=1, max=100, description="min/max length (blip)",
                                              style=_STYLE)
        self.threshold = widgets.FloatSlider(value=0.35, min=0.05, max=0.95, step=0.05,
                                             description="threshold (tagger)", style=_STYLE)
        self.exclude = _text("general, sensitive, questionable, explicit", "exclude tags (tagger)")
        wd14 = Wd14Settings()
        self.general = widgets.FloatSlider(value=wd14.general_threshold, min=0.05, max=0.95, step=0.05,
                                           description="general threshold (wd14)", style=_STYLE)
        self.character = widgets.FloatSlider(value=wd14.character_threshold, min=0.05, max=1.0, step=0.05,
                                             description="character threshold (wd14)", style=_STYLE)
        self.undesired = _text("", "undesired tags (wd14)", "comma-separated, e.g. 1girl, solo")
        self.always_first = _text("", "always first (wd14)", "tags put first when found")
        self.underscores = widgets.Checkbox(value=wd14.underscores_to_spaces, style=_STYLE,
                                            description="underscores → spaces (wd14)")
        self.rating = widgets.Checkbox(value=wd14.rating_tags, description="rating tag (wd14)", style=_STYLE)
        self.mode = widgets.Dropdown(options=list(MODES.items()), value=mode, description="caption", style=_STYLE)
        self.widget = widgets.VBox([self.kind, self.model, self.download, self.trust, self.trust_warning,
                                    self.prefix, self.beams, self.lengths, self.threshold, self.exclude,
                                    self.general, self.character, self.undesired, self.always_first,
                                    self.underscores, self.rating, self.mode])

    def _show_trust_warning(self) -> None:
        text = f"⚠ {REMOTE_CODE_WARNING}" if self.trust.value else ""
        self.trust_warning.value = f"<span style='color:{COLORS['warn']}'>{html.escape(text)}</span>" if text else ""

    @property
    def is_demo(self) -> bool:
        return not self.model.value.strip()

    def value(self, project: Project) -> BlipSettings | TaggerSettings | Wd14Settings:
        """The settings; an empty model means the demo's toy model (random: its captions are gibberish)."""
        model = self.model.value.strip() or str(demo_captioner(project, self.kind.value))
        common = {"model": model, "prefix": self.prefix.value.strip(), "allow_download": self.download.value}
        if self.kind.value == "wd14":
            return Wd14Settings(general_threshold=self.general.value, character_threshold=self.character.value,
                                undesired_tags=parse_tag_list(self.undesired.value),
                                always_first_tags=parse_tag_list(self.always_first.value),
                                underscores_to_spaces=self.underscores.value, rating_tags=self.rating.value,
                                **common)
        common["trust_remote_code"] = self.trust.value
        if self.kind.value == "blip":
            return BlipSettings(num_beams=self.beams.value, min_length=self.lengths.value[0],
                                max_length=self.lengths.value[1], **common)
        return TaggerSettings(threshold=self.threshold.value, exclude=parse_tag_list(self.exclude.value), **common)


def demo_captioner(project: Project, kind: str) -> Path:
    """A random toy captioner in the project's cache (made once, offline): it shows the mechanics, not captions."""

    folder = project.cache_dir / f"toy-{kind}"
    if kind == "wd14":
        return folder if (folder / "model.onnx").is_file() else build_tiny_wd14(folder)
    if not (folder / "config.json").is_file():
        if kind == "blip":
            build_tiny_blip(folder, words=tokenizer_words())
        else:
            build_tiny_tagger(folder, tags=["cross", "circle", "square", "red", "blue", "white", "general"])
    return folder


def caption_write(form: CaptionerForm, changes: list[CaptionChange]) -> str:
    """Write the captioner's proposals as the form's mode says (the demo's random model never writes)."""
    mode = form.mode.value
    if not changes:
        return "every image has a caption: nothing to write" if mode == "missing" else "no images to caption"
    if mode == "preview":
        return f"preview only: {len(changes)} captions proposed, nothing written"
    if form.is_demo:
        return "the demo's toy captioner is random: its captions are never written (give a real model to write)"
    return apply_changes(changes, overwrite=mode == "all").summary()


# ---- defaults ----------------------------------------------------------------------------------------
def choose_sources(project: Project, source: str, reg_source: str) -> tuple[str, str]:
    """The notebook's parameters, with empty meaning: the demo images, unless the project already has images."""

    if source or image_files(project.dataset_dir):
        return source, reg_source
    return str(DEMO_DATA / "dataset"), reg_source or str(DEMO_DATA / "reg")


def uses_demo(project: Project, source: str) -> bool:
    """True when the images are the demo's: imported from data/demo now, or earlier (same folder names)."""

    demo = DEMO_DATA / "dataset"
    if source:
        return Path(source).resolve() == demo.resolve()
    names = {p.name for p in project.dataset_dir.iterdir() if p.is_dir() and p.name != "reg"}
    return bool(names) and names == {p.name for p in demo.iterdir() if p.is_dir()}


def project_config(project: Project, using_demo: bool):
    """The project's lorakit.toml if notebook 02 wrote one, else the demo's recipe (demo images) or the defaults."""

    if project.config_path.is_file():
        return project.load_config()
    return demo_config() if using_demo else TrainConfig()
