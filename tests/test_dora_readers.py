"""Which clients draw lorakit's DoRA files as trained. lorakit writes one magnitude per output row (PEFT's DoRA,
LyCORIS' wd_on_out); the readers' formulas, rewritten here from their documented behaviour, are applied to a
trained file and compared with the delta training saw: lorakit's preview is exact, ComfyUI (which picks the axis
from the shape) is close, AUTOMATIC1111 (always per input column) is wrong — so export to A1111 is refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_networks import _config, adapted_layers, applied_delta
from test_user_folders import COMFY, WEBUI, make_tree

from lorakit.errors import ExportError
from lorakit.evaluate.export import export_lora
from lorakit.lora.file import dora_layout
from lorakit.lora.network import ADAPTER, Network, detach_all
from lorakit.lora.patching import layer_delta
from lorakit.models.loading import load_base
from lorakit.project import Project


def _lora_delta(sd, key, weight):
    up, down = sd[f"{key}.lora_up.weight"].float(), sd[f"{key}.lora_down.weight"].float()
    return (up.flatten(1) @ down.flatten(1)).reshape(weight.shape) * sd[f"{key}.alpha"].item() / down.shape[0]


def a1111_delta(sd, key, weight):
    """AUTOMATIC1111 1.10: the merged weight rescaled by dora_scale over its norm per input column."""
    merged = weight + _lora_delta(sd, key, weight)
    norm = merged.transpose(0, 1).flatten(1).norm(dim=1).reshape(1, -1, *([1] * (weight.dim() - 2)))
    return merged * (sd[f"{key}.dora_scale"] / norm) - weight


def comfyui_delta(sd, key, weight):
    """ComfyUI: a scale as long as the output axis means per output row — divided by the base weight's row norm."""
    scale = sd[f"{key}.dora_scale"]
    merged = weight + _lora_delta(sd, key, weight)
    if scale.shape[0] == weight.shape[0]:
        norm = weight.flatten(1).norm(dim=1).reshape(-1, *([1] * (weight.dim() - 1)))
    else:
        norm = merged.transpose(0, 1).flatten(1).norm(dim=1).reshape(1, -1, *([1] * (weight.dim() - 2)))
    return merged * (scale / norm) - weight


def _train_a_little(net: Network, seed: int = 3) -> None:
    """Stand in for a real run: the up factors leave zero by a little and the magnitudes move by about 2 %, so
    the change is a few per cent of the base weight, as in a trained LoRA."""
    gen = torch.Generator().manual_seed(seed)
    for model in net.parts.values():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=gen)
            if "magnitude" in name:
                p.data *= 1 + 0.02 * noise
            elif "lora_B" in name:
                p.data += 0.02 * noise


@pytest.fixture(scope="module")
def trained_dora(tiny_sd1, tmp_path_factory):
    base = load_base(str(tiny_sd1))
    detach_all(base)
    net = Network.attach(base, _config("dora"))
    _train_a_little(net)
    layers = adapted_layers(base, ADAPTER)
    trained = {k: applied_delta(m, ADAPTER) for k, m in layers.items()}
    weights = {k: m.get_base_layer().weight.detach().float().clone() for k, m in layers.items()}
    path = tmp_path_factory.mktemp("dora") / "zkx.safetensors"
    save_file(net.kohya_state_dict(torch.float32), str(path), metadata={"ss_base_model_version": "sd_v1"})
    net.detach()
    return path, trained, weights


def _relative_error(reader, sd, trained, weights) -> float:
    errors = [float((reader(sd, k, weights[k]) - d).norm() / d.norm()) for k, d in trained.items() if d.norm() > 0]
    return max(errors)


def test_each_reader_against_the_trained_delta(trained_dora):
    path, trained, weights = trained_dora
    sd = load_file(str(path))
    assert dora_layout(path) == "output"
    ours = _relative_error(layer_delta, sd, trained, weights)
    comfy = _relative_error(comfyui_delta, sd, trained, weights)
    a1111 = _relative_error(a1111_delta, sd, trained, weights)
    print(f"\nrelative error of the applied DoRA delta: lorakit {ours:.2e}, ComfyUI {comfy:.2e}, A1111 {a1111:.2e}")
    assert ours < 1e-4, "lorakit's preview applies the file as it was trained"
    assert a1111 > 0.5, "A1111's per-column norm does not draw a per-row file"
    assert comfy < a1111 / 5, "ComfyUI reads the axis from the shape and comes close"


def test_a_per_column_file_is_read_as_such(trained_dora, tmp_path):
    path, _, _ = trained_dora
    sd = load_file(str(path))
    cols = {k: (v.reshape(1, -1) if k.endswith("dora_scale") else v) for k, v in sd.items()}  # shape only
    save_file(cols, str(tmp_path / "cols.safetensors"))
    assert dora_layout(tmp_path / "cols.safetensors") == "input"
    plain = {k: v for k, v in sd.items() if not k.endswith("dora_scale")}
    save_file(plain, str(tmp_path / "plain.safetensors"))
    assert dora_layout(tmp_path / "plain.safetensors") is None


def test_export_refuses_a1111_for_a_per_row_dora_file_and_copies_to_comfyui(trained_dora, tmp_path):
    path, _, _ = trained_dora
    project = Project.create(tmp_path / "proj")
    (project.dataset_dir / "10_zkx").mkdir(parents=True)
    project.output_dir.mkdir(parents=True, exist_ok=True)
    lora = project.output_dir / "zkx.safetensors"
    lora.write_bytes(path.read_bytes())
    webui = make_tree(tmp_path / "stable-diffusion-webui", WEBUI, ())
    with pytest.raises(ExportError, match="AUTOMATIC1111 always normalises DoRA per input column"):
        export_lora(project, to=webui / "models" / "Lora")
    assert not any((webui / "models" / "Lora").iterdir()), "nothing copied"
    comfy = make_tree(tmp_path / "ComfyUI", COMFY, ())
    done = export_lora(project, to=comfy / "models" / "loras")
    assert done.lora == comfy / "models" / "loras" / "zkx.safetensors" and done.lora.read_bytes() == path.read_bytes()
