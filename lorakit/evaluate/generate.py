"""Generate images with LoRAs at chosen strengths, from a pipeline that stays loaded.

    gen = Generator("")                                   # the demo base model
    img = gen.generate("a <lora:mylora:0.8> red circle", lora_dirs=["out/"], seed=1)
    img = gen.generate("a red circle", loras=[("out/mylora-000002.safetensors", 1.0)], sampler="DPM++ 2M Karras")

Prompts may use AUTOMATIC1111's ``<lora:name:weight>`` syntax; the tags are removed from the text and become
adapters with weights. Samplers go by their A1111 names (or kohya's: euler_a, dpm++_2m, ...). The same seed and
settings give the same pixels on CPU; strength 0 (or no LoRA) gives exactly the base model's image.

Each LoRA file (ours, or a kohya-format file from another trainer) is loaded once as a diffusers adapter; switching
checkpoint or strength only switches adapters and weights, the base model stays loaded. At most ``max_adapters``
files stay loaded; the least recently used one is deleted when another is needed. LoHa, LoKr and DoRA files, which
diffusers cannot load (or loads without DoRA's magnitudes), are applied by ``lorakit.lora.patching`` instead: their
deltas are added to the weights, as AUTOMATIC1111 does, and taken off when they are switched off.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from lorakit.errors import GenerateError
from lorakit.lora.embeddings import is_bundle_key, split_bundle
from lorakit.lora.prompt_tags import LoraStrength, find_lora, parse_prompt
from lorakit.models.loading import BaseModel, load_base
from lorakit.models.samplers import make_scheduler

# A1111 sampler name -> (diffusers scheduler class, extra config)

















def _trained_on(path: str) -> str:
    """The base model a LoRA file says it was trained on (kohya's ss_* metadata), or 'unknown'."""
    from lorakit.lora.file import read_lora_metadata

    try:
        meta = read_lora_metadata(path)
    except Exception:  # an unreadable header says nothing either
        return "unknown"
    parts = [meta.get("ss_sd_model_name", ""), meta.get("ss_base_model_version", "")]
    return ", ".join(p for p in parts if p) or "unknown"


@contextlib.contextmanager
def _quiet_loading():
    """models.quiet_loading, plus silence for the load reports that list a LoRA's keys as 'MISSING' although they
    load, and peft's warning about several adapters.

    Failures still raise (Generator._load turns the common one into a GenerateError that says what to do).
    """
    from diffusers.utils import logging as df_logging

    from lorakit.models.loading import quiet_loading

    with quiet_loading(), warnings.catch_warnings():  # quiet_loading restores the levels on the way out
        df_logging.set_verbosity(df_logging.CRITICAL)
        warnings.filterwarnings("ignore", message=".*peft_config.*multiple adapters")
        yield


def device_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """The precision to generate in: bf16 on a CUDA card that has it, fp16 on older cards, fp32 on the CPU."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _as_strength(weight: float | LoraStrength) -> LoraStrength:
    return weight if isinstance(weight, LoraStrength) else LoraStrength(float(weight), float(weight))


class Generator:
    """A loaded pipeline plus the LoRA files applied to it, each loaded once as a diffusers adapter."""

    def __init__(self, base_model: str | Path | BaseModel = "", device: str | None = None,
                 dtype: torch.dtype | None = None, max_adapters: int = 16):
        if not isinstance(base_model, BaseModel):  # loaded in the device's precision from the first read
            base_model = load_base(str(base_model), device=device, dtype=dtype or device_dtype(device))
        self.base = base_model
        self.pipe = self.base.pipe
        self.max_adapters = max_adapters
        # resolved file path -> adapter name, least recently used first; kept on the (cached) base model, which
        # every Generator shares, so that the trainer can clear it when it strips the adapters
        self._adapters: dict[str, str] = self.base.extra.setdefault("adapters", {})
        # resolved path -> tensors of the LoHa/LoKr/DoRA files applied by weight patching (same order and limit)
        self._patch_files: dict[str, dict[str, torch.Tensor]] = self.base.extra.setdefault("patch_files", {})
        # resolved path -> the embeddings bundled in that LoRA file (pivotal tuning: kohya's bundle_emb keys)
        self._bundled: dict[str, dict] = self.base.extra.setdefault("bundled", {})
        self.loads = 0  # LoRA files read from disk by this Generator

    @property
    def patcher(self):
        from lorakit.lora.patching import WeightPatcher

        if "patcher" not in self.base.extra:
            self.base.extra["patcher"] = WeightPatcher(self.base)
        return self.base.extra["patcher"]

    def _is_patch_file(self, path: str | Path) -> bool:
        from lorakit.lora.file import lora_keys
        from lorakit.lora.patching import needs_patching

        key = str(Path(path).resolve())
        if key in self._patch_files:
            return True
        if key in self._adapters or not Path(key).is_file():
            return False
        return needs_patching(lora_keys(key))

    def _patch_state(self, path: str | Path) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        from lorakit.errors import PatchError

        key = str(Path(path).resolve())
        state = self._patch_files.pop(key, None)
        if state is None:
            state, self._bundled[key] = split_bundle(load_file(key))
            try:
                self.patcher.check(state, Path(key).name)
            except PatchError as e:
                origin = _trained_on(key)
                raise GenerateError(f"{e}" + (f" (its metadata says: {origin})" if origin != "unknown" else "")
                                    ) from None
            self.loads += 1
        self._patch_files[key] = state  # (re)inserted last: the most recently used
        while len(self._patch_files) > max(self.max_adapters, 1):
            self._patch_files.pop(next(iter(self._patch_files)))
        return state

    # ---- LoRA files as adapters ----------------------------------------------------------------------
    def _adapter_for(self, path: str | Path) -> str:
        key = str(Path(path).resolve())
        name = self._adapters.pop(key, None)
        if name is None or name not in getattr(self.pipe.unet, "peft_config", {}):
            if not Path(key).is_file():
                raise GenerateError(f"LoRA file not found: {path}")
            serial = self.base.extra["adapter_serial"] = self.base.extra.get("adapter_serial", 0) + 1
            name = f"lora{serial}_{Path(path).stem}".replace(".", "_").replace("-", "_")
            self._load(key, name)
        self._adapters[key] = name  # (re)inserted last: the most recently used
        return name

    def _load(self, path: str, name: str) -> None:
        """Load one LoRA file as adapter ``name``; a file made for another base model is refused with the reason."""
        from lorakit.lora.file import lora_keys

        try:
            with _quiet_loading():
                if any(is_bundle_key(k) for k in lora_keys(path)):  # the LoRA without its bundled embeddings
                    from safetensors.torch import load_file

                    tensors, self._bundled[str(Path(path).resolve())] = split_bundle(load_file(path))
                    self.pipe.load_lora_weights(tensors, adapter_name=name)
                else:  # folder + weight_name: diffusers before 0.40 refuses a bare file path offline
                    self.pipe.load_lora_weights(str(Path(path).parent), weight_name=Path(path).name,
                                                adapter_name=name)
        except (RuntimeError, ValueError) as e:
            with contextlib.suppress(Exception), warnings.catch_warnings():  # leave no half-loaded adapter behind
                warnings.simplefilter("ignore")
                self.pipe.delete_adapters(name)
            if "size mismatch" not in str(e):
                raise
            raise GenerateError(f"{Path(path).name} does not fit {self.base.source}: its layer sizes differ, so it was "
                                f"trained for another base model ({_trained_on(path)}). Generate with that model."
                                ) from None
        self.loads += 1

    def _evict(self, keep: int) -> None:
        while len(self._adapters) > max(keep, 0):
            old = next(iter(self._adapters))
            name = self._adapters.pop(old)
            if name in getattr(self.pipe.unet, "peft_config", {}):
                self.pipe.delete_adapters(name)

    def loaded(self) -> list[str]:
        """Paths of the LoRA files currently loaded (adapters, then patch files), least recently used first."""
        return list(self._adapters) + list(self._patch_files)

    def apply(self, loras: Sequence[tuple[str | Path, float | LoraStrength]]) -> None:
        """Activate exactly these LoRA files at these strengths (all others off); none or all-zero = base model.

        A strength is one number for the whole file, or a LoraStrength: the UNet and the text encoder(s) at their
        own strengths (A1111's ``<lora:name:te:unet>``), and a ``dyn`` rank limit, which applies the file's
        first ranks by weight patching."""
        from lorakit.errors import PatchError
        from lorakit.lora.patching import limit_rank

        uses = [(p, _as_strength(w)) for p, w in loras]
        uses = [(p, w) for p, w in uses if w]
        patched = [(p, w) for p, w in uses if w.dyn or self._is_patch_file(p)]  # a missing file: _adapter_for says so
        if patched or ("patcher" in self.base.extra and self.patcher.patched):
            files = []
            for p, w in patched:
                if w.dyn and not Path(p).is_file():
                    raise GenerateError(f"LoRA file not found: {p}")
                state = self._patch_state(p)
                files.append((limit_rank(state, w.dyn) if w.dyn else state, w.unet, w.te))
            try:
                self.patcher.apply(files)
            except PatchError as e:
                raise GenerateError(f"{', '.join(Path(p).name for p, _ in patched)}: {e}") from None
        active = [(self._adapter_for(p), w) for p, w in uses if (p, w) not in patched]
        self._evict(keep=max(self.max_adapters, len(active)))  # the ones just used are the most recent
        self._apply_words([p for p, _ in uses])
        if not active:
            if self._adapters:
                self.pipe.disable_lora()
            return
        self._set_adapters(active)

    def _set_adapters(self, active: Sequence[tuple[str, LoraStrength]]) -> None:
        """Switch LoRA on with these adapters at these strengths: one number, or the UNet and the text encoder(s)
        each at its own (diffusers' per-component weights)."""
        self.pipe.enable_lora()
        parts = self.pipe.get_list_adapters() if any(w.te != w.unet for _, w in active) else {}
        weights = [w.unet if w.te == w.unet else
                   {part: (w.unet if part == "unet" else w.te) for part, names in parts.items() if a in names}
                   for a, w in active]
        self.pipe.set_adapters([a for a, _ in active], adapter_weights=weights)

    def _apply_words(self, paths: list) -> None:
        """The embeddings bundled in the active LoRA files as new words (A1111 loads them with the LoRA); the
        pipeline's own tokenizers when none is active."""
        from lorakit.lora.embeddings import AddedWords, embedding_vectors

        wanted = {name: emb for p in paths for name, emb in self._bundled.get(str(Path(p).resolve()), {}).items()}
        key = tuple(sorted((name, id(emb)) for name, emb in wanted.items()))
        if self.base.extra.get("words_key") == key:
            return
        current = self.base.extra.get("added_words")
        if current is not None:
            current.remove()
        self.base.extra["words_key"] = key
        if wanted:
            n = len(self.base.text_encoders)
            try:
                AddedWords.attach(self.base, {name: embedding_vectors(emb, n) for name, emb in wanted.items()})
            except ValueError as e:
                self.base.extra["words_key"] = ()
                raise GenerateError(f"the embedding bundled in {', '.join(map(str, paths))}: {e}") from None

    # ---- images --------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_batch(self, prompts: Sequence[str], *, seeds: Sequence[int], loras=(), lora_dirs=(),
                       negative_prompt: str = "", steps: int = 20, cfg: float = 7.0, width: int | None = None,
                       height: int | None = None, sampler: str = "Euler a") -> list[Image.Image]:
        """One image per (prompt, seed); every prompt must carry the same <lora:...> tags."""
        parsed = [parse_prompt(p) for p in prompts]
        tags = {tuple(r) for _, r in parsed}
        if len(tags) > 1:
            raise GenerateError("a batch must use the same <lora:...> tags in every prompt; generate them apart.")
        refs = parsed[0][1] if parsed else []
        all_loras = list(loras) + [(find_lora(r.name, lora_dirs), r.strength) for r in refs]
        self.apply(all_loras)
        self.pipe.scheduler = make_scheduler(self.pipe.scheduler.config, sampler)
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        out = self.pipe(
            prompt=[t for t, _ in parsed],
            negative_prompt=[negative_prompt] * len(parsed) if negative_prompt or cfg > 1 else None,
            num_inference_steps=steps,
            guidance_scale=cfg,
            width=width,
            height=height,
            generator=generators,
            output_type="pil",
        )
        return list(out.images)

    def can_mix(self, path: str | Path) -> bool:
        """Whether images with this LoRA file can share a batch with images of other files (``generate_mixed``):
        a plain LoRA / LoCon file (a peft adapter) without bundled words. Reads the file's header only, so asking
        about many checkpoints loads none of them (a missing file is left to the drawing, which names it)."""
        from lorakit.lora.file import lora_keys

        key = str(Path(path).resolve())
        if not Path(key).is_file() or self._is_patch_file(key):
            return False
        if key in self._bundled:
            return False
        return not any(is_bundle_key(k) for k in lora_keys(key))

    @torch.no_grad()
    def generate_mixed(self, prompts: Sequence[str], *, seeds: Sequence[int],
                       loras: Sequence[tuple[str | Path, float | LoraStrength] | None], negative_prompt: str = "",
                       steps: int = 20, cfg: float = 7.0, width: int | None = None, height: int | None = None,
                       sampler: str = "Euler a") -> list[Image.Image]:
        """One image per (prompt, seed, LoRA) in one pipeline call: each image with its own LoRA file and strength
        (None = the base model): the files' LoRA layers stacked (``mixed_batch.StackedRows``), or peft's mixed-batch
        adapters where a layer does not stack. The images equal those of ``generate_batch``
        one LoRA at a time. A file may appear at one strength per call; files must pass ``can_mix``; prompts carry
        no <lora:...> tags."""
        from peft.tuners.lora import LoraLayer

        from lorakit.evaluate.mixed_batch import StackedRows

        if not (len(prompts) == len(seeds) == len(loras)):
            raise GenerateError("generate_mixed needs one seed and one LoRA (or None) per prompt.")
        if any(parse_prompt(p)[1] for p in prompts):
            raise GenerateError("prompts with <lora:...> tags cannot be mixed in one batch: use generate_batch.")
        uses: dict[str, LoraStrength] = {}
        for item in loras:
            if item is None or not _as_strength(item[1]):
                continue
            path, w = str(Path(item[0]).resolve()), _as_strength(item[1])
            if uses.setdefault(path, w) != w:
                raise GenerateError(f"{Path(path).name} at two strengths in one mixed batch: draw them apart.")
            if w.dyn or not self.can_mix(path):
                raise GenerateError(f"{Path(path).name} cannot share a batch (a patched or bundled file, or dyn).")
        self.apply([])  # no patched weights, no bundled words, the pipeline's own tokenizers
        names = {p: self._adapter_for(p) for p in uses}
        self._evict(keep=max(self.max_adapters, len(names)))
        rows = ["__base__" if item is None or not _as_strength(item[1]) else names[str(Path(item[0]).resolve())]
                for item in loras]
        if names:
            self._set_adapters([(names[p], w) for p, w in uses.items()])

        models = [self.pipe.unet, *self.base.text_encoders]
        with contextlib.ExitStack() as active:
            stacked = StackedRows(models, rows)
            if names and stacked.fits():  # each file's change added to its own rows, one pass per layer
                self.pipe.disable_lora()  # peft draws the base model; the hooks add the LoRA at the scales just set
                active.enter_context(stacked)
            elif names:  # peft's own mixed batch, for a layer that does not stack

                def per_row(module, args, kwargs):  # each LoRA layer: which adapter each row of its input uses
                    n = len(args[0]) if args else len(next(iter(kwargs.values())))
                    if n % len(rows):
                        raise GenerateError(f"a mixed batch of {len(rows)} images met a layer input of {n} rows.")
                    kwargs["adapter_names"] = rows * (n // len(rows))  # CFG: [negative, positive]
                    return args, kwargs

                for model in models:
                    for m in model.modules():
                        if isinstance(m, LoraLayer):
                            active.callback(m.register_forward_pre_hook(per_row, with_kwargs=True).remove)
            self.pipe.scheduler = make_scheduler(self.pipe.scheduler.config, sampler)
            out = self.pipe(
                prompt=list(prompts),
                negative_prompt=[negative_prompt] * len(prompts) if negative_prompt or cfg > 1 else None,
                num_inference_steps=steps, guidance_scale=cfg, width=width, height=height,
                generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds], output_type="pil")
        return list(out.images)

    def generate(self, prompt: str, *, seed: int = 0, **kwargs) -> Image.Image:
        return self.generate_batch([prompt], seeds=[seed], **kwargs)[0]
