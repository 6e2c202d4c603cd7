"""LoRA tools over lorakit's and other trainers' kohya / LyCORIS files: inspect, resize, merge, extract. Imports
lorakit.lora, lorakit.models and the shared modules (never train/ or evaluate/).

    report = inspect_lora("zkx.safetensors")                       # type, ranks, recipe, ‖ΔW‖ per block
    resize_lora("zkx.safetensors", "zkx-r8.safetensors", rank=8)   # or method="sv_fro", param=0.9
    merge_loras([("a.safetensors", 0.7), ("b.safetensors", 0.5)], "ab.safetensors", rank=16)
    merge_into_checkpoint([("a.safetensors", 1.0)], "base.safetensors", "base+a.safetensors")
    extract_lora("tuned.safetensors", "base.safetensors", "tuned-r16.safetensors", rank=16)
"""

from lorakit.lora.tools.extract import extract_lora
from lorakit.lora.tools.inspect import inspect_lora
from lorakit.lora.tools.merge import merge_into_checkpoint, merge_loras
from lorakit.lora.tools.resize import resize_lora

__all__ = ["extract_lora", "inspect_lora", "merge_into_checkpoint", "merge_loras", "resize_lora"]
