"""Single-file checkpoints (.safetensors from an A1111/ComfyUI models folder), loaded offline.

    pipe = load_single_file(Path("models/v1-5-pruned-emaonly.safetensors"))          # family from the keys
    pipe = load_single_file(path, family="sd2-v", config="/models/sd21-diffusers")   # configs from a folder
    save_single_file(pipe, Path("tiny.safetensors"))                                  # the reverse, for tests

diffusers' ``from_single_file`` needs each component's config. It would fetch them from the hub; here they come
from a local diffusers folder (``config=``) or from the architecture configs each family ships
(lorakit/models/families/), so nothing touches the network. The family is read from the checkpoint's key
layout (which text encoder it carries), not from tensor sizes, so pruned, merged and tiny checkpoints are
recognised alike.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch

from lorakit.models import families
from lorakit.models.families.base import OPEN_CLIP, ORIGINAL_UNET, ORIGINAL_VAE, original_unet_path

UNET = ORIGINAL_UNET
VAE = ORIGINAL_VAE


# ---- architecture configs of the real models (what from_single_file would otherwise download) ----------
def architecture_configs(family: str) -> dict[str, dict]:
    """{component folder: config.json content} of a family's real architecture, plus model_index.json."""
    return families.get(family).architecture_configs()


def write_config_folder(family: str, dest: Path | None = None) -> Path:
    """A diffusers folder holding only configs (no weights) for ``family``: what from_single_file needs."""
    home = Path(os.environ.get("LORAKIT_CACHE", Path.home() / ".cache" / "lorakit"))
    dest = Path(dest or home / "single-file-configs" / family)
    for sub, cfg in architecture_configs(family).items():
        name = "model_index.json" if not sub else ("scheduler_config.json" if sub == "scheduler" else "config.json")
        (dest / sub).mkdir(parents=True, exist_ok=True)
        (dest / sub / name).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return dest


# ---- reading a checkpoint --------------------------------------------------------------------------------
def read_header(path: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """({tensor name: {"dtype", "shape", "data_offsets"}}, metadata) of a .safetensors file, reading no tensor data.

    The format: 8 bytes (little-endian header length), a JSON header, then the raw tensors. A file cut short
    (an interrupted download) is refused here, before anything tries to load it.
    """
    from lorakit.errors import ModelError

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 1 or n > min(size - 8, 100_000_000):
            raise ModelError(f"{path.name} is not a readable .safetensors file (its header length is wrong): "
                             "is it truncated, or another format renamed? Download it again.")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{path.name}: its safetensors header is damaged ({e}); download it again.") from e
    metadata = header.pop("__metadata__", None) or {}
    end = max((t["data_offsets"][1] for t in header.values()), default=0)
    if 8 + n + end > size:
        raise ModelError(f"{path.name} is truncated: its header describes {(8 + n + end) / 1e9:.2f} GB of data but "
                         f"the file has {size / 1e9:.2f} GB. Download it again (an interrupted copy?).")
    return header, metadata


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of a .safetensors file (header only) or of a .ckpt (loaded: only with allow_pickle)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return {k: tuple(v["shape"]) for k, v in read_header(path)[0].items()}
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    return {k: tuple(getattr(v, "shape", ())) for k, v in load_single_file_checkpoint(str(path)).items()}


def checkpoint_keys(path: Path) -> set[str]:
    """Tensor names of a checkpoint (see checkpoint_shapes)."""
    return set(checkpoint_shapes(path))


def what_file_is(shapes: dict[str, tuple[int, ...]] | set[str]) -> str | None:
    """What a .safetensors file that is not a full SD1/SD2/SDXL checkpoint holds, in a few words (None when it is
    one, or looks like one): read from its tensor names (and, with shapes, the UNet's input channels)."""
    keys = set(shapes)

    def some(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if some("lora_unet_", "lora_te", "lycoris_") or any(
            p in k for k in keys for p in (".lora_down.", ".lora_A.", ".hada_w1_", ".lokr_w1", "lora.down.")):
        return "a LoRA (network weights, not a base model)"
    if keys and keys <= {"emb_params", "clip_l", "clip_g", "string_to_param.*", "string_to_token", "string_to_param",
                         "name", "step"} or some("string_to_param", "bundle_emb."):
        return "a textual-inversion embedding"
    if some(UNET + "joint_blocks", "joint_blocks.", "text_encoders."):
        return "a Stable Diffusion 3 model (lorakit trains SD 1.x, SD 2.x and SDXL)"
    if some(UNET + "double_blocks", "double_blocks.", "single_transformer_blocks.", "transformer_blocks.0.attn.to_q"):
        return "a Flux / DiT transformer model (lorakit trains SD 1.x, SD 2.x and SDXL)"
    if not some(UNET):
        if some("encoder.down", "decoder.up", "first_stage_model.", "quant_conv", "post_quant_conv"):
            return "a VAE (it goes beside a checkpoint, as model.vae or A1111's VAE setting)"
        if some("conv_in.", "down_blocks.", "up_blocks.", "mid_block."):
            return "a UNet in diffusers layout, without text encoder or VAE (give its whole diffusers folder)"
        if some("text_model.", "cond_stage_model.", "conditioner."):
            return "a text encoder only"
        return None
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight") if isinstance(shapes, dict) else None
    if conv_in is not None and len(conv_in) == 4 and conv_in[1] != 4:
        kind = {9: "an inpainting model", 8: "an InstructPix2Pix model"}.get(conv_in[1], "a UNet for other inputs")
        return f"{kind} (its UNet takes {conv_in[1]} input channels, not 4)"
    if some("conditioner.embedders.0.model.") and not some("conditioner.embedders.1."):
        return "an SDXL refiner (it has only the second, OpenCLIP text encoder)"
    if not some("cond_stage_model.", "conditioner."):
        return "a UNet without its text encoder (a UNet-only file)"
    return None


def detect_checkpoint_family(shapes: dict[str, tuple[int, ...]] | set[str]) -> str:
    """The weights' layout ('sd1', 'sd2', 'sdxl') from which text encoder(s) the checkpoint carries; ModelError if
    it is not a full SD checkpoint, saying what the file is. sd2 and sd2-v share a layout: the file does not say
    which one it is. ``shapes`` (tensor name -> shape) also lets it recognise an inpainting UNet."""
    from lorakit.errors import ModelError

    kind = what_file_is(shapes)
    if kind is not None:
        raise ModelError(f"this file is {kind}, not a base model: give a full SD 1.x, SD 2.x or SDXL checkpoint "
                         "(the .safetensors file A1111 lists under Stable Diffusion checkpoints).")
    keys = set(shapes)
    if not any(k.startswith(UNET) for k in keys):
        raise ModelError("this file has no Stable Diffusion UNet (model.diffusion_model.*), so it is no base model "
                         "lorakit knows: give a full SD 1.x, SD 2.x or SDXL checkpoint.")
    found = families.detect_from_keys(keys)
    if not found:
        raise ModelError("this checkpoint has a UNet but no text encoder lorakit knows (an unknown architecture?). "
                         "Give a full SD 1.x, SD 2.x or SDXL checkpoint, or its diffusers folder.")
    return found[0].layout


def resolve_family(path: Path, detected: str, family: str) -> str:
    """The family to load as: the config's choice when it fits the file's layout, else the detected one (warned)."""
    same = [f for f in families.FAMILIES.values() if f.layout == detected]  # sd2, sd2-v: same weights
    if family in ("", "auto"):
        v_models = [f for f in same if f.prediction_type == "v_prediction"]
        if len(same) == 1 or not v_models:
            return same[0].name
        return v_models[0].name if _yaml_says_v(path) else _warn_v(path, same, v_models[0])
    if families.get(family).layout == detected:
        return family
    warnings.warn(f"{path.name} holds an {detected} model, but model.family = {family!r}: loading it as "
                  f"{same[0].name}. Set model.family = 'auto' (or {same[0].name!r}).", stacklevel=3)
    return same[0].name


def _yaml_says_v(path: Path) -> bool:
    """A1111 keeps a same-named .yaml beside SD2 checkpoints; `parameterization: "v"` marks a v-model."""
    yaml = path.with_suffix(".yaml")
    return yaml.is_file() and re.search(r"parameterization:\s*['\"]?v['\"]?\s*$", yaml.read_text(), re.M) is not None


def _warn_v(path: Path, same: list, v_model) -> str:
    others = " or ".join(repr(f.name) for f in same if f is not v_model)
    warnings.warn(f"{path.name} holds {v_model.layout} weights; a single file does not say whether it predicts v "
                  f"or epsilon. Assuming v-prediction ({v_model.name}); set model.family = {others} for the "
                  "epsilon model, or put A1111's .yaml beside the file.", stacklevel=3)
    return v_model.name


# ---- loading ---------------------------------------------------------------------------------------------
def load_single_file(path: Path, family: str = "auto", dtype=None, config: str | Path | None = None):
    """A diffusers pipeline from a single-file checkpoint, offline; ``config`` is an optional diffusers folder."""
    import diffusers

    from lorakit.errors import ModelError

    path = Path(path)
    shapes = checkpoint_shapes(path)
    try:
        layout = detect_checkpoint_family(shapes)
    except ModelError as e:
        raise ModelError(f"{path.name}: {e}") from None
    fam = resolve_family(path, layout, family)
    folder = Path(config) if config else write_config_folder(fam)
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"single-file config {folder} is not a diffusers folder (no model_index.json).")
    cls = getattr(diffusers, families.get(fam).pipeline_class)
    extra = single_file_tokenizers(path, shapes, fam, folder)
    if "safety_checker" in json.loads((folder / "model_index.json").read_text(encoding="utf-8")):
        extra |= {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    try:
        pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, dtype=dtype, **extra)
    except (ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"{path.name} could not be loaded as {fam} with the configs in {folder}: {e}. If it is a "
                         "fine-tune with another architecture, pass its diffusers folder as the config.") from e
    _check_all_loaded(pipe, path)
    return pipe


def _check_all_loaded(pipe, path: Path) -> None:
    """Refuse a pipeline with weights left on the meta device (tensors the checkpoint did not provide)."""
    from lorakit.errors import ModelError

    for name, part in pipe.components.items():
        missing = [k for k, v in getattr(part, "state_dict", dict)().items() if v.is_meta]
        if missing:
            raise ModelError(f"{path.name}: {name} did not get {len(missing)} tensors from the file "
                             f"(e.g. {missing[0]}); the checkpoint does not match the {name} config.")


def single_file_tokenizers(path: Path, shapes: dict[str, tuple[int, ...]], family: str,
                           folder: Path | None = None) -> dict:
    """{"tokenizer": …, "tokenizer_2": …} for a single file, each checked against the text encoder it feeds.

    A tokenizer in the config folder wins; otherwise the CLIP tokenizer shipped with lorakit, which fits only a
    text encoder with CLIP's 49,408 token embeddings (every released SD1/SD2/SDXL model). A file whose encoder
    has another vocabulary (a tiny test model, an exotic fine-tune) needs its own tokenizer: a ModelError says so.
    """
    from lorakit.errors import ModelError
    from lorakit.models.tokenizers import VOCAB_SIZE, check_tokenizer, clip_tokenizer

    out = {}
    for name, kind, tok_key, pos_key in text_encoder_embeddings(family):
        if tok_key not in shapes or len(shapes[tok_key]) != 2:
            raise ModelError(f"{path.name} has no {tok_key}: its text encoder is incomplete. Give a full checkpoint.")
        vocab = shapes[tok_key][0]
        max_length = shapes[pos_key][0] if len(shapes.get(pos_key, ())) == 2 else 77
        own = folder / name if folder is not None else None
        if own is not None and own.is_dir():
            tok, where = folder_tokenizer(own), str(own)
        elif vocab == VOCAB_SIZE:
            tok, where = clip_tokenizer(kind), f"shipped {kind}"
        else:
            raise ModelError(
                f"{path.name}: its {name.replace('tokenizer', 'text encoder')} has {vocab} token embeddings, not "
                f"CLIP's {VOCAB_SIZE}, so the CLIP tokenizer that ships with lorakit does not fit it. Give a "
                f"diffusers folder of the same model, with its {name}/, as model.single_file_config.")
        check_tokenizer(tok, vocab, max_length, name, where)
        out[name] = tok
    return out


def text_encoder_embeddings(family: str) -> list[tuple[str, str, str, str]]:
    """(tokenizer folder, shipped tokenizer kind, token-embedding key, position-embedding key) per text encoder of
    an original-layout file: CLIP-L (SD1, SDXL's first) pads with <|endoftext|>, OpenCLIP (SD2, SDXL's second)
    with "!"."""
    from lorakit.models.families.base import OPEN_CLIP

    out = []
    for i, (prefix, layout) in enumerate(families.get(family).original_text_encoders):
        name = "tokenizer" if i == 0 else f"tokenizer_{i + 1}"
        if layout == OPEN_CLIP:
            out.append((name, "open-clip", prefix + "token_embedding.weight", prefix + "positional_embedding"))
        else:
            emb = prefix + "text_model.embeddings."
            out.append((name, "clip-l", emb + "token_embedding.weight", emb + "position_embedding.weight"))
    return out


def folder_tokenizer(folder: Path):
    """A tokenizer saved in a diffusers folder (checked by the caller: transformers 5 returns a 2-token one for
    a folder without vocabulary files instead of raising)."""
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError):
        return None


# ---- the reverse: a pipeline in the original single-file layout ------------------------------------------
def _unet_original(name: str, unet) -> str:
    """diffusers UNet parameter name -> original (LDM/SGM) name, inside model.diffusion_model."""
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    module, _, leaf = name.rpartition(".")
    if module in fixed:
        return f"{fixed[module]}.{leaf}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", module):
        i, n = int(m[1]), unet.config.layers_per_block + 1
        slot = 2 if hasattr(unet.up_blocks[i], "attentions") else 1
        return f"output_blocks.{i * n + n - 1}.{slot}.conv.{leaf}"
    return f"{original_unet_path(module, unet.config.layers_per_block)}.{leaf}"


def _vae_original(name: str, tensor: torch.Tensor, n_up: int) -> tuple[str, torch.Tensor]:
    """diffusers VAE parameter name -> original name (the mid attention's linears become 1×1 convs)."""
    subs = [(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block."), (r"down_blocks\.(\d+)\.downsamplers\.0\.",
            r"down.\1.downsample."), (r"mid_block\.resnets\.0\.", "mid.block_1."), (r"mid_block\.resnets\.1\.",
            "mid.block_2."), (r"mid_block\.attentions\.0\.", "mid.attn_1."), (r"conv_norm_out", "norm_out"),
            (r"conv_shortcut", "nin_shortcut"), (r"attn_1\.group_norm", "attn_1.norm"), (r"attn_1\.to_q", "attn_1.q"),
            (r"attn_1\.to_k", "attn_1.k"), (r"attn_1\.to_v", "attn_1.v"), (r"attn_1\.to_out\.0", "attn_1.proj_out")]
    name = re.sub(r"up_blocks\.(\d+)\.", lambda m: f"up.{n_up - 1 - int(m[1])}.", name)
    name = re.sub(r"up\.(\d+)\.resnets\.", r"up.\1.block.", name).replace("upsamplers.0.", "upsample.")
    for old, new in subs:
        name = re.sub(old, new, name)
    if ".attn_1." in name and name.endswith("weight") and tensor.dim() == 2:
        tensor = tensor[:, :, None, None]
    return name, tensor


def _open_clip_original(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A CLIP text model's tensors in OpenCLIP's layout: fused q/k/v, resblocks, positional_embedding."""
    sd = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {f"{prefix}token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
           f"{prefix}positional_embedding": sd.pop("embeddings.position_embedding.weight"),
           f"{prefix}ln_final.weight": sd.pop("final_layer_norm.weight"),
           f"{prefix}ln_final.bias": sd.pop("final_layer_norm.bias")}
    if "text_projection.weight" in sd:
        out[f"{prefix}text_projection"] = sd.pop("text_projection.weight").T.contiguous()
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([sd.pop(f"{src}self_attn.{p}_proj.{kind}") for p in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}{b}.{kind}"] = sd.pop(f"{src}{a}.{kind}")
    sd.pop("embeddings.position_ids", None)
    if sd:
        raise ValueError(f"no OpenCLIP name for {sorted(sd)[:3]}")
    return out


ADAPTER_KEY = re.compile(r"\.(lora_[A-Za-z_]+|lora_magnitude_vector)\.")  # peft's adapter parts of a wrapped layer


def base_weights(model) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without LoRA adapters a Generator or a training run injected (peft wraps a layer as
    ``<name>.base_layer`` beside its ``lora_A``/``lora_B``): the model's own weights under their own names."""
    return {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if not ADAPTER_KEY.search(k)}


def to_original_state_dict(pipe, family: str) -> dict[str, torch.Tensor]:
    """A pipeline's weights under the names of an original SD1/SD2/SDXL single-file checkpoint."""
    out = {UNET + _unet_original(k, pipe.unet): v for k, v in base_weights(pipe.unet).items()}
    n_up = len(pipe.vae.config.up_block_types)
    for k, v in pipe.vae.state_dict().items():
        name, tensor = _vae_original(k, v, n_up)
        out[VAE + name] = tensor
    encoders = [pipe.text_encoder, getattr(pipe, "text_encoder_2", None)]
    for (prefix, layout), te in zip(families.get(family).original_text_encoders, encoders, strict=False):
        state = {k: v for k, v in base_weights(te).items() if not k.endswith("position_ids")}
        if layout == OPEN_CLIP:
            out |= _open_clip_original(state, prefix)
        else:
            out |= {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}
    return {k: v.detach().contiguous() if v.is_meta else v.detach().contiguous().cpu() for k, v in out.items()}


def save_single_file(pipe, path: Path, family: str) -> Path:
    """Write a pipeline as one .safetensors file in the original layout (as A1111's models folder holds them)."""
    from safetensors.torch import save_file

    save_file(to_original_state_dict(pipe, family), str(path))
    return path
