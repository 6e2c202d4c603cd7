"""Single-file checkpoints (.safetensors from an A1111/ComfyUI models folder), loaded offline.

    pipe = load_single_file(Path("models/v1-5-pruned-emaonly.safetensors"))          # family from the keys
    pipe = load_single_file(path, family="sd2-v", config="/models/sd21-diffusers")   # configs from a folder
    save_single_file(pipe, Path("tiny.safetensors"))                                  # the reverse, for tests

diffusers' ``from_single_file`` needs each component's config. It would fetch them from the hub; here they come
from a local diffusers folder (``config=``) or from the architecture configs of SD1 / SD2 / SD2-v / SDXL written
below, so nothing touches the network. The family is read from the checkpoint's key layout (which text encoder
it carries), not from tensor sizes, so pruned, merged and tiny checkpoints are recognised alike.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_PREFIX = {"sd1": "cond_stage_model.transformer.", "sdxl": "conditioner.embedders.0.transformer."}
OPEN_CLIP_PREFIX = {"sd2": "cond_stage_model.model.", "sdxl": "conditioner.embedders.1.model."}

# Where a tokenizer may already sit in the local Hugging Face cache (never downloaded from here); A1111 keeps
# openai/clip-vit-large-patch14 there, and SD2's / SDXL's OpenCLIP tokenizers are that vocabulary padded with "!".
HF_CACHE_DIR: str | None = None  # None: the default cache
TOKENIZER_REPOS = {
    "tokenizer": [("openai/clip-vit-large-patch14", ""), ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer")],
    "tokenizer_sd2": [("stabilityai/stable-diffusion-2-1", "tokenizer"), ("stabilityai/stable-diffusion-2", "tokenizer")],
    "tokenizer_2": [("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k", ""),
                    ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer_2")],
}


# ---- architecture configs of the real models (what from_single_file would otherwise download) ----------
def _unet_config(family: str) -> dict:
    cfg = {
        "_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "attention_head_dim": 8,
        "cross_attention_dim": 768, "norm_num_groups": 32, "flip_sin_to_cos": True, "freq_shift": 0,
    }
    if family in ("sd2", "sd2-v"):
        cfg |= {"attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024, "use_linear_projection": True,
                "sample_size": 96 if family == "sd2-v" else 64}
    if family == "sdxl":
        cfg |= {"sample_size": 128, "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2,
                "up_block_types": ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"], "block_out_channels": [320, 640, 1280],
                "attention_head_dim": [5, 10, 20], "cross_attention_dim": 2048, "transformer_layers_per_block": [1, 2, 10],
                "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                "projection_class_embeddings_input_dim": 2816}
    return cfg


def _vae_config(family: str) -> dict:
    return {
        "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
        "sample_size": {"sd2-v": 768, "sdxl": 1024}.get(family, 512),
        "scaling_factor": 0.13025 if family == "sdxl" else 0.18215, "force_upcast": family == "sdxl",
    }


def _clip_config(hidden: int, layers: int, heads: int, act: str, projection: int, cls: str) -> dict:
    return {"architectures": [cls], "model_type": "clip_text_model", "hidden_size": hidden,
            "intermediate_size": hidden * 4, "num_hidden_layers": layers, "num_attention_heads": heads,
            "hidden_act": act, "projection_dim": projection, "max_position_embeddings": 77, "vocab_size": 49408,
            "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1, "layer_norm_eps": 1e-5}


def _scheduler_config(family: str) -> dict:
    return {"_class_name": "EulerDiscreteScheduler" if family == "sdxl" else "PNDMScheduler",
            "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "steps_offset": 1, "skip_prk_steps": True, "set_alpha_to_one": False,
            "prediction_type": "v_prediction" if family == "sd2-v" else "epsilon"}


def architecture_configs(family: str) -> dict[str, dict]:
    """{component folder: config.json content} of a family's real architecture, plus model_index.json."""
    clip_l = _clip_config(768, 12, 12, "quick_gelu", 768, "CLIPTextModel")
    parts = {"unet": _unet_config(family), "vae": _vae_config(family), "scheduler": _scheduler_config(family)}
    if family == "sdxl":
        parts["text_encoder"] = clip_l
        parts["text_encoder_2"] = _clip_config(1280, 32, 20, "gelu", 1280, "CLIPTextModelWithProjection")
        te_index = {"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                    "tokenizer_2": ["transformers", "CLIPTokenizer"]}
    else:  # SD2's OpenCLIP-H is used without its last layer: diffusers keeps 23 of 24
        parts["text_encoder"] = clip_l if family == "sd1" else _clip_config(1024, 23, 16, "gelu", 512, "CLIPTextModel")
        te_index = {"safety_checker": [None, None], "feature_extractor": [None, None],
                    "requires_safety_checker": False}
    sched = parts["scheduler"]["_class_name"]
    index = {"_class_name": "StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", sched], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], **te_index}
    return {"": index, **parts}


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
def checkpoint_keys(path: Path) -> set[str]:
    """Tensor names of a .safetensors file (header only) or of a .ckpt (loaded: only with allow_pickle)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    return set(load_single_file_checkpoint(str(path)))


def detect_checkpoint_family(keys: set[str]) -> str:
    """'sd1', 'sd2' or 'sdxl' from which text encoder(s) the checkpoint carries; ModelError if it is not SD."""
    from lorakit.models import ModelError

    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if not has(UNET):
        raise ModelError("this file has no Stable Diffusion UNet (model.diffusion_model.*): is it a LoRA, a VAE "
                         "or another kind of model? Give a full SD1/SD2/SDXL checkpoint.")
    if has(OPEN_CLIP_PREFIX["sdxl"]) and has(CLIP_PREFIX["sdxl"]):
        return "sdxl"
    if has(OPEN_CLIP_PREFIX["sd2"]):
        return "sd2"
    if has(CLIP_PREFIX["sd1"]):
        return "sd1"
    raise ModelError("this checkpoint has a UNet but no text encoder lorakit knows (SDXL refiner, inpainting "
                     "or a UNet-only file?). Give a full SD1/SD2/SDXL checkpoint.")


def resolve_family(path: Path, detected: str, family: str) -> str:
    """The family to load as: the config's choice when it fits the file, else the detected one (with a warning)."""
    if family in ("", "auto"):
        if detected != "sd2":
            return detected
        return "sd2-v" if _yaml_says_v(path) else _warn_sd2(path)
    if family.startswith("sd2") and detected == "sd2":
        return family
    if family != detected:
        warnings.warn(f"{path.name} holds an {detected} model, but model.family = {family!r}: loading it as "
                      f"{detected}. Set model.family = 'auto' (or {detected!r}).", stacklevel=3)
        return detected
    return family


def _yaml_says_v(path: Path) -> bool:
    """A1111 keeps a same-named .yaml beside SD2 checkpoints; `parameterization: "v"` marks a v-model."""
    yaml = path.with_suffix(".yaml")
    return yaml.is_file() and re.search(r"parameterization:\s*['\"]?v['\"]?\s*$", yaml.read_text(), re.M) is not None


def _warn_sd2(path: Path) -> str:
    warnings.warn(f"{path.name} is an SD 2.x model; a single file does not say whether it predicts v (768-v) or "
                  "epsilon (512-base). Assuming v-prediction (SD 2.1 768); set model.family = 'sd2' for the 512 "
                  "base model, or put A1111's .yaml beside the file.", stacklevel=3)
    return "sd2-v"


# ---- loading ---------------------------------------------------------------------------------------------
def load_single_file(path: Path, family: str = "auto", dtype=None, config: str | Path | None = None):
    """A diffusers pipeline from a single-file checkpoint, offline; ``config`` is an optional diffusers folder."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from lorakit.models import ModelError

    path = Path(path)
    fam = resolve_family(path, detect_checkpoint_family(checkpoint_keys(path)), family)
    folder = Path(config) if config else write_config_folder(fam)
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"single-file config {folder} is not a diffusers folder (no model_index.json).")
    cls = StableDiffusionXLPipeline if fam == "sdxl" else StableDiffusionPipeline
    extra = _tokenizers(folder, fam)
    if cls is StableDiffusionPipeline:
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
    from lorakit.models import ModelError

    for name, part in pipe.components.items():
        missing = [k for k, v in getattr(part, "state_dict", dict)().items() if v.is_meta]
        if missing:
            raise ModelError(f"{path.name}: {name} did not get {len(missing)} tensors from the file "
                             f"(e.g. {missing[0]}); the checkpoint does not match the {name} config.")


def _tokenizers(folder: Path, family: str) -> dict:
    """Tokenizers the config folder lacks, from the local Hugging Face cache; a teaching error if absent."""
    from lorakit.models import ModelError

    out = {}
    for name in ("tokenizer", "tokenizer_2") if family == "sdxl" else ("tokenizer",):
        if (folder / name).is_dir():
            continue
        open_clip = family.startswith("sd2") or name == "tokenizer_2"
        repos = TOKENIZER_REPOS["tokenizer_sd2" if family.startswith("sd2") else name]
        tok = _cached_tokenizer(repos) or _cached_tokenizer(TOKENIZER_REPOS["tokenizer"])
        if tok is None:
            raise ModelError(
                f"loading a single file needs the {family} CLIP tokenizer, which a checkpoint does not contain and "
                f"lorakit will not download. Give the diffusers folder of the same family as the config (it holds "
                f"{name}/), or fetch it once while online: huggingface-cli download {repos[0][0]}."
            )
        if open_clip and tok.pad_token != "!":
            # OpenCLIP (SD2, SDXL's second encoder) uses CLIP's BPE vocabulary but pads with "!" (id 0)
            tok.pad_token = "!"
        out[name] = tok
    return out


def _cached_tokenizer(repos: list[tuple[str, str]]):
    """The first of ``repos`` whose tokenizer is in the local Hugging Face cache, else None (never downloads)."""
    from transformers import CLIPTokenizer

    for repo, sub in repos:
        try:
            return CLIPTokenizer.from_pretrained(repo, subfolder=sub, local_files_only=True, cache_dir=HF_CACHE_DIR)
        except OSError:
            continue
    return None


# ---- the reverse: a pipeline in the original single-file layout ------------------------------------------
def _unet_original(name: str, unet) -> str:
    """diffusers UNet parameter name -> original (LDM/SGM) name, inside model.diffusion_model."""
    from lorakit.network import sdxl_unet_to_sgm

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
    return f"{sdxl_unet_to_sgm(module, unet.config.layers_per_block)}.{leaf}"


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


def to_original_state_dict(pipe, family: str) -> dict[str, torch.Tensor]:
    """A pipeline's weights under the names of an original SD1/SD2/SDXL single-file checkpoint."""
    out = {UNET + _unet_original(k, pipe.unet): v for k, v in pipe.unet.state_dict().items()}
    n_up = len(pipe.vae.config.up_block_types)
    for k, v in pipe.vae.state_dict().items():
        name, tensor = _vae_original(k, v, n_up)
        out[VAE + name] = tensor
    te = {k: v for k, v in pipe.text_encoder.state_dict().items() if not k.endswith("position_ids")}
    if family.startswith("sd2"):
        out |= _open_clip_original(te, OPEN_CLIP_PREFIX["sd2"])
    else:
        prefix = CLIP_PREFIX["sdxl" if family == "sdxl" else "sd1"]
        out |= {prefix + (k if k.startswith("text_model.") else "text_model." + k): v for k, v in te.items()}
    if family == "sdxl":
        out |= _open_clip_original(pipe.text_encoder_2.state_dict(), OPEN_CLIP_PREFIX["sdxl"])
    return {k: v.detach().contiguous() if v.is_meta else v.detach().contiguous().cpu() for k, v in out.items()}


def save_single_file(pipe, path: Path, family: str) -> Path:
    """Write a pipeline as one .safetensors file in the original layout (as A1111's models folder holds them)."""
    from safetensors.torch import save_file

    save_file(to_original_state_dict(pipe, family), str(path))
    return path
