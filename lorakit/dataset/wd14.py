"""SmilingWolf's WD14 taggers as kohya runs them: ``model.onnx`` + ``selected_tags.csv``, through onnxruntime.

    from lorakit.dataset.captioners import caption_folder, load_captioner
    from lorakit.dataset.wd14 import Wd14Settings
    tagger = load_captioner(Wd14Settings(model="~/models/wd-vit-tagger-v3", undesired_tags=["1girl"]))
    changes = caption_folder(tagger, "my-project/dataset")      # proposals for images without a caption

``model`` is a folder holding both files (or the path of its ``model.onnx``), or a hub id such as
``SmilingWolf/wd-vit-tagger-v3`` (from the local Hugging Face cache; fetched only with ``allow_download=True``).
Needs ``pip install "lorakit[wd14]"``. ``build_tiny_wd14`` writes a toy model of the same format (needs ``onnx``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lorakit.dataset.captioners import Captioner, model_source
from lorakit.errors import ConfigError, ModelError

MODEL_FILE, TAGS_FILE = "model.onnx", "selected_tags.csv"
RATING, GENERAL, CHARACTER = 9, 0, 4  # selected_tags.csv categories (other categories count as general)


@dataclass
class Wd14Settings:
    """A WD14 tagger in ONNX form (SmilingWolf/wd-*-tagger-v3, wd-v1-4-*): kohya's tag_images_by_wd14_tagger options."""

    model: str = ""  # folder with model.onnx + selected_tags.csv, the .onnx file, or a hub id (allow_download)
    general_threshold: float = 0.35  # a general tag is kept when its probability is at least this
    character_threshold: float = 0.85  # the same for character tags (names of characters), stricter
    undesired_tags: list[str] = field(default_factory=list)  # dropped ("red hair" or "red_hair")
    always_first_tags: list[str] = field(default_factory=list)  # put first, in this order, when found
    underscores_to_spaces: bool = True  # "red_hair" -> "red hair" (kohya's --remove_underscore)
    rating_tags: bool = False  # add the most probable rating (general/sensitive/questionable/explicit) first
    tag_separator: str = ", "
    prefix: str = ""
    batch_size: int = 8
    device: str = "auto"  # auto (CUDA when onnxruntime has it), cpu, cuda, cuda:1
    allow_download: bool = False
    kind: str = field(default="wd14", init=False)

    def __post_init__(self):
        for name in ("general_threshold", "character_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} = {getattr(self, name)}: it is a probability, between 0 and 1.")
        if "," not in self.tag_separator:
            raise ConfigError(f"tag_separator {self.tag_separator!r} has no comma: lorakit's tag tools and "
                              "keep_tokens split captions on commas; use ', ' or ','.")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device {self.device!r}: onnxruntime runs on 'cpu' or 'cuda' (or 'auto').")

    def load(self) -> Wd14Tagger:
        return Wd14Tagger(self)


@dataclass
class TagRow:
    name: str
    category: int


def _key(tag: str) -> str:
    """How tags are compared: case and spaces-or-underscores do not matter."""
    return tag.strip().lower().replace(" ", "_")


def read_selected_tags(path: Path) -> list[TagRow]:
    """The rows of a selected_tags.csv (tag_id,name,category,count), in the order of the model's outputs."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"name", "category"} - set(reader.fieldnames or [])
        if missing:
            raise ModelError(f"{path}: no {' / '.join(sorted(missing))} column; a WD14 selected_tags.csv starts "
                             f"with tag_id,name,category,count (found {reader.fieldnames}).")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(TagRow(row["name"], int(row["category"])))
            except (TypeError, ValueError):
                raise ModelError(f"{path}, line {line}: category {row['category']!r} is not a number.") from None
    return rows


def model_files(model: str, allow_download: bool) -> tuple[Path, Path]:
    """(model.onnx, selected_tags.csv) of ``model``: a folder, its .onnx file, or a hub id (HF cache / download)."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".onnx":
        onnx_path, csv_path = path, path.parent / TAGS_FILE
    else:
        source, local_only = model_source(model, allow_download)
        if Path(source).is_dir():
            onnx_path, csv_path = Path(source) / MODEL_FILE, Path(source) / TAGS_FILE
        else:
            onnx_path, csv_path = (_hub_file(source, f, local_only) for f in (MODEL_FILE, TAGS_FILE))
    for p in (onnx_path, csv_path):
        if not p.is_file():
            raise ModelError(f"No {p.name} in {p.parent}: a WD14 tagger folder holds model.onnx and "
                             "selected_tags.csv (download both from e.g. SmilingWolf/wd-vit-tagger-v3).")
    return onnx_path, csv_path


def _hub_file(repo: str, filename: str, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=local_only))
    except Exception as e:  # not cached, no network, no such repo: say what to do
        hint = ("it is not in the local Hugging Face cache: download it with allow_download=True (CLI: --download) "
                "or give the folder it is saved in" if local_only else "the download failed")
        raise ModelError(f"Cannot get {filename} of WD14 tagger {repo!r}: {hint}. ({type(e).__name__}: {e})") from e


def _providers(ort, device: str) -> list:
    """onnxruntime execution providers for ``device`` (CPU as the fallback)."""
    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise ModelError(f"device {device!r}, but this onnxruntime has no CUDA provider (it has {available}): "
                         "pip install onnxruntime-gpu, or use device 'cpu'.")
    index = int(device.partition(":")[2] or 0)
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """What a WD14 model expects: padded to a square on white, resized to ``size``, BGR, float32 0-255, HWC."""
    image = image.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(square, dtype=np.float32)[:, :, ::-1]


class Wd14Tagger(Captioner):
    def __init__(self, settings: Wd14Settings):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelError('The WD14 tagger runs through onnxruntime, which is not installed: '
                             'pip install "lorakit[wd14]" (or onnxruntime-gpu for CUDA).') from e
        self.settings = settings
        onnx_path, csv_path = model_files(settings.model, settings.allow_download)
        self.rows = read_selected_tags(csv_path)
        try:
            self.session = ort.InferenceSession(str(onnx_path), providers=_providers(ort, settings.device))
        except Exception as e:  # a truncated download, an HTML page saved as .onnx, ...
            raise ModelError(f"onnxruntime cannot load {onnx_path}: {e}") from e
        first = self.session.get_inputs()[0]
        shape = first.shape
        if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
            raise ModelError(f"{onnx_path} takes input {shape}; a WD14 tagger takes (batch, size, size, 3) images.")
        self.input_name, self.size = first.name, shape[1]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 0
        outputs = self.session.get_outputs()[0].shape[-1]
        if not isinstance(outputs, int):  # a dynamic output size: ask the model once
            outputs = self._run(np.full((1, self.size, self.size, 3), 255, np.float32)).shape[-1]
        if outputs != len(self.rows):
            raise ModelError(f"{csv_path.name} lists {len(self.rows)} tags but {onnx_path.name} scores {outputs}: "
                             "they come from different models (download both files of the same repository).")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """The model's outputs for ``batch``, in chunks of its fixed batch size (zero-padded) when it has one."""
        step = self.fixed_batch or len(batch)
        out = []
        for i in range(0, len(batch), step):
            chunk = batch[i : i + step]
            padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)])
            out.append(self.session.run(None, {self.input_name: padded})[0][: len(chunk)])
        return np.concatenate(out)

    def scores(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Each tag's probability for each image, shape (images, tags), in selected_tags.csv's order."""
        return self._run(np.stack([preprocess(im, self.size) for im in images])).astype(np.float32)

    def caption_batch(self, images: Sequence[Image.Image]) -> list[str]:
        return [self.settings.tag_separator.join(self.tags(row)) for row in self.scores(images)]

    def tags(self, probs) -> list[str]:
        """[rating,] general tags then character tags above their thresholds, most probable first; the
        always-first ones moved to the front, the undesired ones dropped."""
        s, rows = self.settings, self.rows
        undesired = {_key(t) for t in s.undesired_tags}
        ranked = sorted(range(len(rows)), key=lambda i: -float(probs[i]))
        general = [i for i in ranked if rows[i].category not in (RATING, CHARACTER) and probs[i] >= s.general_threshold]
        character = [i for i in ranked if rows[i].category == CHARACTER and probs[i] >= s.character_threshold]
        ratings = [i for i in ranked if rows[i].category == RATING][:1] if s.rating_tags else []
        names = [rows[i].name for i in ratings + general + character if _key(rows[i].name) not in undesired]
        found = {_key(n): n for n in names}
        first = [found[k] for k in dict.fromkeys(map(_key, s.always_first_tags)) if k in found]
        names = first + [n for n in names if n not in first]
        return [n.replace("_", " ") if s.underscores_to_spaces and len(n) > 3 else n for n in names]


# ---- a tiny model of the same format (tests, the demo notebook), written offline ---------------------------
# (name, category, (r, g, b), bias): probability = sigmoid(r*R + g*G + b*B + bias), R, G, B = the image's mean
# colour in 0..1 (after the white padding)
TINY_TAGS = (
    ("general", RATING, (0.0, 0.0, 0.0), 2.0),
    ("sensitive", RATING, (0.0, 0.0, 0.0), 0.0),
    ("questionable", RATING, (0.0, 0.0, 0.0), -1.0),
    ("explicit", RATING, (0.0, 0.0, 0.0), -2.0),
    ("red_theme", GENERAL, (8.0, -4.0, -4.0), -2.0),
    ("green_theme", GENERAL, (-4.0, 8.0, -4.0), -2.0),
    ("blue_theme", GENERAL, (-4.0, -4.0, 8.0), -2.0),
    ("white_background", GENERAL, (3.0, 3.0, 3.0), -6.0),
    ("little_red_riding_hood_(grimm)", CHARACTER, (4.0, -2.0, -2.0), -1.0),
)


def build_tiny_wd14(folder: str | Path, tags: Sequence[tuple[str, int, tuple[float, float, float], float]] = TINY_TAGS,
                    size: int = 32, batch: int = 0) -> Path:
    """Write ``model.onnx`` + ``selected_tags.csv`` to ``folder``: a WD14-format model scoring each tag from the
    image's mean colour (see TINY_TAGS), so a red image gets the red tag. ``batch`` 0 = any batch size."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        raise ModelError("The toy WD14 model is written with the onnx package: pip install onnx "
                         "(or give a real WD14 tagger folder).") from e
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # weights per input channel in the model's BGR order, scaled from 0-255 pixels to 0..1 means
    weights = np.array([[c[2], c[1], c[0]] for _, _, c, _ in tags], np.float32).T / 255.0
    bias = np.array([b for *_, b in tags], np.float32)
    batch_dim: int | str = batch or "batch"
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["mean", "weights"], ["logits0"]),
         helper.make_node("Add", ["logits0", "bias"], ["logits"]),
         helper.make_node("Sigmoid", ["logits"], ["output"])],
        "tiny_wd14",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch_dim, size, size, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch_dim, len(tags)])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="lorakit")
    model.ir_version = 7  # readable by onnxruntime releases of the last years
    onnx.checker.check_model(model)
    onnx.save(model, folder / MODEL_FILE)
    with open(folder / TAGS_FILE, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tag_id", "name", "category", "count"])
        w.writerows([i, name, category, 1000 - i] for i, (name, category, _, _) in enumerate(tags))
    return folder

