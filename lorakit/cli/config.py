"""`lorakit config ...`: check, explain, import and export training configs.

    lorakit config check my-project/lorakit.toml [--vram 8]   # + the GPU memory it needs (lorakit.train.memory)
    lorakit config show [--section optimizer]
    lorakit config import-kohya settings.json -o my-project/lorakit.toml
    lorakit config import-kohya sd-scripts-config.toml -o my-project/lorakit.toml
    lorakit config export-kohya my-project/lorakit.toml -o kohya.json
    lorakit config init my-project --preset character
    lorakit config steps my-project [--kind character] [--minutes 30] [--vram 12]   # + suggested repeats/epochs/batch
    lorakit config speed my-project [--batches 1,2,4,8]     # measure steps/s per batch size on this machine
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lorakit.config.schema import SECTIONS, TrainConfig, advice, iter_fields
from lorakit.errors import ConfigError


def _cmd_check(args) -> int:
    cfg = TrainConfig.load(args.file)
    print(f"{args.file}: OK ({sum(1 for _ in iter_fields(cfg))} settings)")
    for line in advice(cfg):
        print(f"  note: {line}")
    from lorakit.train.memory import GB, report

    for line in report(cfg, int(args.vram * GB) if args.vram else None):
        print(line)
    return 0


def _cmd_show(args) -> int:
    cfg = TrainConfig.load(args.file) if args.file else TrainConfig()
    if args.markdown:
        print(settings_markdown(cfg, args.section))
        return 0
    for section, name, value, f in iter_fields(cfg):
        if args.section and section != args.section:
            continue
        choices = f.metadata.get("choices")
        print(f"{section}.{name} = {value!r}" + (f"   [{' | '.join(choices)}]" if choices else ""))
        print(f"    {f.metadata['help']}")
    return 0


def settings_markdown(cfg: TrainConfig, only: str | None = None) -> str:
    """Every setting as Markdown tables, one per section: the reference docs, made from the same metadata."""
    out: list[str] = []
    previous = ""
    for section, name, value, f in iter_fields(cfg):
        if only and section != only:
            continue
        if section != previous:
            out += ["", f"## [{section}]", "", "| setting | value | what it does |", "|---|---|---|"]
            previous = section
        choices = f" One of: {', '.join(f.metadata['choices'])}." if f.metadata.get("choices") else ""
        text = (f.metadata["help"] + choices).replace("|", "\\|")
        out.append(f"| `{name}` | `{value!r}` | {text} |")
    return "\n".join(out).strip()


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it.")


def _cmd_import(args) -> int:
    from lorakit.config.kohya import import_kohya
    from lorakit.config.sd_scripts import import_sd_scripts_toml

    # a .toml is sd-scripts' --config_file; anything else the kohya_ss GUI's JSON (or pasted text)
    result = (import_sd_scripts_toml if Path(args.file).suffix.lower() == ".toml" else import_kohya)(Path(args.file))
    out = Path(args.output)
    _refuse_overwrite(out, args.force)
    result.config.save(out)
    if not args.quiet:
        print(result.report())
    print(f"\nwrote {out} ({len(result.mapped)} mapped, {len(result.unsupported)} not supported, "
          f"{len(result.ignored)} ignored)")
    return 0


def _cmd_export(args) -> int:
    from lorakit.config.kohya import export_kohya_text
    from lorakit.files import atomic_write_text

    out = Path(args.output)
    _refuse_overwrite(out, args.force)
    atomic_write_text(out, export_kohya_text(TrainConfig.load(args.file)))
    print(f"wrote {out}")
    return 0


def _cmd_init(args) -> int:
    from lorakit.config.presets import apply_preset
    from lorakit.project import Project

    project = Project.create(args.project)
    _refuse_overwrite(project.config_path, args.force)
    cfg = apply_preset(args.preset) if args.preset else TrainConfig()
    cfg.save(project.config_path)
    print(f"wrote {project.config_path}" + (f" (preset {args.preset})" if args.preset else ""))
    return 0


def _cmd_steps(args) -> int:
    from lorakit.config.presets import describe_recipe
    from lorakit.project import Project
    from lorakit.train.steps import count_project, plan_steps, suggest_settings

    project = Project.open(args.project)
    cfg = project.load_config()
    count = count_project(cfg, project.root)
    plan = plan_steps(cfg, count, kind=args.kind)
    print(plan.summary())
    print(plan.table())
    print(plan.guidance)
    print(describe_recipe(cfg))
    if count.images:
        vram = int(args.vram * 2**30) if args.vram else None
        print(suggest_settings(cfg, count, args.kind or "character", args.minutes, vram_bytes=vram).text(cfg))
    return 0


def _cmd_speed(args) -> int:
    from lorakit.project import Project
    from lorakit.train.speed_probe import measure_batch_speeds

    project = Project.open(args.project)
    cfg = project.load_config()
    try:
        batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else None
    except ValueError:
        raise ConfigError(f"--batches {args.batches!r}: give batch sizes as numbers, e.g. 1,2,4,8") from None
    print(measure_batch_speeds(cfg, batches, args.steps).text())
    print(f"recorded: `lorakit config steps {args.project}` now suggests a batch size from these speeds.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `lorakit config` and its subcommands to the main parser."""
    from lorakit.config.presets import PRESETS

    config = sub.add_parser("config", help="check, explain, import (kohya_ss) and export training configs")
    cmds = config.add_subparsers(dest="config_command", required=True)

    p = cmds.add_parser("check", help="validate a lorakit.toml and print advice")
    p.add_argument("file", type=Path)
    p.add_argument("--vram", type=float, metavar="GB",
                   help="compare the memory estimate with a card of this many GB (default: this machine's GPU)")
    p.set_defaults(func=_cmd_check)

    p = cmds.add_parser("show", help="every setting with its explanation (defaults, or the values in FILE)")
    p.add_argument("file", nargs="?", type=Path)
    p.add_argument("--section", choices=list(SECTIONS))
    p.add_argument("--markdown", action="store_true", help="as Markdown tables (for docs)")
    p.set_defaults(func=_cmd_show)

    p = cmds.add_parser("import-kohya", help="read kohya_ss GUI settings (JSON, pasted text is fine) or an sd-scripts config .toml")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", default="lorakit.toml")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the mapping report")
    p.set_defaults(func=_cmd_import)

    p = cmds.add_parser("export-kohya", help="write kohya_ss GUI settings for a lorakit.toml")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", default="kohya.json")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = cmds.add_parser("init", help="write a project's lorakit.toml from the defaults or a preset")
    p.add_argument("project", type=Path)
    p.add_argument("--preset", choices=list(PRESETS))
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_cmd_init)

    p = cmds.add_parser("steps", help="steps per epoch and in all for a project's dataset and config")
    p.add_argument("project", type=Path)
    p.add_argument("--kind", default="", choices=["", "character", "style"])
    p.add_argument("--minutes", type=float, default=0,
                   help="time budget for the suggested repeats/epochs, at this machine's measured speed")
    p.add_argument("--vram", type=float, metavar="GB",
                   help="check the suggested batch against a card of this many GB (default: this machine's GPU)")
    p.set_defaults(func=_cmd_steps)

    p = cmds.add_parser("speed", help="measure training steps/s at several batch sizes on this machine")
    p.add_argument("project", type=Path)
    p.add_argument("--batches", default="", help="comma-separated batch sizes (default: 1,2,4,8 on a GPU or for a "
                   "tiny model, 1,2 for a real model on a CPU)")
    p.add_argument("--steps", type=int, default=3,
                   help="timed steps per batch size, at least (and at least 1 s of them), after one untimed")
    p.set_defaults(func=_cmd_speed)
