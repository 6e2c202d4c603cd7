"""Optimizers and learning-rate schedules, as kohya users name them; shared by training and notebook 02's preview.

    opt = build_optimizer(cfg, [{"params": unet_params, "lr": 1e-4}, {"params": te_params, "lr": 5e-5}])
    sched = build_scheduler(cfg, opt, total_steps=1500)
    lr_curve(cfg, total_steps=1500)      # [(step, unet_lr, te_lr), ...] without a model
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect

import torch

from lorakit.config.schema import BNB_OPTIMIZERS, OPTIMIZERS, TrainConfig, parse_optimizer_args
from lorakit.errors import ConfigError, OptimizerUnavailable


def _need(module: str, optimizer: str, pip_name: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise OptimizerUnavailable(
            f"optimizer {optimizer!r} needs the package {pip_name!r}: `pip install {pip_name}`"
            + (" (it needs a CUDA GPU; on CPU use AdamW)" if pip_name == "bitsandbytes" else "")
            + ", or choose AdamW / Adafactor."
        )


def _make(cls, param_groups: list[dict], lr, args: dict) -> torch.optim.Optimizer:
    """``cls(param_groups, lr=lr, **args)``; an argument it does not take is named, with the nearest one."""
    known = [p for p in inspect.signature(cls).parameters if p not in ("self", "params", "lr")]
    for key in args:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else f" It takes: {', '.join(known)}."
            raise ConfigError(f"optimizer_args: {cls.__name__} has no argument {key!r}.{hint}")
    return cls(param_groups, lr=lr, **args)


def build_optimizer(cfg: TrainConfig, param_groups: list[dict]) -> torch.optim.Optimizer:
    """The configured optimizer over the given parameter groups (each with its own 'lr')."""
    name = cfg.optimizer.optimizer
    args = parse_optimizer_args(cfg.optimizer.optimizer_args)
    if "betas" in args and isinstance(args["betas"], tuple):
        args["betas"] = tuple(float(b) for b in args["betas"])
    lr = param_groups[0]["lr"]
    if name == "AdamW":
        if "fused" not in args and "foreach" not in args:  # the user's choice wins
            on_cuda = torch.cuda.is_available() and all(p.is_cuda for g in param_groups for p in g["params"])
            # CUDA: one fused kernel for the whole update; CPU: a few hundred small LoRA tensors, batched (~20%)
            args["fused" if on_cuda else "foreach"] = True
        return _make(torch.optim.AdamW, param_groups, lr, args)
    if name in BNB_OPTIMIZERS:
        _need("bitsandbytes", name, "bitsandbytes")
        if not all(p.is_cuda for g in param_groups for p in g["params"]):
            plain = "Lion" if "Lion" in name else "AdamW"
            raise OptimizerUnavailable(f"optimizer {name!r} keeps its state on a CUDA GPU and there is none "
                                       f"here: choose {plain} (or Adafactor) on this machine.")
        import bitsandbytes as bnb

        return _make(getattr(bnb.optim, name), param_groups, lr, args)
    if name == "Lion":  # the package sd-scripts uses for it
        _need("lion_pytorch", name, "lion-pytorch")
        from lion_pytorch import Lion

        return _make(Lion, param_groups, lr, args)
    if name == "Adafactor":
        from transformers.optimization import Adafactor

        # kohya's defaults for LoRA: a fixed lr, no relative step (else the lr is ignored)
        args.setdefault("scale_parameter", False)
        args.setdefault("relative_step", False)
        args.setdefault("warmup_init", False)
        if args["relative_step"]:
            for g in param_groups:
                g["lr"] = None
            return _make(Adafactor, param_groups, None, args)
        return _make(Adafactor, param_groups, lr, args)
    if name == "Prodigy":
        _need("prodigyopt", name, "prodigyopt")
        _one_lr(name, param_groups)
        from prodigyopt import Prodigy

        return _make(Prodigy, param_groups, lr, args)
    if name.startswith("DAdapt"):
        _need("dadaptation", name, "dadaptation")
        _one_lr(name, param_groups)
        import dadaptation
        import dadaptation.experimental

        cls = getattr(dadaptation.experimental if name in ("DAdaptAdamPreprint", "DAdaptAdanIP") else dadaptation, name)
        return _make(cls, param_groups, lr, args)
    if name == "SGD":
        return _make(torch.optim.SGD, param_groups, lr, args)
    near = difflib.get_close_matches(name, OPTIMIZERS, n=1, cutoff=0.0)
    raise ConfigError(f"unknown optimizer {name!r}: choose one of lorakit's, e.g. {near[0]!r}.")


def _one_lr(name: str, param_groups: list[dict]) -> None:
    if len({g["lr"] for g in param_groups if g["lr"]}) > 1:
        raise ConfigError(f"{name} finds one step size for all parameters and refuses different learning rates: "
                          "set optimizer.text_encoder_lr equal to unet_lr (both 1.0 is usual), or 0 to freeze "
                          "the text encoder.")


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """diffusers' get_scheduler with kohya's options (warm-up, cycles, power); 'adafactor' uses Adafactor's own."""
    o = cfg.optimizer
    if o.lr_scheduler == "adafactor":
        from transformers.optimization import AdafactorSchedule

        return AdafactorSchedule(optimizer, initial_lr=optimizer.param_groups[0]["lr"] or 0.0)
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        o.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=cfg.warmup_steps(total_steps),  # lr_warmup_steps, or lr_warmup_ratio of all steps
        num_training_steps=max(1, total_steps),
        num_cycles=o.lr_scheduler_num_cycles,
        power=o.lr_scheduler_power,
    )


def lr_curve(cfg: TrainConfig, total_steps: int, every: int = 1) -> list[tuple[int, float, float]]:
    """(step, UNet lr, text-encoder lr) for every ``every``-th step, by the same scheduler code training uses."""
    unet = torch.nn.Parameter(torch.zeros(1))
    te = torch.nn.Parameter(torch.zeros(1))
    groups = [{"params": [unet], "lr": cfg.optimizer.unet_lr}, {"params": [te], "lr": cfg.optimizer.text_encoder_lr}]
    opt = torch.optim.SGD(groups, lr=cfg.optimizer.unet_lr)  # the schedule only reads the groups' lr
    if cfg.optimizer.lr_scheduler == "adafactor":
        return [(s, cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr) for s in range(0, total_steps, every)]
    sched = build_scheduler(cfg, opt, total_steps)
    lambdas = getattr(sched, "lr_lambdas", None)
    if lambdas:  # diffusers' schedules are LambdaLR: evaluate the trainer's own lr functions at each step directly
        base = sched.base_lrs
        return [(s, base[0] * lambdas[0](s), base[1] * lambdas[1](s)) for s in range(0, total_steps, every)]
    out = []
    for step in range(total_steps):
        if step % every == 0:
            lrs = sched.get_last_lr()
            out.append((step, float(lrs[0]), float(lrs[1])))
        opt.step()
        sched.step()
    return out
