"""The real SD 1.5, SD 2.1 and SDXL architectures, built on the meta device: lorakit's LoRA adapts exactly the
modules sd-scripts' Standard LoRA does (its counts are bench/real_size.py's SD_SCRIPTS_MODULES), under the key
names sd-scripts writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from lorakit.config.schema import TrainConfig
from lorakit.lora.network import Network, te_key, unet_key
from lorakit.models import families
from lorakit.train import memory as M

_spec = importlib.util.spec_from_file_location("bench_real_size", Path(__file__).parents[1] / "bench" / "real_size.py")
bench = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))  # a dataclass needs it there
_spec.loader.exec_module(bench)

NAMES = {  # keys as sd-scripts writes them: diffusers paths for SD 1.x/2.x, SGM block paths for SDXL
    "sd15": ["lora_unet_down_blocks_0_attentions_0_proj_in",
             "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0",
             "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2",
             "lora_te_text_model_encoder_layers_0_self_attn_q_proj", "lora_te_text_model_encoder_layers_11_mlp_fc2"],
    "sd21": ["lora_unet_up_blocks_1_attentions_0_proj_out", "lora_te_text_model_encoder_layers_22_mlp_fc1"],
    "sdxl": ["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", "lora_unet_input_blocks_4_1_proj_in",
             "lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_0_proj",
             "lora_unet_middle_block_1_transformer_blocks_9_attn2_to_k", "lora_unet_output_blocks_0_1_proj_out",
             "lora_unet_output_blocks_5_1_transformer_blocks_1_attn2_to_v",
             "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
             "lora_te2_text_model_encoder_layers_31_mlp_fc2"],
}


def sd_scripts_rule(model: nn.Module, classes: tuple[str, ...]) -> set[str]:
    """sd-scripts' selection: every Linear and 1x1 Conv2d inside a module whose class name is in ``classes``."""
    names = set()
    for name, module in model.named_modules():
        if type(module).__name__ in classes:
            for child_name, child in module.named_modules():
                if type(child) is nn.Linear or (type(child) is nn.Conv2d and child.kernel_size == (1, 1)):
                    names.add(f"{name}.{child_name}")
    return names


@pytest.fixture(scope="module", params=list(bench.TARGETS))
def real(request):
    """(bench key, {prefix: sd-scripts' module names}, {prefix: adapted module names}, {prefix: kohya keys})."""
    key = request.param
    family = bench.TARGETS[key].family
    base = M.build_meta_base(M._arch(family, families.get(family).architecture_configs()), torch.float16)
    rule = {"lora_unet": sd_scripts_rule(base.unet, ("Transformer2DModel",))}
    for prefix, te in zip(base.family.te_prefixes(), base.text_encoders, strict=True):
        rule[prefix] = sd_scripts_rule(te, ("CLIPAttention", "CLIPMLP"))
    net = Network.attach(base, TrainConfig().replace({"optimizer.text_encoder_lr": 5e-5}))  # U-Net + text encoders
    adapted = {prefix: {n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}
               for prefix, model in net.parts.items()}
    keys = {prefix: {unet_key(base, n) if prefix == "lora_unet" else te_key(prefix, n) for n in names}
            for prefix, names in adapted.items()}
    yield key, rule, adapted, keys
    net.detach()


def test_module_counts_are_sd_scripts_counts(real):
    key, rule, adapted, keys = real
    expected = bench.SD_SCRIPTS_MODULES[key]
    assert {p: len(names) for p, names in rule.items()} == expected, "the constants follow sd-scripts' rule"
    assert adapted == rule, "lorakit adapts the very modules sd-scripts does"
    assert {p: len(k) for p, k in keys.items()} == expected, "one distinct key per module"


def test_keys_are_the_names_sd_scripts_writes(real):
    key, _, _, keys = real
    every = set().union(*keys.values())
    assert set(NAMES[key]) <= every, sorted(set(NAMES[key]) - every)
    if key == "sdxl":
        assert all(k.startswith(("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_"))
                   for k in keys["lora_unet"])
