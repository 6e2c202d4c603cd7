"""LoRA tool commands of the CLI (registered by lorakit.cli):

    lorakit lora inspect FILE [--json] [--heatmap blocks.png]
    lorakit lora resize FILE OUT --rank 8 [--method sv_fro --param 0.9] [--conv-rank 4] [--precision fp16]
    lorakit lora merge OUT A.safetensors:0.7 B.safetensors:0.5 [--rank 16]      ranks concatenated, or SVD to --rank
    lorakit lora merge OUT A.safetensors:1 --into base.safetensors [--config DIR] [--precision fp16|bf16|float|keep]
    lorakit lora extract TUNED BASE OUT --rank 32 [--conv-rank 8] [--no-text-encoder] [--config DIR]

No command overwrites a file: an existing OUT is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# lorakit.lora.tools.common.METHODS, written out: `lorakit --help` must not import torch (a test holds them equal)
RESIZE_METHODS = ("fixed", "sv_ratio", "sv_fro", "sv_cumulative")


def parse_weighted(text: str) -> tuple[Path, float]:
    """'a.safetensors:0.7' -> (a.safetensors, 0.7); no ':weight' means 1 (a Windows drive's colon is not one)."""
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return Path(head), float(tail)
        except ValueError:
            pass
    return Path(text), 1.0


def _cmd_inspect(args) -> int:
    from lorakit.lora.tools import inspect_lora

    report = inspect_lora(args.file)
    print(report.to_json() if args.json else report.format())
    if args.heatmap:
        report.heatmap(args.heatmap)
        if not args.json:
            print(f"heatmap written to {args.heatmap}")
    return 0


def _cmd_resize(args) -> int:
    from lorakit.lora.tools import resize_lora

    report = resize_lora(args.file, args.out, args.rank, method=args.method, param=args.param,
                         conv_rank=args.conv_rank, precision=args.precision)
    print(report.format(limit=args.show))
    return 0


def _cmd_merge(args) -> int:
    from lorakit.lora.tools import merge_into_checkpoint, merge_loras

    loras = [parse_weighted(x) for x in args.loras]
    if args.into:
        report = merge_into_checkpoint(loras, args.into, args.out, precision=args.precision or "fp16",
                                       config=args.config)
        print(report.format(limit=0))
    else:
        report = merge_loras(loras, args.out, rank=args.rank, conv_rank=args.conv_rank,
                             precision=args.precision or "fp16")
        print(report.format(limit=args.show))
    return 0


def _cmd_extract(args) -> int:
    from lorakit.lora.tools import extract_lora

    report = extract_lora(args.tuned, args.base, args.out, args.rank, conv_rank=args.conv_rank,
                          text_encoder=not args.no_text_encoder, precision=args.precision, config=args.config)
    print(report.format(limit=args.show))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `lorakit lora` and its subcommands to the main parser."""
    lora = sub.add_parser("lora", help="inspect, resize, merge and extract LoRA files (kohya / LyCORIS)")
    cmds = lora.add_subparsers(dest="lora_command", required=True)
    precisions = ("fp16", "bf16", "float")

    p = cmds.add_parser("inspect", help="network type, rank/alpha, training recipe, ‖ΔW‖ per block")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="everything as JSON, per module too")
    p.add_argument("--heatmap", type=Path, help="write the blocks × parts heatmap of ‖ΔW‖ to this PNG")
    p.set_defaults(func=_cmd_inspect)

    p = cmds.add_parser("resize", help="lower the rank by SVD (fixed, or sd-scripts' dynamic rules)")
    p.add_argument("file", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--rank", type=int, required=True, help="the new rank (dynamic methods: the most kept)")
    p.add_argument("--method", choices=RESIZE_METHODS, default="fixed")
    p.add_argument("--param", type=float, help="sv_ratio: s_max/s_min kept (e.g. 2); sv_fro, sv_cumulative: share "
                                               "kept (e.g. 0.9)")
    p.add_argument("--conv-rank", type=int, help="rank of 3×3 conv modules (default: --rank)")
    p.add_argument("--precision", choices=precisions, default="fp16")
    p.add_argument("--show", type=int, default=20, help="modules listed (worst error first)")
    p.set_defaults(func=_cmd_resize)

    p = cmds.add_parser("merge", help="LoRAs into one at given weights, or into a base checkpoint (--into)")
    p.add_argument("out", type=Path)
    p.add_argument("loras", nargs="+", help="FILE[:WEIGHT] ... (weight 1 when left out)")
    p.add_argument("--rank", type=int, help="SVD the sum to this rank (default: ranks concatenated, exact)")
    p.add_argument("--conv-rank", type=int, help="with --rank: the rank of 3×3 conv modules")
    p.add_argument("--into", type=Path, help="a single-file checkpoint: write it with the LoRAs merged in")
    p.add_argument("--config", type=Path, help="with --into: a diffusers folder describing a non-standard UNet")
    p.add_argument("--precision", choices=(*precisions, "keep"), help="fp16 by default; keep: as the checkpoint")
    p.add_argument("--show", type=int, default=20)
    p.set_defaults(func=_cmd_merge)

    p = cmds.add_parser("extract", help="a LoRA from a fine-tuned checkpoint minus its base")
    p.add_argument("tuned", type=Path)
    p.add_argument("base", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--conv-rank", type=int, help="also the UNet's 3×3 convs, at this rank (a LoCon)")
    p.add_argument("--no-text-encoder", action="store_true", help="UNet only")
    p.add_argument("--config", type=Path, help="a diffusers folder describing a non-standard UNet")
    p.add_argument("--precision", choices=precisions, default="fp16")
    p.add_argument("--show", type=int, default=20)
    p.set_defaults(func=_cmd_extract)
