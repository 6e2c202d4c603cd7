"""Notebooks 00 and 02: pick a base model from the user's AUTOMATIC1111, Forge or ComfyUI checkpoints.

    picker = CheckpointPicker(model_box)     # choosing a checkpoint writes its path into model_box
    display(picker.widget)
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from lorakit.models.user_folders import UserFolder, find_user_folders, list_checkpoints

__all__ = ["CheckpointPicker"]

STYLE = {"description_width": "110px"}


class CheckpointPicker:
    """A dropdown of the checkpoints found in the user's folders; choosing one sets ``target.value`` to its path.

    ``download``: also show the "download a hub id" checkbox (notebook 00), ticked or not.
    """

    def __init__(self, target: widgets.Text, folders: list[UserFolder] | None = None,
                 download: bool | None = None) -> None:
        folders = find_user_folders() if folders is None else folders
        self.checkpoints = list_checkpoints(folders)
        self.target = target
        keep = f"(keep: {target.value or 'the demo model'})"
        self.dropdown = widgets.Dropdown(options=[(keep, "")] + [(c.label(), str(c.path)) for c in self.checkpoints],
                                         value="", description="your models", style=STYLE,
                                         layout=widgets.Layout(width="80%"))
        self.dropdown.observe(self._picked, names="value")
        self.download = widgets.Checkbox(value=bool(download), description="download a hub id (owner/name) "
                                         "from the Hugging Face hub", indent=False)
        places = "; ".join(html.escape(f.describe()) for f in folders if f.checkpoints)
        note = (f"{len(self.checkpoints)} checkpoint(s) in {places}" if places else
                "No AUTOMATIC1111, Forge or ComfyUI checkpoints found. Set LORAKIT_WEBUI_DIR or LORAKIT_COMFYUI_DIR "
                "to your install and rerun this cell, or type the path above.")
        parts = [self.dropdown, widgets.HTML(f"<small>{note}</small>")]
        self.widget = widgets.VBox(parts + ([self.download] if download is not None else []))

    def _picked(self, change) -> None:
        if change["new"]:
            self.target.value = change["new"]
