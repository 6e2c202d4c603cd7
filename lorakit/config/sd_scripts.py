"""Import an sd-scripts ``--config_file`` TOML (the argparse names of train_network.py / sdxl_train_network.py)
by translating it into kohya_ss GUI keys and reading those with the GUI import, so both share one report.

    from lorakit.config.sd_scripts import import_sd_scripts_toml
    result = import_sd_scripts_toml("my_lora.toml")   # a KohyaImport: .config, .report()

sd-scripts flattens the file's tables ([model_arguments], [training_arguments], ...) into one namespace; so does
this. ``sample_prompts`` there is a path to a prompt file: a ``.txt`` one is read (relative to the TOML's folder).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from lorakit.config.kohya import KohyaImport, import_kohya
from lorakit.config.schema import tomllib
from lorakit.errors import ConfigError

# sd-scripts argparse name -> kohya_ss GUI key, where the two differ
RENAMED = {"optimizer_type": "optimizer", "resolution": "max_resolution", "network_dropout": "network_dropout",
           "network_weights": "lora_network_weights"}
# LyCORIS's kohya module: network_args algo=... -> the GUI's LoRA_type
LYCORIS_ALGOS = {"locon": "LyCORIS/LoCon", "lora": "LyCORIS/LoCon", "loha": "LyCORIS/LoHa", "lokr": "LyCORIS/LoKr"}


def import_sd_scripts_toml(source: str | Path) -> KohyaImport:
    """Read an sd-scripts config TOML (a path or its text) into a TrainConfig with the kohya import report."""
    text = str(source)
    looks_like_path = "\n" not in text and "=" not in text and "[" not in text  # TOML text has one of them
    path = Path(source) if isinstance(source, Path) or looks_like_path else None
    if path is not None and not path.is_file():
        raise ConfigError(f"{path} is not a file: give the sd-scripts config TOML (--config_file).")
    text = path.read_text(encoding="utf-8-sig") if path is not None else text
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sd-scripts config: {e}; fix the TOML, then import again.") from e
    flat = _flatten(data)
    return import_kohya(gui_keys(flat, path.parent if path is not None else Path.cwd()))


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    """sd-scripts' read: every table's keys in one namespace (a later key wins, as argparse would have it)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value))
        else:
            out[key] = value
    return out


def gui_keys(args: dict[str, Any], folder: Path) -> dict[str, Any]:
    """sd-scripts arguments as the kohya_ss GUI keys the GUI import reads."""
    gui: dict[str, Any] = {}
    for key, value in args.items():
        if key in ("network_module", "network_args", "network_train_unet_only", "network_train_text_encoder_only",
                   "xformers", "sdpa", "optimizer_args", "sample_prompts", "max_train_epochs",
                   "use_8bit_adam", "use_lion_optimizer"):
            continue  # read together below
        gui[RENAMED.get(key, key)] = value
    _network(args, gui)
    _learning_rates(args, gui)
    if args.get("sdpa"):
        gui["xformers"] = "sdpa"
    elif "xformers" in args:
        gui["xformers"] = "xformers" if args["xformers"] else "none"
    if args.get("use_8bit_adam"):
        gui.setdefault("optimizer", "AdamW8bit")
    if args.get("use_lion_optimizer"):
        gui.setdefault("optimizer", "Lion")
    if "optimizer_args" in args:
        value = args["optimizer_args"]
        gui["optimizer_args"] = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    if "max_train_epochs" in args:
        gui["max_train_epochs"] = args["max_train_epochs"]
    if "sample_prompts" in args:
        gui["sample_prompts"] = _prompt_file(args["sample_prompts"], folder)
    return gui


def _network(args: dict[str, Any], gui: dict[str, Any]) -> None:
    module = str(args.get("network_module", "networks.lora"))
    net_args = _pairs(args.get("network_args", []))
    if module == "networks.lora":
        convs = "conv_dim" in net_args
        gui["LoRA_type"] = "Kohya LoCon" if convs else "Standard"
    elif module == "lycoris.kohya":
        algo = str(net_args.pop("algo", "lora")).lower()
        # an algorithm lorakit lacks (ia3, glora, ...) is flagged by the GUI import with what lorakit trains
        gui["LoRA_type"] = LYCORIS_ALGOS.get(algo, f"LyCORIS/{algo}")
        if str(net_args.pop("dora_wd", "false")).lower() == "true":
            gui["dora_wd"] = True
    else:
        gui["LoRA_type"] = module  # flagged by the GUI import: lorakit trains lora, locon, loha, lokr, dora
    for key, value in net_args.items():
        gui[key] = value  # conv_dim, conv_alpha, and the rest: mapped, ignored or flagged by name


def _pairs(value: Any) -> dict[str, str]:
    """network_args as sd-scripts writes them (a list of 'key=value', or one string) -> a dict."""
    items = value if isinstance(value, list) else shlex.split(str(value))
    out = {}
    for item in items:
        key, sep, val = str(item).partition("=")
        if not sep:
            raise ConfigError(f"sd-scripts network_args item {item!r} is not key=value; fix it, then import again.")
        out[key.strip()] = val.strip().strip('"').strip("'")
    return out


def _learning_rates(args: dict[str, Any], gui: dict[str, Any]) -> None:
    """sd-scripts trains both parts at learning_rate unless unet_lr / text_encoder_lr or an '..._only' flag say
    otherwise; the GUI says the same with unet_lr / text_encoder_lr, where 0 turns a part off."""
    lr = args.get("learning_rate")
    if lr is not None and ("unet_lr" in args) != ("text_encoder_lr" in args):  # the part not named trains at lr
        gui.setdefault("unet_lr", lr)
        gui.setdefault("text_encoder_lr", lr)
    if args.get("network_train_unet_only"):
        gui["unet_lr"] = args.get("unet_lr", lr)
        gui["text_encoder_lr"] = 0
    if args.get("network_train_text_encoder_only"):
        gui["text_encoder_lr"] = args.get("text_encoder_lr", lr)
        gui["unet_lr"] = 0


def _prompt_file(value: Any, folder: Path) -> str:
    """sd-scripts' sample_prompts names a prompt file: a .txt one is read; others are refused with what to do."""
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else folder / path
    if path.suffix.lower() != ".txt":
        raise ConfigError(f"sample_prompts = {value!r}: only .txt prompt files (one prompt per line, with --n --w "
                          "--h --s --l --d --ss) can be imported; write the prompts in a .txt file.")
    if not path.is_file():
        raise ConfigError(f"sample_prompts = {value!r}: no such file next to the config ({path}); copy the prompt "
                          "file there or remove the line.")
    return re.sub(r"\r\n?", "\n", path.read_text(encoding="utf-8-sig"))
