"""Automatic captions through transformers: a BLIP-family captioner (sentences) and a booru-style tagger (tags).

    from lorakit.dataset.captioners import BlipSettings, TaggerSettings, load_captioner, caption_folder
    blip = load_captioner(BlipSettings(model="/models/blip-image-captioning-large", prefix="photo of fr3dd!e"))
    changes = caption_folder(blip, "my-project/dataset")        # proposals for images without a caption
    tagger = load_captioner(TaggerSettings(model="p1atdev/wd-swinv2-tagger-v3-hf", allow_download=True))
    wd14 = load_captioner(Wd14Settings(model="/models/wd-vit-tagger-v3"))   # lorakit.dataset.wd14: ONNX

Models load from a local folder; a hub id is fetched only with ``allow_download=True`` (else only the local
Hugging Face cache is used). Code shipped inside a model repository runs only with ``trust_remote_code=True``.
docs/captioning.md names the models worth trying. ``build_tiny_blip`` and ``build_tiny_tagger`` make random
toy models of the same classes, offline, for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image

from lorakit.dataset.captions import CaptionChange, join_tags, propose, read_captions, split_tags, with_prefix
from lorakit.dataset.checks import load_upright
from lorakit.errors import ModelError

# tags a booru tagger emits that say nothing about the picture's content
DEFAULT_EXCLUDED = ("general", "sensitive", "questionable", "explicit")

# printed (CLI) or shown (notebook 01) whenever trust_remote_code is on
REMOTE_CODE_WARNING = "trust_remote_code is on: loading this model runs Python code from its repository on this machine."


@dataclass
class BlipSettings:
    """An image-to-text captioner (BLIP, BLIP-2, GIT, ... anything AutoModelForImageTextToText loads)."""

    model: str = ""  # local folder, or a hub id such as Salesforce/blip-image-captioning-large
    num_beams: int = 3
    min_length: int = 5
    max_length: int = 40
    prompt: str = ""  # text the caption continues from, e.g. "a photo of"
    prefix: str = ""  # written before every caption, e.g. "photo of fr3dd!e"
    batch_size: int = 4
    device: str = "auto"
    allow_download: bool = False
    trust_remote_code: bool = False  # run Python code shipped in the model repository (its config's auto_map)
    kind: str = field(default="blip", init=False)

    def load(self) -> Captioner:
        return BlipCaptioner(self)


@dataclass
class TaggerSettings:
    """A multi-label image classifier whose labels are tags (a WD tagger in transformers format)."""

    model: str = ""
    threshold: float = 0.35  # a tag is kept when its probability is at least this
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDED))
    max_tags: int = 0  # 0 = no limit; else the most probable ones
    underscores_to_spaces: bool = True  # "red_hair" -> "red hair", as Stable Diffusion prompts are written
    prefix: str = ""
    batch_size: int = 8
    device: str = "auto"
    allow_download: bool = False
    trust_remote_code: bool = False  # run Python code shipped in the model repository (e.g. an image processor)
    kind: str = field(default="tagger", init=False)

    def load(self) -> Captioner:
        return Tagger(self)


def pick_device(device: str = "auto") -> str:
    """'cuda' when a GPU is present (or asked for), else 'cpu'."""
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"


def model_source(model: str, allow_download: bool) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only); a missing local path is an error that teaches."""
    if not model:
        raise ValueError("No captioning model given: pass a local folder, or a hub id with allow_download=True "
                         "(see docs/captioning.md).")
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), True
    if path.suffix or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise FileNotFoundError(f"No model folder at {path}.")
    return model, not allow_download


def _load(auto_class, name: str, source: str, local_only: bool, **kwargs):
    """``auto_class.from_pretrained`` with an error that says what to do when the model is not at hand."""
    try:
        return auto_class.from_pretrained(source, local_files_only=local_only, **kwargs)
    except OSError as e:
        hint = (" It is not in the local Hugging Face cache: download it with allow_download=True (CLI: --download)"
                " or give the folder it is saved in." if local_only and not Path(source).is_dir() else "")
        raise FileNotFoundError(f"Cannot load captioning model {name!r} ({auto_class.__name__}).{hint} ({e})") from e
    except ValueError as e:
        if "trust_remote_code" not in str(e) or kwargs.get("trust_remote_code"):
            raise
        raise ModelError(
            f"Captioning model {name!r} needs Python code from its own repository ({auto_class.__name__} is "
            "defined there, see auto_map in its config), and trust_remote_code is off. If you trust that "
            "repository (read its .py files first), pass --trust-remote-code (notebook 01: tick 'trust remote "
            "code'; Python: trust_remote_code=True).") from e


class Captioner:
    """Turns a batch of images into a caption each; the prefix is added here, so every kind shares it."""

    settings: CaptionerSettings

    def caption_batch(self, images: Sequence[Image.Image]) -> list[str]:
        raise NotImplementedError

    def caption(self, images: Sequence[Image.Image], progress: bool = True) -> list[str]:
        """Captions of ``images``, in batches of ``settings.batch_size``, with a progress bar."""
        from tqdm.auto import tqdm

        size = max(1, self.settings.batch_size)
        out: list[str] = []
        with tqdm(total=len(images), desc="captioning", unit="img", disable=not progress) as bar:
            for i in range(0, len(images), size):
                out += self.caption_batch(images[i : i + size])
                bar.update(len(images[i : i + size]))
        if self.settings.prefix:
            units = ([c] if c else [] for c in out) if self.settings.kind == "blip" else map(split_tags, out)
            sep = getattr(self.settings, "tag_separator", ", ")
            out = [sep.join(with_prefix(u, self.settings.prefix)) for u in units]
        return out


class BlipCaptioner(Captioner):
    def __init__(self, settings: BlipSettings):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source, local_only = model_source(settings.model, settings.allow_download)
        self.settings, self.device = settings, pick_device(settings.device)
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        remote = {"trust_remote_code": settings.trust_remote_code}
        self.processor = _load(AutoProcessor, settings.model, source, local_only, **remote)
        self.model = _load(AutoModelForImageTextToText, settings.model, source, local_only, dtype=dtype, **remote)
        self.model.to(self.device).eval()

    def caption_batch(self, images: Sequence[Image.Image]) -> list[str]:
        import torch

        s = self.settings
        kwargs = {"text": [s.prompt] * len(images)} if s.prompt else {}
        inputs = self.processor(images=list(images), return_tensors="pt", **kwargs).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, num_beams=s.num_beams, min_length=s.min_length,
                                      max_length=s.max_length)
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]


class Tagger(Captioner):
    def __init__(self, settings: TaggerSettings):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        source, local_only = model_source(settings.model, settings.allow_download)
        self.settings, self.device = settings, pick_device(settings.device)
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        remote = {"trust_remote_code": settings.trust_remote_code}
        self.processor = _load(AutoImageProcessor, settings.model, source, local_only, **remote)
        self.model = _load(AutoModelForImageClassification, settings.model, source, local_only, dtype=dtype,
                           **remote)
        self.model.to(self.device).eval()
        if self.model.config.problem_type not in (None, "multi_label_classification"):
            raise ValueError(f"{settings.model} is a {self.model.config.problem_type} classifier, not a tagger "
                             "(a tagger is multi_label_classification with tags as labels).")
        self.labels = [self.model.config.id2label[i] for i in range(len(self.model.config.id2label))]

    def scores(self, images: Sequence[Image.Image]):
        """Each tag's probability for each image, shape (images, tags)."""
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(pixel_values=inputs["pixel_values"].to(self.model.dtype)).logits
        return torch.sigmoid(logits.float()).cpu()

    def caption_batch(self, images: Sequence[Image.Image]) -> list[str]:
        return [join_tags(self.tags(row)) for row in self.scores(images)]

    def tags(self, probs) -> list[str]:
        """Tags at or above the threshold, most probable first, excluded ones left out."""
        s = self.settings
        excluded = {e.strip().lower().replace(" ", "_") for e in s.exclude}
        ranked = sorted(((float(p), self.labels[i]) for i, p in enumerate(probs) if p >= s.threshold), reverse=True)
        tags = [t for _, t in ranked if t.lower().replace(" ", "_") not in excluded]
        if s.max_tags:
            tags = tags[: s.max_tags]
        return [t.replace("_", " ") if s.underscores_to_spaces and len(t) > 3 else t for t in tags]


class CaptionerSettings(Protocol):
    """Settings of one kind of captioner (BlipSettings, TaggerSettings, lorakit.dataset.wd14.Wd14Settings)."""

    kind: str
    prefix: str
    batch_size: int

    def load(self) -> Captioner: ...


def load_captioner(settings: CaptionerSettings) -> Captioner:
    """The captioner that ``settings`` describe, loaded once (keep the object to caption many folders)."""
    return settings.load()


def caption_folder(captioner: Captioner, folder: str | Path, only_missing: bool = True, limit: int = 0,
                   extension: str = ".txt", progress: bool = True, reg: bool = False) -> list[CaptionChange]:
    """Proposed captions for the images under ``folder`` (those without one, unless ``only_missing`` is False).

    Nothing is written: pass the result to ``lorakit.dataset.captions.apply_changes`` (which backs up what it replaces).
    dataset/reg/ is skipped unless ``reg`` (and then a prefix would put the trigger in class captions: leave it empty).
    """
    targets = [c for c in read_captions(folder, extension, reg=reg) if not (only_missing and (c.text or c.problem))]
    if limit:
        targets = targets[:limit]
    images = [c.image for c in targets]
    return propose(images, caption_images(captioner, images, progress), extension)


def caption_images(captioner: Captioner, paths: Sequence[Path], progress: bool = True) -> list[str]:
    """Captions for ``paths`` (images are opened a batch at a time)."""
    out: list[str] = []
    size = max(1, captioner.settings.batch_size) * 4
    for i in range(0, len(paths), size):
        out += captioner.caption([load_upright(p) for p in paths[i : i + size]], progress=progress)
    return out


# ---- tiny random models (tests, the demo notebook): real classes, toy sizes, built offline -------------
def build_tiny_blip(folder: str | Path, words: Iterable[str] = ("a", "photo", "of"), seed: int = 0) -> Path:
    """Save a random BlipForConditionalGeneration + BlipProcessor (word-level BERT tokenizer) to ``folder``."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor  # no torchvision needed
    except ImportError:
        from transformers import BlipImageProcessor as ImageProcessor
    vocab_words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(w.lower() for w in words)]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab_words)})
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = BlipConfig(
        text_config={**small, "vocab_size": len(vocab_words), "max_position_embeddings": 64,
                     "bos_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=32, image_text_hidden_size=32)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(image_processor=ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_tagger(folder: str | Path, tags: Sequence[str] = ("solo", "red_hair", "smile", "general"),
                      seed: int = 0) -> Path:
    """Save a random multi-label ViTForImageClassification (labels = ``tags``) + its processor to ``folder``."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    try:
        from transformers import ViTImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import ViTImageProcessor as ImageProcessor
    config = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                       image_size=32, patch_size=8, num_labels=len(tags), id2label=dict(enumerate(tags)),
                       label2id={t: i for i, t in enumerate(tags)}, problem_type="multi_label_classification")
    torch.manual_seed(seed)
    model = ViTForImageClassification(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    ImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
