"""The validation loss of the last run, over its checkpoints: read from logs/validation.jsonl and plotted.

    rows = checkpoint_losses(read_validation(project))    # [{"checkpoint": "lora-000004.safetensors", "loss": ...}]
    validation_figure(rows)                                # the curve, its lowest checkpoint marked
"""

from __future__ import annotations

import json

from lorakit.project import Project


def read_validation(project: Project) -> list[dict]:
    """The rows of the newest run (resumed runs keep their session) in logs/validation.jsonl; [] if none."""
    path = project.validation_log
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut short by a crash: skip it
            continue
        if isinstance(row, dict) and isinstance(row.get("loss"), (int, float)) and "step" in row:
            rows.append(row)
    if not rows:
        return []
    last = rows[-1].get("session")
    return [r for r in rows if r.get("session") == last]


def checkpoint_losses(rows: list[dict]) -> list[dict]:
    """The step-0 baseline (checkpoint 'base model') and one row per checkpoint, in step order."""
    out = {}
    for r in rows:
        if r["step"] == 0 and "base model" not in out:
            out["base model"] = {**r, "checkpoint": "base model"}
        elif r.get("checkpoint"):
            out[r["checkpoint"]] = r
    base = [out.pop("base model")] if "base model" in out else []
    return base + sorted(out.values(), key=lambda r: r["step"])


def lowest(rows: list[dict]) -> dict | None:
    """The checkpoint (not the base model) where the validation loss bottoms out."""
    trained = [r for r in rows if r.get("checkpoint") and r["checkpoint"] != "base model"]
    return min(trained, key=lambda r: r["loss"]) if trained else None


def validation_figure(rows: list[dict], title: str = "validation loss (held-out images, fixed noise)"):
    """A matplotlib figure: the validation loss at the base model and each checkpoint, the lowest one marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 2.8))
    if not rows:
        ax.text(0.5, 0.5, "no validation loss yet: turn on validation.enabled (notebook 02) and train",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        names = [r["checkpoint"].removesuffix(".safetensors") for r in rows]
        x = range(len(rows))
        ema = [i for i, n in enumerate(names) if n.endswith("-ema")]  # EMA files (train/ema.py): their own line
        raw = [i for i in x if i not in ema]
        ax.plot(raw, [rows[i]["loss"] for i in raw], marker="o", label="raw" if ema else None)
        if ema:
            ax.plot(ema, [rows[i]["loss"] for i in ema], marker="s", linestyle="--", label="EMA")
        best = lowest(rows)
        if best is not None:
            i = rows.index(best)
            ax.plot([i], [best["loss"]], marker="*", markersize=16, color="tab:orange",
                    label=f"lowest: {names[i]} (step {best['step']})")
            ax.legend()
        ax.set_xticks(list(x), names, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("loss")
    ax.set_title(title)
    fig.tight_layout()
    plt.close(fig)  # returned for display; not drawn twice by the inline backend
    return fig
