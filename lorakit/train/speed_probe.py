"""Training speed at several batch sizes, measured on this machine in seconds, before a run is planned.

    probe = measure_batch_speeds(cfg, batches=(1, 2, 4, 8))
    print(probe.text())          # 'batch 1: 1.9 steps/s = 1.9 images/s; batch 2: ...; batch 8: out of memory'

The base model the config names is loaded (from its file or folder, never the network), lorakit's adapter is
attached as training attaches it, and each batch size runs ``warmup`` + ``steps`` training steps on random
latents with the loop's stages (lorakit.train.memory's step: text encoder, UNet under autocast, loss, backward,
clipping, the optimizer). Latents are cached in a real run too, so what is left out (reading the cache, logging)
costs the same at every batch size: the speeds compare batch sizes fairly, which is what the batch suggestion
(lorakit.train.batch_size) needs. They are recorded as the probe's (``steps.PROBE``), apart from the speeds real
runs measure, which plan_steps prefers. A batch that runs out of GPU memory ends the probe: larger ones would too.
The adapter is detached afterwards, so the cached base model is clean for training in the same process.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch

from lorakit.config.schema import TrainConfig

DEFAULT_BATCHES = (1, 2, 4, 8)
MAX_STEPS = 200
CPU_BATCHES = (1, 2)  # a real model on a CPU: a step of batch 8 at 512 px takes minutes


@dataclass
class SpeedProbe:
    """Steps/s per batch size, the batch sizes that ran out of memory, and where it ran."""

    device: str
    threads: int
    steps_per_second: dict[int, float] = field(default_factory=dict)
    out_of_memory: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> dict[int, float]:
        return {b: sps * b for b, sps in self.steps_per_second.items()}

    @property
    def max_fitting(self) -> int | None:
        """The largest batch that ran, when a larger one ran out of memory (else not known from the probe)."""
        return max(self.steps_per_second, default=0) if self.out_of_memory else None

    def text(self) -> str:
        where = self.device + (f", {self.threads} CPU thread{'s' if self.threads != 1 else ''}"
                               if self.threads else "")
        parts = [f"batch {b}: {sps:.3g} steps/s = {sps * b:.3g} images/s"
                 for b, sps in sorted(self.steps_per_second.items())]
        parts += [f"batch {b}: out of GPU memory" for b in self.out_of_memory]
        return f"Speed on {where} (measured in {self.seconds:.0f} s): " + "; ".join(parts) + "."


def measure_batch_speeds(cfg: TrainConfig, batches: tuple[int, ...] | None = None, steps: int = 3,
                         warmup: int = 1, *, min_seconds: float = 1.0, record: bool = True,
                         device: str | torch.device | None = None, path=None) -> SpeedProbe:
    """Time at least ``steps`` training steps of ``cfg`` at each batch size in ``batches``, and at least
    ``min_seconds`` of them (a few milliseconds' step is noise otherwise; at most MAX_STEPS), after ``warmup``;
    with ``record``, keep them in the speed file for the steps plan and the batch suggestion. ``batches`` None:
    DEFAULT_BATCHES on a GPU or for a tiny model, CPU_BATCHES for a real model on a CPU."""
    from lorakit.lora.network import Network
    from lorakit.models.loading import load_base
    from lorakit.train.memory import WEIGHT_DTYPES, _step, adapter_groups, enable_checkpointing
    from lorakit.train.optimizers import build_optimizer
    from lorakit.train.prepare import configure_speed
    from lorakit.train.steps import PROBE, record_speed
    from lorakit.train.threads import TINY_UNET_PARAMETERS, configure_threads

    if steps < 1 or (batches is not None and (not batches or min(batches) < 1)):
        raise ValueError("measure at least one step of batch sizes >= 1")
    cfg = cfg.validate()
    t0 = time.perf_counter()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = WEIGHT_DTYPES[cfg.training.mixed_precision] if dev.type == "cuda" else torch.float32
    base = load_base(cfg.model.base_model, family=cfg.model.family, prediction_type=cfg.model.prediction_type,
                     dtype=dtype, device=dev, allow_pickle=cfg.model.allow_pickle,
                     single_file_config=cfg.model.single_file_config or None)
    configure_speed(base, cfg)
    threads = configure_threads(base, cfg, dev)
    if batches is None:
        tiny = sum(p.numel() for p in base.unet.parameters()) < TINY_UNET_PARAMETERS
        batches = DEFAULT_BATCHES if dev.type == "cuda" or tiny else CPU_BATCHES
    net = Network.attach(base, cfg)
    probe = SpeedProbe(torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", threads)
    try:
        groups = adapter_groups(net, cfg)
        params = [p for g in groups for p in g["params"]]
        optimizer = build_optimizer(cfg, groups)
        if cfg.training.gradient_checkpointing:
            enable_checkpointing(base, net)
        for m in net.parts.values():
            m.train()
        memo: dict = {}
        for b in sorted(set(batches)):
            c = cfg.replace({"training.train_batch_size": b})

            def step(c=c) -> None:
                _step(base, c, net, params, optimizer, None, dev, dtype, base.family, c.data, c.training,
                      real=True, text_memo=memo)
                _sync(dev)  # the clock must see the GPU's work, not only its queueing

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for _ in range(warmup):
                        step()
                    done, start = 0, time.perf_counter()
                    while done < steps or (time.perf_counter() - start < min_seconds and done < MAX_STEPS):
                        step()
                        done += 1
            except torch.cuda.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                probe.out_of_memory.append(b)
                break  # a larger batch needs more
            probe.steps_per_second[b] = done / (time.perf_counter() - start)
    finally:
        for m in net.parts.values():
            m.eval()
        if cfg.training.gradient_checkpointing:
            base.unet.disable_gradient_checkpointing()  # as the loop leaves it
        net.detach()  # the cached base model is clean for the next run in this process
    if record:
        for b, sps in probe.steps_per_second.items():
            record_speed(sps, family=cfg.model.family, resolution=cfg.data.resolution, batch_size=b, source=PROBE,
                         path=path)
    probe.seconds = time.perf_counter() - t0
    return probe


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
