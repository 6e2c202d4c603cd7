"""What every model family has, behind one interface: the loop, the exporter and the generator ask it, never a name.

    fam = families.get("sd1")
    ids = fam.tokenize(base, ["photo of zkx"])          # one tensor per text encoder
    hidden, pooled = fam.encode(base, ids, clip_skip=1)  # pooled only where the UNet takes it (SDXL)
    added = fam.added_cond(pooled, [square_sizes(512)], device="cpu", dtype=torch.float32)  # None or SDXL's ids
    fam.unet_key(unet, "down_blocks.1.attentions.0.proj_in")   # the kohya key A1111 and ComfyUI read

The defaults are those of a Stable Diffusion model with one CLIP text encoder (SD 1.x, SD 2.x); a family that
differs (SDXL) overrides a method. ``base`` is a loaded ``BaseModel`` (not imported here: models.loading uses this).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

# kohya's targets: linear layers (and 1×1 convs) inside the transformer blocks and the text encoder's attention
# and MLP; LoCon and friends add everything inside the ResNet blocks and the down/up samplers.
UNET_ATTN_BLOCKS = ("Transformer2DModel",)
UNET_CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TE_BLOCKS = ("CLIPAttention", "CLIPMLP", "CLIPSdpaAttention")

# original (LDM/SGM) single-file layout: UNet and VAE prefixes, and how a text encoder's tensors are named there
ORIGINAL_UNET = "model.diffusion_model."
ORIGINAL_VAE = "first_stage_model."
CLIP, OPEN_CLIP = "clip", "open_clip"  # transformers' layout under a prefix / OpenCLIP's fused layout

# one sample's size conditioning (SDXL's time ids): (original h, w), (crop top, left), (target h, w); per image
# from lorakit.dataset.crop.micro_conditioning
SizeIds = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def square_sizes(side: int) -> SizeIds:
    """The size ids of a ``side``² image trained uncropped at its own size."""
    return (side, side), (0, 0), (side, side)


@dataclass(frozen=True)
class Family:
    """One model family: its names in other tools, its defaults, and how to drive its parts."""

    name: str  # what model.family says in lorakit.toml: sd1 | sd2 | sd2-v | sdxl
    ss_base_model_version: str  # what kohya writes in ss_base_model_version
    modelspec_architecture: str  # modelspec.architecture, which A1111 uses to list LoRAs per family
    default_resolution: int
    v2: bool = False  # kohya's ss_v2
    prediction_type: str | None = None  # what the family always predicts; None: whatever the model's scheduler says
    layout: str = ""  # the weights' layout (default: the name); families that differ only in prediction (sd2, sd2-v) share one
    modelspec_implementation: str = "diffusers"
    pipeline_class: str = "StableDiffusionPipeline"  # the diffusers class that loads a single file of it
    te_key_prefixes: tuple[str, ...] = ("lora_te",)  # kohya key prefix of each text encoder, in order
    # (prefix, CLIP | OPEN_CLIP) of each text encoder in an original single-file checkpoint
    original_text_encoders: tuple[tuple[str, str], ...] = (("cond_stage_model.transformer.", CLIP),)
    unet_target_blocks: tuple[str, ...] = UNET_ATTN_BLOCKS
    unet_conv_blocks: tuple[str, ...] = UNET_CONV_BLOCKS
    te_target_blocks: tuple[str, ...] = TE_BLOCKS

    def __post_init__(self):
        if not self.layout:
            object.__setattr__(self, "layout", self.name)

    def te_prefixes(self) -> list[str]:
        """Key prefixes of the text encoder(s) in kohya files."""
        return list(self.te_key_prefixes)

    # ---- recognising one -------------------------------------------------------------------------------
    def matches_pipeline(self, pipe) -> bool:
        """Whether a loaded diffusers pipeline is of this family (asked newest registration first)."""
        raise NotImplementedError(f"family {self.name!r}: say how to recognise its pipelines")

    def matches_keys(self, keys: set[str]) -> bool:
        """Whether an original single-file checkpoint with these tensor names holds this family's weights."""
        return all(any(k.startswith(prefix) for k in keys) for prefix, _ in self.original_text_encoders)

    def architecture_configs(self) -> dict[str, dict]:
        """{component folder: config.json content} of the real architecture, "" for model_index.json."""
        raise NotImplementedError(f"family {self.name!r} ships no architecture configs: pass a config folder")

    # ---- text and conditioning -------------------------------------------------------------------------
    def tokenize(self, base: Any, captions: list[str], max_token_length: int = 0) -> list[torch.Tensor]:
        """Token ids for each text encoder, padded to the encoder's max length: (B, 77). With ``max_token_length``
        150 or 225 (kohya's), (B, windows, 77): the caption's first 150 / 225 tokens in windows of 75, each with its
        own start and end token, for ``encode_windows``."""
        out = []
        for tok in base.tokenizers:
            width = tok.model_max_length - 2  # the tokens one window holds
            if max_token_length <= width:
                out.append(tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                               return_tensors="pt").input_ids)
                continue
            windows = max_token_length // width
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            rows = []
            for caption in captions:
                ids = tok(caption, add_special_tokens=False, truncation=False).input_ids[:windows * width]
                rows.append([[tok.bos_token_id, *part, tok.eos_token_id] + [pad] * (width - len(part))
                             for part in (ids[i * width:(i + 1) * width] for i in range(windows))])
            out.append(torch.tensor(rows, dtype=torch.long))
        return out

    def encode_windows(self, base: Any, input_ids: list[torch.Tensor], clip_skip: int = 1
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``encode`` for ids of any window count: (B, 77) as ``encode``; (B, n, 77) encodes the n windows apart
        and joins them as sd-scripts does: the first window's start token, every window's 75 inner states, the last
        window's end token, (B, 75n + 2, D); the pooled embedding (SDXL) is the first window's."""
        if input_ids[0].dim() == 2:
            return self.encode(base, input_ids, clip_skip)
        batch, n, length = input_ids[0].shape
        hidden, pooled = self.encode(base, [ids.reshape(batch * n, length) for ids in input_ids], clip_skip)
        hidden = hidden.reshape(batch, n, length, -1)
        joined = torch.cat([hidden[:, 0, :1], hidden[:, :, 1:-1].reshape(batch, n * (length - 2), -1),
                            hidden[:, -1, -1:]], dim=1)
        return joined, None if pooled is None else pooled.reshape(batch, n, -1)[:, 0]

    def encode(self, base: Any, input_ids: list[torch.Tensor], clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(encoder_hidden_states, pooled) for the UNet; one CLIP encoder, so no pooled embedding."""
        te = base.text_encoders[0]
        ids = input_ids[0].to(te.device)
        if clip_skip == 1:
            return te(ids)[0], None
        hidden = te(ids, output_hidden_states=True).hidden_states[-clip_skip]
        return te.text_model.final_layer_norm(hidden) if hasattr(te, "text_model") else te.final_layer_norm(hidden), None

    def added_cond(self, pooled: torch.Tensor | None, sizes: list[SizeIds], device, dtype) -> dict | None:
        """Extra UNet inputs (``added_cond_kwargs``) for a batch with one ``SizeIds`` per sample; none for plain SD."""
        return None

    # ---- latents ---------------------------------------------------------------------------------------
    def latent_scale(self, vae) -> float:
        return float(vae.config.scaling_factor)

    def latent_shift(self, vae) -> float:
        return float(getattr(vae.config, "shift_factor", None) or 0.0)

    # ---- kohya key names -------------------------------------------------------------------------------
    def unet_key(self, unet, module_name: str) -> str:
        """lora_unet_<diffusers module path with _>, as kohya names SD1/SD2 UNet layers."""
        return "lora_unet_" + module_name.replace(".", "_")


# ---- architecture config pieces shared by the SD families (what from_single_file would otherwise download) ----
def unet_config(**changes) -> dict:
    cfg = {
        "_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4, "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "attention_head_dim": 8,
        "cross_attention_dim": 768, "norm_num_groups": 32, "flip_sin_to_cos": True, "freq_shift": 0,
    }
    return cfg | changes


def vae_config(sample_size: int = 512, scaling_factor: float = 0.18215, force_upcast: bool = False) -> dict:
    return {
        "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
        "sample_size": sample_size, "scaling_factor": scaling_factor, "force_upcast": force_upcast,
    }


def clip_config(hidden: int, layers: int, heads: int, act: str, projection: int, cls: str) -> dict:
    return {"architectures": [cls], "model_type": "clip_text_model", "hidden_size": hidden,
            "intermediate_size": hidden * 4, "num_hidden_layers": layers, "num_attention_heads": heads,
            "hidden_act": act, "projection_dim": projection, "max_position_embeddings": 77, "vocab_size": 49408,
            "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1, "layer_norm_eps": 1e-5}


CLIP_L = clip_config(768, 12, 12, "quick_gelu", 768, "CLIPTextModel")


def scheduler_config(cls: str = "PNDMScheduler", prediction_type: str = "epsilon") -> dict:
    return {"_class_name": cls, "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "steps_offset": 1, "skip_prk_steps": True, "set_alpha_to_one": False,
            "prediction_type": prediction_type}


def sd_pipeline_configs(unet: dict, vae: dict, scheduler: dict, text_encoder: dict) -> dict[str, dict]:
    """The configs of a StableDiffusionPipeline (one text encoder, no safety checker), model_index.json included."""
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", scheduler["_class_name"]],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
    return {"": index, "unet": unet, "vae": vae, "scheduler": scheduler, "text_encoder": text_encoder}


def original_unet_path(name: str, layers_per_block: int) -> str:
    """diffusers UNet module path -> the original (LDM/SGM) block path (kohya writes it for SDXL's keys)."""
    n = layers_per_block + 1  # slots per level: resnets (+ attention) and one downsampler / upsampler
    resnet_sub = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                  "conv_shortcut": "skip_connection", "norm1": "in_layers.0", "norm2": "out_layers.0"}

    def resnet(rest: str) -> str:
        head, _, tail = rest.partition(".")
        return resnet_sub.get(head, head) + ("." + tail if tail else "")

    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = i * n + j + 1
        return f"input_blocks.{idx}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv(.*)", name):
        return f"input_blocks.{(int(m[1]) + 1) * n}.0.op{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", name):
        return f"middle_block.{2 * int(m[1])}.{resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", name):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", name):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = i * n + j  # up blocks have layers_per_block + 1 resnets, so the stride is n as well
        return f"output_blocks.{idx}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", name):
        return f"output_blocks.{int(m[1]) * n + n - 1}.UPS.{m[2]}"
    return name


def original_unet_key(unet, module_name: str) -> str:
    """lora_unet_<original block path with _>: kohya's SDXL naming (``input_blocks_4_1_…``)."""
    sgm = original_unet_path(module_name, unet.config.layers_per_block)
    if ".UPS." in sgm:  # the upsampler sits after the resnet, and after the attention when the block has one
        block = unet.up_blocks[int(module_name.split(".")[1])]
        sgm = sgm.replace(".UPS.", ".2." if hasattr(block, "attentions") else ".1.")
    return "lora_unet_" + sgm.replace(".", "_")
