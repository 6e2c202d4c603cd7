"""The command line: the same functions the notebooks call.

    lorakit demo [DIR]                 the whole path on the demo data and model, offline
    lorakit doctor                     setup check
    lorakit notebooks DIR              copy the five notebooks into DIR, then: jupyter lab DIR
    lorakit --version
    lorakit train PROJECT [--resume]   (also: accelerate launch -m lorakit train PROJECT)
    lorakit grid PROJECT [--x checkpoint] [--y strength=1.0,0.8,0.6] [--prompt "..."]
    lorakit export PROJECT [--lora FILE] [--to DIR] [--strength S]   into A1111 / Forge / ComfyUI
    (train, grid and doctor take --download: a hub id as base model is fetched only then)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lorakit import __version__
from lorakit.cli import config as cli_config
from lorakit.cli import dataset as cli_dataset
from lorakit.cli import lora as cli_lora
from lorakit.cli import notebooks as cli_notebooks
from lorakit.errors import LorakitError
from lorakit.files import explain_os_error


def _cmd_doctor(args) -> int:
    from lorakit.doctor import run_checks

    rows = run_checks(args.base_model or "", args.project, args.single_file_config, download=args.download)
    width = max(len(r.check) for r in rows)
    for r in rows:
        print(f"{r.status.upper():5} {r.check:<{width}}  {r.value}" + (f"\n      -> {r.advice}" if r.advice else ""))
    return 1 if any(r.status == "fail" for r in rows) else 0


def _cmd_demo(args) -> int:
    from lorakit.demo.run import run_demo

    result = run_demo(args.dir, epochs=args.epochs)
    if result.get("interrupted"):  # run_demo printed where it stopped and how to resume; no grid was drawn
        return 130
    print(f"LoRA: {result['lora']}")
    print(f"grid: {result['grid']}")
    print(f"The notebooks: lorakit notebooks DIR, then jupyter lab DIR   "
          f"(set LORAKIT_PROJECT={result['project']} to continue there)")
    return 0


def _cmd_train(args) -> int:
    from lorakit.project import Project
    from lorakit.train.loop import Callback, train
    from lorakit.train.progress import default_callbacks

    project = Project.open(args.project)
    cfg = project.load_config()
    _hub_model(cfg.model.base_model, args.download, f"lorakit train {args.project} --download")
    if args.max_steps:
        cfg.training.max_train_steps = args.max_steps
    if args.init_from:
        cfg.network.init_from = str(Path(args.init_from).expanduser().resolve())
    callbacks: list[Callback] = default_callbacks(project, cfg)
    result = train(project, cfg, callbacks=callbacks if _is_main() else [], resume=args.resume)
    if args.print_checksum:
        # one write with its newline, flushed: the ranks share one stdout pipe
        sys.stdout.write(f"rank {result.process_index}/{result.num_processes} weights checksum: "
                         f"{result.weights_checksum}\n")
        sys.stdout.flush()
    if not _is_main():
        return 0
    if result.interrupted:  # Ctrl-C or SIGTERM: where it stopped, what was kept, how to go on
        from lorakit.train.outputs import interrupted_message, resume_command

        print(interrupted_message(project, cfg.saving.output_name, result, resume_command(args.project)))
        return 130
    print(f"{result.steps} steps in {result.seconds:.1f}s; last loss {result.losses[-1]:.4f}" if result.losses else "")
    for p in result.checkpoints:
        print(p)
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _cmd_grid(args) -> int:
    from lorakit.config.sample_prompts import parse_sample_prompt
    from lorakit.evaluate.grid import make_grid
    from lorakit.evaluate.grid_spec import GridSpec, parse_axis
    from lorakit.project import Project

    project = Project.open(args.project)
    cfg = project.load_config() if project.config_path.is_file() else None
    spec = GridSpec(
        prompt=args.prompt or (parse_sample_prompt(cfg.sampling.sample_prompts[0]).prompt
                               if cfg and cfg.sampling.sample_prompts else ""),
        x=parse_axis(args.x, project),
        y=parse_axis(args.y, project),
        z=parse_axis(args.z, project) if args.z else None,
        negative_prompt=args.negative, steps=args.steps, cfg=args.cfg, seed=args.seed, sampler=args.sampler,
    )
    if not spec.prompt:
        print("give --prompt (no sample prompt in the project's config)", file=sys.stderr)
        return 2
    base_model = args.base_model or (cfg.model.base_model if cfg else "")
    _hub_model(base_model, args.download, f"lorakit grid {args.project} --download")
    out = make_grid(project, spec, base_model=base_model)
    for path in out.paths + out.exports:  # the grids, then their A1111 and ComfyUI files
        print(path)
    print(out.summary())  # cells, images sampled, batches, reuse, time and images/s
    return 0


def _hub_model(source: str, download: bool, command: str) -> None:
    """A hub id as base model: downloaded now when asked (progress bars, then where the files went), else taken
    from the local cache, else one sentence that names ``command``."""
    from lorakit.models.loading import fetch_hub_model

    fetch_hub_model(source, download=download, retry=f"run `{command}`")


def _cmd_export(args) -> int:
    from lorakit.evaluate.export import export_lora
    from lorakit.project import Project

    done = export_lora(Project.open(args.project), args.lora, to=args.to, strength=args.strength)
    print(done.summary())
    return 0


DOWNLOAD_HELP = "let a hub id as base model download from the Hugging Face hub (otherwise: local files only)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorakit", description="Train a LoRA on your own images, offline.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"lorakit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check GPU, memory, disk, libraries and the base model")
    p.add_argument("--base-model", default="")
    p.add_argument("--project", default=None)
    p.add_argument("--single-file-config", default=None,
                   help="a diffusers folder whose configs (and tokenizers) describe a single-file --base-model")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("demo", help="run all five steps on the demo data and model")
    p.add_argument("dir", nargs="?", default="demo-project", type=Path)
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs (fewer = faster)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train the project's LoRA from its lorakit.toml")
    p.add_argument("project", type=Path)
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the interrupted run from output/state/")
    start.add_argument("--init-from", metavar="LORA", default="",
                       help="start a new run from this LoRA file's weights (a warm start: fresh optimizer and "
                            "schedule; same network type and rank)")
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--print-checksum", action="store_true", help="print a fingerprint of the trained weights")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("grid", help="X/Y(/Z) grid of checkpoints, strengths, prompts, seeds, ...")
    p.add_argument("project", type=Path)
    p.add_argument("--x", default="checkpoint", help="axis: checkpoint, strength=1,0.8, seed=1,2, cfg=4,7, "
                                                      "steps=20,30, sampler=Euler a|DDIM, prompt=red|blue (S/R)")
    p.add_argument("--y", default="strength=1.0,0.75,0.5")
    p.add_argument("--z", default=None)
    p.add_argument("--prompt", default="")
    p.add_argument("--negative", default="")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=7.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sampler", default="Euler a")
    p.add_argument("--base-model", default="")
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)
    p.set_defaults(func=_cmd_grid)

    p = sub.add_parser("export", help="copy a LoRA into your AUTOMATIC1111 / Forge / ComfyUI LoRA folder")
    p.add_argument("project", type=Path)
    p.add_argument("--lora", default=None, help="the LoRA file (default: the project's last one)")
    p.add_argument("--to", default=None, help="the models/Lora (or models/loras) folder, or the install folder "
                                              "(default: the first install found, or $LORAKIT_WEBUI_DIR)")
    p.add_argument("--strength", type=float, default=None, help="the suggested weight in A1111's card (default 1)")
    p.set_defaults(func=_cmd_export)

    # ---- more commands: each issue's module adds its own below this line (register(sub)) ----
    cli_dataset.register(sub)
    cli_config.register(sub)
    cli_lora.register(sub)
    cli_notebooks.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; every error of lorakit's own, or of a library at the edges (files, images, TOML, safetensors),
    is printed as one line (``--debug``: with its traceback) and exits with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # outside a training loop (which reports its own stop): nothing to resume from
        print("\nstopped (interrupted)", file=sys.stderr)
        return 130
    except _USER_ERRORS as e:
        if args.debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2


def _safetensors_error() -> type[Exception]:
    from safetensors import SafetensorError

    return SafetensorError


# what a bad file, setting or model raises: a sentence for the user, not a bug in lorakit
_USER_ERRORS = (LorakitError, OSError, ValueError, RuntimeError, _safetensors_error())


def one_line(error: BaseException) -> str:
    """The error's message (its type when it has none; a file-system error with what to do); file names that are not
    UTF-8 are printed escaped."""
    if isinstance(error, OSError) and error.errno is not None:
        text = explain_os_error(error)
    else:
        text = str(error).strip() or type(error).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


if __name__ == "__main__":
    sys.exit(main())
