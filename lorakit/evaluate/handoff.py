"""Take a grid elsewhere: the same axes for AUTOMATIC1111's X/Y/Z plot, and a ComfyUI workflow of its cells.

    from lorakit.evaluate.handoff import a1111_xyz_text, comfyui_workflow
    print(a1111_xyz_text(spec, cells, base_name))        # paste into txt2img + Script "X/Y/Z plot"
    json.dumps(comfyui_workflow(cells, base_name))       # API format: drop on ComfyUI, or POST it to /prompt

In A1111 the checkpoint and strength axes become two "Prompt S/R" axes on one ``<lora:...>`` tag: X swaps the
front of the tag (``<lora:name-000001:`` -> ``<lora:name-000002:``), Y its weight (``:1>`` -> ``:0.5>``), so the
two never step on each other. Seeds give the same image only in the same tool: A1111 and ComfyUI make their
starting noise differently from diffusers.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lorakit.evaluate.grid_spec import Axis, Cell, GridSpec
from lorakit.lora.prompt_tags import parse_prompt

A1111_AXIS = {"seed": "Seed", "steps": "Steps", "cfg": "CFG Scale", "sampler": "Sampler", "prompt": "Prompt S/R",
              "checkpoint": "Prompt S/R", "strength": "Prompt S/R"}
# A1111 sampler name -> ComfyUI (sampler_name, scheduler)
COMFY_SAMPLERS = {
    "Euler a": ("euler_ancestral", "normal"),
    "Euler": ("euler", "normal"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"),
    "DPM++ SDE Karras": ("dpmpp_sde", "karras"),
    "DDIM": ("ddim", "ddim_uniform"),
    "UniPC": ("uni_pc", "normal"),
    "Heun": ("heun", "normal"),
    "LMS": ("lms", "normal"),
    "PNDM": ("ipndm", "normal"),  # ComfyUI has no plain PNDM: its improved PNDM is the nearest
    "DPM2": ("dpm_2", "normal"),
    "DPM2 a": ("dpm_2_ancestral", "normal"),
    "DPM Solver": ("dpmpp_2m", "normal"),  # ComfyUI offers only the ++ form of multistep DPM-Solver
    "DPM++ 2S": ("dpmpp_2m", "normal"),  # no non-ancestral singlestep in ComfyUI: the multistep one is nearest
}


def csv_values(values: list[str]) -> str:
    """Values joined as A1111's axis box reads them (comma-separated, quoted when they hold a comma)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def lora_tag(checkpoint: str | Path, strength: float) -> str:
    """``<lora:name:weight>`` as A1111 writes it."""
    return f"<lora:{Path(checkpoint).stem}:{strength:g}>"


def axis_values(axis: Axis) -> list[str]:
    """The values of an axis as A1111 wants them typed."""
    if axis.kind == "checkpoint":
        return [f"<lora:{Path(v).stem}:" for v in axis.values]
    if axis.kind == "strength":
        return [f":{v:g}>" for v in axis.values]
    return [f"{v:g}" if isinstance(v, float) else str(v) for v in axis.values]


def a1111_prompt(spec: GridSpec, first: Cell) -> str:
    """The grid's first cell as an A1111 prompt: the LoRA tag carries the first checkpoint and strength."""
    if not first.checkpoint:
        return first.prompt
    return f"{first.prompt} {lora_tag(first.checkpoint, first.strength)}"


def a1111_xyz_text(spec: GridSpec, first: Cell, size: tuple[int, int], model: str) -> str:
    """Ready-to-paste A1111 generation parameters plus the X/Y/Z plot axes of a grid."""
    axes = [(name, a) for name, a in (("X", spec.x), ("Y", spec.y), ("Z", spec.z)) if a is not None]
    files = sorted({Path(c).name for _, a in axes if a.kind == "checkpoint" for c in a.values}
                   | ({Path(first.checkpoint).name} if first.checkpoint else set()))
    lines = [
        "# AUTOMATIC1111 / Forge: the same grid with the X/Y/Z plot script.",
        f"# 1. Copy into stable-diffusion-webui/models/Lora/: {', '.join(files) or '(no LoRA)'}",
        "# 2. txt2img: paste the lines under 'parameters' into the prompt box and press the",
        "#    'Read generation parameters' button (the arrow under Generate); set the size and model by hand.",
        "# 3. Script: X/Y/Z plot, with these axis types and values.",
        "# The images match in spirit, not pixel for pixel: A1111 makes its starting noise its own way.",
        "",
        "parameters",
        a1111_prompt(spec, first),
        *([f"Negative prompt: {first.negative_prompt}"] if first.negative_prompt else []),
        f"Steps: {first.steps}, Sampler: {first.sampler}, CFG scale: {first.cfg:g}, Seed: {first.seed}, "
        f"Size: {size[0]}x{size[1]}, Model: {model}",
        "",
    ]
    for name, axis in axes:
        lines += [f"{name} type: {A1111_AXIS[axis.kind]}", f"{name} values: {csv_values(axis_values(axis))}"]
    return "\n".join(lines) + "\n"


def a1111_script_line(spec: GridSpec) -> str:
    """The 'Script: X/Y/Z plot, X Type: ..., X Values: ...' part that A1111 writes into a grid's infotext."""
    parts = ["Script: X/Y/Z plot"]
    for name, axis in (("X", spec.x), ("Y", spec.y), ("Z", spec.z)):
        if axis is not None:
            values = csv_values(axis_values(axis)).replace('"', "'")
            parts += [f"{name} Type: {A1111_AXIS[axis.kind]}", f'{name} Values: "{values}"']
    return ", ".join(parts)


class _Graph:
    """A ComfyUI API-format graph that reuses a node when the same one is asked for twice."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, str] = {}

    def add(self, class_type: str, title: str = "", **inputs: Any) -> str:
        key = repr((class_type, sorted(inputs.items())))
        if key not in self._seen:
            node_id = str(len(self.nodes) + 1)
            self.nodes[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title or class_type}}
            self._seen[key] = node_id
        return self._seen[key]


def comfyui_workflow(cells: list[Cell], base_checkpoint: str, size: tuple[int, int], labels: list[str],
                     prefix: str = "lorakit") -> dict[str, Any]:
    """A ComfyUI API-format workflow with one branch per cell: CheckpointLoaderSimple -> LoraLoader ->
    CLIPTextEncode -> KSampler -> VAEDecode -> SaveImage; ``labels`` name each cell's saved images."""
    g = _Graph()
    ckpt = g.add("CheckpointLoaderSimple", "base model", ckpt_name=base_checkpoint)
    latent = g.add("EmptyLatentImage", width=size[0], height=size[1], batch_size=1)
    for cell, label in zip(cells, labels, strict=True):
        text, tags = parse_prompt(cell.prompt)  # ComfyUI reads no <lora:...> tags: they become LoraLoaders
        loras = ([(Path(cell.checkpoint).name, cell.strength, cell.strength, "")]
                 if cell.checkpoint and cell.strength else [])
        # A1111's te/unet map onto LoraLoader's clip/model strengths; ComfyUI has no dyn, so the title says so
        loras += [(f"{t.name}.safetensors", t.unet, t.te, f" (dyn={t.dyn} not applied)" if t.dyn else "")
                  for t in tags if t.unet or t.te]
        model, clip = [ckpt, 0], [ckpt, 1]
        for name, unet, te, note in loras:  # chained, as ComfyUI stacks LoRAs
            title = f"<lora:{Path(name).stem}:{te:g}>" if te == unet else f"<lora:{Path(name).stem}:{te:g}:{unet:g}>"
            lora = g.add("LoraLoader", title + note, model=model, clip=clip,
                         lora_name=name, strength_model=unet, strength_clip=te)
            model, clip = [lora, 0], [lora, 1]
        positive = g.add("CLIPTextEncode", "positive", text=text, clip=clip)
        negative = g.add("CLIPTextEncode", "negative", text=cell.negative_prompt, clip=clip)
        sampler_name, scheduler = COMFY_SAMPLERS[cell.sampler]
        sampled = g.add("KSampler", label, model=model, positive=[positive, 0], negative=[negative, 0],
                        latent_image=[latent, 0], seed=cell.seed, steps=cell.steps, cfg=cell.cfg,
                        sampler_name=sampler_name, scheduler=scheduler, denoise=1.0)
        decoded = g.add("VAEDecode", samples=[sampled, 0], vae=[ckpt, 2])
        g.add("SaveImage", label, images=[decoded, 0], filename_prefix=f"{prefix}/{_safe(label)}")
    return g.nodes


def comfy_checkpoint_name(base_source: str) -> str:
    """The file name ComfyUI's CheckpointLoaderSimple expects for our base model (a single-file checkpoint)."""
    path = Path(base_source)
    return path.name if path.suffix in (".safetensors", ".ckpt") else f"{path.name}.safetensors"


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_") or "cell"
