"""Stable Diffusion 2.x: OpenCLIP-H text encoder; two families with the same weights, 512 ε and 768 v-prediction."""

from __future__ import annotations

from dataclasses import dataclass

from lorakit.models.families.base import (
    OPEN_CLIP,
    Family,
    clip_config,
    scheduler_config,
    sd_pipeline_configs,
    unet_config,
    vae_config,
)


@dataclass(frozen=True)
class SD2(Family):
    def matches_pipeline(self, pipe) -> bool:
        """One text encoder; a v-predicting scheduler means the 768-v model, else an OpenCLIP-H encoder means 2.x."""
        if getattr(pipe, "text_encoder_2", None) is not None:
            return False
        if pipe.scheduler.config.get("prediction_type") == "v_prediction":
            return self.prediction_type == "v_prediction"
        te_cfg = pipe.text_encoder.config
        sd2_encoder = te_cfg.hidden_size == 1024 or getattr(te_cfg, "hidden_act", "") == "gelu"
        return sd2_encoder and self.prediction_type != "v_prediction"

    def architecture_configs(self) -> dict[str, dict]:
        v = self.prediction_type == "v_prediction"
        unet = unet_config(attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
                           sample_size=96 if v else 64)
        # SD2's OpenCLIP-H is used without its last layer: diffusers keeps 23 of 24
        te = clip_config(1024, 23, 16, "gelu", 512, "CLIPTextModel")
        sched = scheduler_config(prediction_type="v_prediction" if v else "epsilon")
        return sd_pipeline_configs(unet, vae_config(sample_size=768 if v else 512), sched, te)


_COMMON = dict(v2=True, layout="sd2", original_text_encoders=(("cond_stage_model.model.", OPEN_CLIP),))
FAMILY = SD2("sd2", "sd_v2", "stable-diffusion-v2-512/lora", 512, **_COMMON)
FAMILY_V = SD2("sd2-v", "sd_v2", "stable-diffusion-v2-768-v/lora", 768, prediction_type="v_prediction", **_COMMON)
