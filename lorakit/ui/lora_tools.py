"""The LoRA tools' form in notebook 04: resize the chosen LoRA (fixed rank, or sd-scripts' dynamic rules).

    form = ResizeForm(rank=8)
    display(form.widget)                       # a person edits it ...
    resize_lora(src, out, **form.values())     # ... and the next cell reads its current values
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from lorakit.lora.tools.common import METHODS

STYLE = {"description_width": "110px"}
HINTS = {"fixed": "every module at this rank", "sv_ratio": "keep s_i > s_max / param (e.g. 2), at most rank",
         "sv_fro": "keep param² of Σs² (e.g. 0.9), at most rank", "sv_cumulative": "keep param of Σs (e.g. 0.9)"}


class ResizeForm:
    """Rank, method, its parameter and the saved precision of a resize."""

    def __init__(self, rank: int = 8, method: str = "fixed", param: float = 0.9, precision: str = "fp16") -> None:
        self.rank = w.BoundedIntText(value=rank, min=1, max=1024, description="rank", style=STYLE)
        self.method = w.Dropdown(options=list(METHODS), value=method, description="method", style=STYLE)
        self.param = w.FloatText(value=param, description="param", style=STYLE)
        self.precision = w.Dropdown(options=["fp16", "bf16", "float"], value=precision, description="precision",
                                    style=STYLE)
        self.hint = w.HTML(HINTS[method])
        self.method.observe(lambda change: setattr(self.hint, "value", HINTS[change["new"]]), names="value")
        self.widget = w.VBox([w.HBox([self.rank, self.method, self.hint]), w.HBox([self.param, self.precision])])

    def values(self) -> dict[str, Any]:
        method = self.method.value
        return {"rank": self.rank.value, "method": method, "param": None if method == "fixed" else self.param.value,
                "precision": self.precision.value}
