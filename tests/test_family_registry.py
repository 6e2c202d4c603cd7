"""A new model family is one small class plus one register() call: detected, loaded, trained, exported in its own
key naming; unregistering restores the registry. And no stage outside models/ branches on a family's name."""

from __future__ import annotations

import ast
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import write_images
from lorakit.config.schema import TrainConfig
from lorakit.errors import ModelError
from lorakit.lora.file import read_lora_metadata
from lorakit.lora.patching import layer_index
from lorakit.models import families
from lorakit.models.families.base import Family, original_unet_key
from lorakit.models.loading import FAMILIES, load_base
from lorakit.project import Project
from lorakit.train.loop import train


# ---- the whole of a new family: what a file lorakit/models/families/toy.py would hold --------------------------
@dataclass(frozen=True)
class Toy(Family):
    def matches_pipeline(self, pipe) -> bool:  # SD1's parts, told apart by the UNet's native size
        return getattr(pipe, "text_encoder_2", None) is None and pipe.unet.config.sample_size == 24

    def unet_key(self, unet, module_name: str) -> str:  # its own naming: original block paths, as SDXL's
        return original_unet_key(unet, module_name)


TOY = Toy("toy", "toy_v1", "toy-v1/lora", 192, layout="sd1", modelspec_implementation="lorakit-tests")
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def toy_model(tmp_path, tiny_sd1) -> Path:
    """The tiny SD1 model with another native size in its UNet config: what the toy family recognises."""
    folder = Path(shutil.copytree(tiny_sd1, tmp_path / "toy-model"))
    cfg_path = folder / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["sample_size"] = 24
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    return folder


@pytest.fixture()
def toy_registered():
    families.register(TOY)
    yield TOY
    families.unregister("toy")


def _project(tmp_path, model: Path) -> tuple[Project, TrainConfig]:
    project = Project.create(tmp_path / "proj")
    write_images(project.dataset_dir / "1_zkx", 2)
    cfg = TrainConfig()
    cfg.model.base_model = str(model)
    cfg.data.resolution, cfg.data.cache_latents_to_disk = 64, False
    cfg.data.min_bucket_reso, cfg.data.max_bucket_reso, cfg.data.bucket_reso_steps = 32, 128, 32
    cfg.network.rank, cfg.network.alpha = 4, 2.0
    cfg.training.max_train_epochs, cfg.training.max_train_steps = 10, 2
    cfg.optimizer.unet_lr, cfg.optimizer.text_encoder_lr = 1e-2, 1e-3
    cfg.saving.output_name, cfg.saving.save_precision, cfg.saving.save_every_n_epochs = "toy", "float", 0
    cfg.sampling.sample_every_n_epochs = 0
    return project, cfg.validate()


def test_a_registered_family_is_detected_trains_and_exports_its_own_keys(toy_registered, toy_model, tmp_path):
    base = load_base(str(toy_model))
    assert base.family is TOY and "toy" in base.describe()
    assert FAMILIES["toy"] is TOY, "loading.FAMILIES is the registry's own dict"

    result = train(*_project(tmp_path, toy_model))
    assert result.steps == 2
    meta = read_lora_metadata(result.final)
    assert (meta["ss_base_model_version"], meta["modelspec.architecture"], meta["modelspec.implementation"]) == (
        "toy_v1", "toy-v1/lora", "lorakit-tests")
    groups = {k.rsplit(".", 1)[0] for k in load_file(result.final) if k.endswith(".alpha")}
    unet = {g for g in groups if g.startswith("lora_unet_")}
    assert unet and all(g.startswith(("lora_unet_input_blocks_", "lora_unet_middle_block_", "lora_unet_output_blocks_"))
                        for g in unet), "the family's naming, not SD1's diffusers paths"
    assert any(g.startswith("lora_te_") for g in groups)
    assert groups <= set(layer_index(base)), "the patcher (generation) finds every key under the same naming"


def test_unregistering_restores_the_registry(toy_model):
    before = list(FAMILIES.items())
    pipe = load_base(str(toy_model)).pipe
    assert families.detect_from_pipeline(pipe).name == "sd1"
    families.register(TOY)
    try:
        assert families.detect_from_pipeline(pipe) is TOY, "the newest registration is asked first"
        assert families.get("toy") is TOY
    finally:
        families.unregister("toy")
    assert list(FAMILIES.items()) == before
    assert families.detect_from_pipeline(pipe).name == "sd1"
    with pytest.raises(ModelError, match="unknown model family 'toy'.*sd1"):
        families.get("toy")


def test_a_family_sharing_weights_leaves_single_file_detection_alone(toy_registered):
    """Toy declares SD1's weight layout, so an SD1 single file is still read as SD1 (the primary family)."""
    from lorakit.models.single_file import detect_checkpoint_family, resolve_family

    keys = {"model.diffusion_model.x", "cond_stage_model.transformer.text_model.y"}
    assert detect_checkpoint_family(keys) == "sd1"
    assert resolve_family(Path("m.safetensors"), "sd1", "auto") == "sd1"
    assert resolve_family(Path("m.safetensors"), "sd1", "toy") == "toy"


def test_prediction_picks_the_sibling_family():
    assert families.with_prediction(families.get("sd2-v"), "epsilon").name == "sd2"
    assert families.with_prediction(families.get("sd2-v"), "v_prediction").name == "sd2-v"
    assert families.with_prediction(families.get("sd1"), "v_prediction").name == "sd1"


# ---- no family-name branches where the DESIGN forbids them ----------------------------------------------------
PACKAGE = Path(__file__).resolve().parents[1] / "lorakit"
NAMES = {"sd1", "sd2", "sd2-v", "sdxl"}
NO_BRANCHES = ["train", "lora", "evaluate", "demo", "models/loading.py", "models/families"]


def _name_literals(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_name_literals(e) for e in node.elts)
    return False


def family_name_branches(path: Path) -> list[str]:
    """Comparisons (==, !=, in) and startswith/endswith against a family name literal, and `is_sdxl`-style flags."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        hit = (isinstance(node, ast.Compare) and any(_name_literals(n) for n in [node.left, *node.comparators])) or (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith") and any(_name_literals(a) for a in node.args)) or (
            isinstance(node, ast.Attribute) and node.attr in ("is_sdxl", "is_sd2", "is_sd1"))
        if hit:
            found.append(f"{path.name if PACKAGE not in path.parents else path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_the_checker_sees_a_branch(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('if fam.name == "sdxl" or family.startswith("sd2") or "sd1" in (a, b) or base.family.is_sdxl:\n'
                   "    pass\n")
    assert len(family_name_branches(bad)) == 4


def test_no_stage_branches_on_a_family_name():
    files = [p for where in NO_BRANCHES for p in ([PACKAGE / where] if where.endswith(".py")
                                                  else sorted((PACKAGE / where).rglob("*.py")))]
    assert len(files) > 20
    branches = [b for p in files for b in family_name_branches(p)]
    assert branches == [], "ask the Family (lorakit/models/families) instead of comparing its name:\n" + "\n".join(
        branches)
