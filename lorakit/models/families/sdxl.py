"""SDXL: two text encoders (CLIP-L and OpenCLIP-bigG), pooled embedding and size/crop ids, SGM key names, 1024 px."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lorakit.models.families.base import (
    CLIP,
    CLIP_L,
    OPEN_CLIP,
    Family,
    SizeIds,
    clip_config,
    original_unet_key,
    scheduler_config,
    unet_config,
    vae_config,
)


@dataclass(frozen=True)
class SDXL(Family):
    def matches_pipeline(self, pipe) -> bool:
        return getattr(pipe, "text_encoder_2", None) is not None

    def encode(self, base, input_ids: list[torch.Tensor], clip_skip: int = 1) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Penultimate layer of both encoders, concatenated; pooled from the second (projection) encoder."""
        states, pooled = [], None
        for te, ids in zip(base.text_encoders, input_ids, strict=True):
            out = te(ids.to(te.device), output_hidden_states=True)
            states.append(out.hidden_states[-(clip_skip + 1)])
            if hasattr(out, "text_embeds"):
                pooled = out.text_embeds
        return torch.cat(states, dim=-1), pooled

    def added_cond(self, pooled: torch.Tensor | None, sizes: list[SizeIds], device, dtype) -> dict | None:
        """SDXL's micro-conditioning, a row per sample: original h, w, crop top, left, target h, w; (B, 6)."""
        ids = torch.tensor([[*orig, *crop, *target] for orig, crop, target in sizes], device=device, dtype=dtype)
        return {"text_embeds": pooled.to(device=device, dtype=dtype), "time_ids": ids}

    def unet_key(self, unet, module_name: str) -> str:
        return original_unet_key(unet, module_name)

    def architecture_configs(self) -> dict[str, dict]:
        unet = unet_config(
            sample_size=128, down_block_types=["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2,
            up_block_types=["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"], block_out_channels=[320, 640, 1280],
            attention_head_dim=[5, 10, 20], cross_attention_dim=2048, transformer_layers_per_block=[1, 2, 10],
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
        index = {"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                 "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                 "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                 "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                 "tokenizer_2": ["transformers", "CLIPTokenizer"]}
        return {"": index, "unet": unet, "vae": vae_config(1024, 0.13025, force_upcast=True),
                "scheduler": scheduler_config("EulerDiscreteScheduler"), "text_encoder": CLIP_L,
                "text_encoder_2": clip_config(1280, 32, 20, "gelu", 1280, "CLIPTextModelWithProjection")}


FAMILY = SDXL(
    "sdxl", "sdxl_base_v1-0", "stable-diffusion-xl-v1-base/lora", 1024,
    modelspec_implementation="https://github.com/Stability-AI/generative-models",
    pipeline_class="StableDiffusionXLPipeline",
    te_key_prefixes=("lora_te1", "lora_te2"),
    original_text_encoders=(("conditioner.embedders.0.transformer.", CLIP), ("conditioner.embedders.1.model.", OPEN_CLIP)),
)
