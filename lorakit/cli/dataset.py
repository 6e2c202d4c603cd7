"""Dataset commands of the CLI (registered by lorakit.cli):

    lorakit dataset check DIR [--json] [--resolution 512]      exit 1 when a file is unusable
    lorakit dataset import SRC PROJECT --token fr3dd!e --repeats 15 [--reg SRC --class-prompt woman]
    lorakit caption DIR --captioner blip|tagger|wd14 --model ID_OR_PATH [--prefix "photo of fr3dd!e"] [--overwrite]
    lorakit caption DIR --captioner wd14 --model FOLDER --general-threshold 0.35 --undesired-tags "1girl, solo"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_check(args) -> int:
    from lorakit.dataset.checks import CheckSettings, check_folder

    settings = CheckSettings(resolution=args.resolution, blur_threshold=args.blur_threshold,
                             duplicate_distance=args.duplicate_distance, max_megapixels=args.max_megapixels)
    report = check_folder(args.dir, settings)
    print(report.to_json() if args.json else report.format_table(only_flagged=args.flagged))
    return 1 if report.errors else 0


def _cmd_import(args) -> int:
    from lorakit.dataset.importing import import_images
    from lorakit.project import Project

    project = Project.create(args.project)
    reports = [import_images(args.src, project, args.token, args.repeats, follow_links=args.follow_links)]
    if args.reg:
        if not args.class_prompt:
            print("error: --reg needs --class-prompt (the class the images show, e.g. 'woman')", file=sys.stderr)
            return 2
        reports.append(import_images(args.reg, project, args.class_prompt, args.reg_repeats, reg=True,
                                     follow_links=args.follow_links))
    for r in reports:
        print(r.format_table())
    return 0


# the options of each captioner: given to another one, they are refused rather than ignored
CAPTIONER_OPTIONS = {
    "blip": {"beams": "num_beams", "min_length": "min_length", "max_length": "max_length", "prompt": "prompt"},
    "tagger": {"threshold": "threshold", "exclude": "exclude"},
    "wd14": {"general_threshold": "general_threshold", "character_threshold": "character_threshold",
             "undesired_tags": "undesired_tags", "always_first": "always_first_tags",
             "keep_underscores": "underscores_to_spaces", "rating_tags": "rating_tags",
             "tag_separator": "tag_separator"},
}
_TAG_LISTS = {"exclude", "undesired_tags", "always_first"}


def _caption_settings(args):
    """The captioner's settings from the command line (its dataclass's defaults for what is not given)."""
    from lorakit.dataset.captioners import BlipSettings, TaggerSettings
    from lorakit.dataset.captions import parse_tag_list
    from lorakit.errors import ConfigError

    for kind, options in CAPTIONER_OPTIONS.items():
        given = [o for o in options if getattr(args, o) is not None]
        if kind != args.captioner and given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise ConfigError(f"{flags}: an option of --captioner {kind}, not {args.captioner}.")
    if args.captioner == "wd14" and args.trust_remote_code:
        raise ConfigError("--trust-remote-code: a WD14 ONNX model carries no Python code; leave it off.")
    kwargs = {"model": args.model, "prefix": args.prefix, "batch_size": args.batch_size, "device": args.device,
              "allow_download": args.download}
    for option, name in CAPTIONER_OPTIONS[args.captioner].items():
        value = getattr(args, option)
        if value is not None:
            kwargs[name] = parse_tag_list(value) if option in _TAG_LISTS else (
                not value if option == "keep_underscores" else value)
    if args.captioner == "wd14":
        from lorakit.dataset.wd14 import Wd14Settings

        return Wd14Settings(**kwargs)
    kwargs["trust_remote_code"] = args.trust_remote_code
    return BlipSettings(**kwargs) if args.captioner == "blip" else TaggerSettings(**kwargs)


def _cmd_caption(args) -> int:
    from lorakit.dataset.captioners import REMOTE_CODE_WARNING, caption_folder, load_captioner
    from lorakit.dataset.captions import apply_changes
    from lorakit.dataset.checks import dataset_root

    settings = _caption_settings(args)
    if getattr(settings, "trust_remote_code", False):
        print(f"warning: {REMOTE_CODE_WARNING}", file=sys.stderr)
    captioner = load_captioner(settings)
    changes = caption_folder(captioner, dataset_root(args.dir), only_missing=not args.overwrite)
    for ch in changes:
        print(f"{ch.image.name}: {ch.after}")
    if args.dry_run:
        print(f"{len(changes)} captions proposed (--dry-run: nothing written)")
        return 0
    print(apply_changes(changes, overwrite=args.overwrite).summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dataset check``, ``dataset import`` and ``caption`` to the lorakit command line."""
    ds = sub.add_parser("dataset", help="check or import a dataset").add_subparsers(dest="dataset_command",
                                                                                      required=True)
    p = ds.add_parser("check", help="flag unusable, small, blurry, duplicate images and bad captions")
    p.add_argument("dir", type=Path, help="a dataset folder, a <repeats>_<token> folder or a project")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--flagged", action="store_true", help="list only the files with a finding")
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--blur-threshold", type=float, default=20.0, help="sharpness (0-100) below which = blurry")
    p.add_argument("--duplicate-distance", type=int, default=6, help="perceptual-hash bits (of 64)")
    p.add_argument("--max-megapixels", type=float, default=120.0)
    p.set_defaults(func=_cmd_check)

    p = ds.add_parser("import", help="copy images (and captions) into PROJECT/dataset/<repeats>_<token>/")
    p.add_argument("src", type=Path)
    p.add_argument("project", type=Path)
    p.add_argument("--token", default=None, help="trigger word (plain folders); overrides a kohya folder's")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--reg", type=Path, default=None, help="folder of regularization (class) images")
    p.add_argument("--class-prompt", default="", help="what the reg images show, e.g. 'woman'")
    p.add_argument("--reg-repeats", type=int, default=1)
    p.add_argument("--follow-links", action="store_true",
                   help="follow links that stay inside SRC (default: copy regular files only, list the links)")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("caption", help="caption images automatically (BLIP sentences or booru tags)")
    p.add_argument("dir", type=Path)
    p.add_argument("--captioner", choices=("blip", "tagger", "wd14"), required=True,
                   help="blip: sentences; tagger: a transformers tagger; wd14: a WD14 ONNX tagger (lorakit[wd14])")
    p.add_argument("--model", required=True, help="local folder, or a hub id (with --download)")
    p.add_argument("--download", action="store_true", help="allow fetching a hub id from huggingface.co")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="blip/tagger: run Python code shipped in the model repository (only if you trust it)")
    p.add_argument("--prefix", default="", help='e.g. "photo of fr3dd!e"')
    p.add_argument("--overwrite", action="store_true", help="recaption images that have a caption (backed up)")
    p.add_argument("--dry-run", action="store_true", help="print the captions, write nothing")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--beams", type=int, default=None, help="blip: beam search width (default 3)")
    p.add_argument("--min-length", type=int, default=None, help="blip: in tokens (default 5)")
    p.add_argument("--max-length", type=int, default=None, help="blip: in tokens (default 40)")
    p.add_argument("--prompt", default=None, help="blip: text the caption continues, e.g. 'a photo of'")
    p.add_argument("--threshold", type=float, default=None, help="tagger: minimum tag probability (default 0.35)")
    p.add_argument("--exclude", default=None, help="tagger: tags to drop (default: the rating tags)")
    p.add_argument("--general-threshold", type=float, default=None, help="wd14: for general tags (default 0.35)")
    p.add_argument("--character-threshold", type=float, default=None,
                   help="wd14: for character tags (default 0.85)")
    p.add_argument("--undesired-tags", default=None, help='wd14: tags to drop, e.g. "1girl, solo"')
    p.add_argument("--always-first", default=None, help="wd14: tags put first (in this order) when found")
    p.add_argument("--keep-underscores", action="store_const", const=True, default=None,
                   help="wd14: write red_hair, not red hair")
    p.add_argument("--rating-tags", action="store_const", const=True, default=None,
                   help="wd14: add the most probable rating tag (general, sensitive, ...) first")
    p.add_argument("--tag-separator", default=None, help="wd14: between tags (default ', ')")
    p.set_defaults(func=_cmd_caption)

