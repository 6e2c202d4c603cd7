"""Stable Diffusion 1.x: one CLIP ViT-L text encoder, epsilon prediction, 512 px. Everything is the default."""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.models.families.base import (
    CLIP_L,
    Family,
    scheduler_config,
    sd_pipeline_configs,
    unet_config,
    vae_config,
)


@dataclass(frozen=True)
class SD1(Family):
    def matches_pipeline(self, pipe) -> bool:
        """One text encoder that is neither OpenCLIP-H (SD2) nor paired with a v-predicting scheduler."""
        if getattr(pipe, "text_encoder_2", None) is not None:
            return False
        te_cfg = pipe.text_encoder.config
        sd2_encoder = te_cfg.hidden_size == 1024 or getattr(te_cfg, "hidden_act", "") == "gelu"
        return not sd2_encoder and pipe.scheduler.config.get("prediction_type") != "v_prediction"

    def architecture_configs(self) -> dict[str, dict]:
        return sd_pipeline_configs(unet_config(), vae_config(), scheduler_config(), CLIP_L)


FAMILY = SD1("sd1", "sd_v1", "stable-diffusion-v1/lora", 512)
