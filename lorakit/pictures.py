"""Labelled sheets of images: a grid with column and row headers, notes and a highlighted cell."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

HIGHLIGHT = (255, 128, 0)  # the frame of the suggested cell


def _zoom(images: list[list[Image.Image]], target: int = 192) -> list[list[Image.Image]]:
    """Enlarge small images by a whole factor, pixel for pixel (the demo model draws 32 px)."""
    w, h = images[0][0].size
    zoom = max(1, target // max(w, h))
    if zoom == 1:
        return images
    return [[im.resize((w * zoom, h * zoom), Image.Resampling.NEAREST) for im in row] for row in images]


def draw_grid(images: list[list[Image.Image]], col_labels: list[str], row_labels: list[str], title: str = "",
              notes: list[list[str]] | None = None, highlight: tuple[int, int] | None = None) -> Image.Image:
    """Images in rows and columns with headers on top and at the left, like A1111's grids.

    ``notes`` [row][col] are written under each image; ``highlight`` (row, col) frames one cell in orange.
    """
    images = _zoom(images)
    w, h = images[0][0].size
    font_size = max(12, min(32, w // 8))
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=max(11, font_size * 3 // 4))
    note_h = small.size + 8 if notes and any(n for row in notes for n in row) else 0
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max([probe.textlength(t, font=font) for t in row_labels if t] + [0]) + 16) if any(row_labels) else 0
    wrapped = [_wrap(label, font, w - 8, probe) for label in col_labels]  # long headers on several lines
    lines = max([len(x) for x in wrapped] + [1])
    top = font_size * (lines + 1) + 8 + (font_size + 8 if title else 0)
    cols, rows, cell_h = len(images[0]), len(images), h + note_h
    out = Image.new("RGB", (left + cols * w, top + rows * cell_h), "white")
    d = ImageDraw.Draw(out)
    if title:
        d.text((8, 4), title, fill="black", font=font)
    for i, label_lines in enumerate(wrapped):
        for k, line in enumerate(reversed(label_lines)):  # bottom line just above the image
            d.text((left + i * w + w // 2, top - font_size // 2 - 4 - k * (font_size + 2)), line, fill="black",
                   font=font, anchor="mm")
    for j, row in enumerate(images):
        y = top + j * cell_h
        if row_labels[j]:
            d.text((left - 8, y + h // 2), row_labels[j], fill="black", font=font, anchor="rm")
        for i, im in enumerate(row):
            out.paste(im, (left + i * w, y))
            if note_h and notes[j][i]:
                d.text((left + i * w + w // 2, y + h + note_h // 2), notes[j][i], fill="black", font=small,
                       anchor="mm")
    if highlight is not None:
        j, i = highlight
        box = (left + i * w, top + j * cell_h, left + (i + 1) * w - 1, top + j * cell_h + cell_h - 1)
        t = max(3, w // 48)  # orange with a black inner line: visible on any background
        d.rectangle(box, outline=HIGHLIGHT, width=t)
        d.rectangle((box[0] + t, box[1] + t, box[2] - t, box[3] - t), outline="black", width=1)
    return out


def _wrap(text: str, font, width: int, probe: ImageDraw.ImageDraw) -> list[str]:
    """Split a header into lines that fit ``width`` pixels (a word longer than that keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and probe.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]

