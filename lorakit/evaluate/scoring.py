"""Likeness, adaptability and a copy check for any project's images, with open models (CLIP, DINOv2).

    from lorakit.evaluate.scoring import ScoringModels, load_encoders, adaptability_prompts, EmbeddingScorer
    enc = load_encoders(ScoringModels(clip="openai/clip-vit-base-patch32", image="facebook/dinov2-small",
                                      allow_download=True))     # once; afterwards from the local cache
    edits = adaptability_prompts(project)                       # "red hair" tests made from your captions
    scorer = EmbeddingScorer(enc, training_images(project), edits)
    scorer(cell, image)    # {"likeness": 0.83, "adaptability": 1.0 | None, "nearest": "014.png", ...}

Definitions (the numbers the suggestion quotes):
- **likeness** = the mean cosine similarity of an image's embedding (DINOv2, or CLIP's image tower when no image
  model is given) to its ``top_k`` most similar training images, divided by the same measure of the training
  images among themselves (each left out of its own set), clipped to 0..1: 1.0 = as close to the training images
  as they are to each other. It is only as good as the image model's sense of the subject: an encoder that sees
  colours rather than objects (a tiny CLIP's image tower in the toy world) reads every picture as alike.
- **adaptability** of an image drawn from an edited prompt (one attribute changed: colour, clothing, background,
  style, medium) = 1 when CLIP finds the image closer to the edited prompt than to the caption it was made from,
  else 0; averaged over a checkpoint × strength it is the fraction of edits the LoRA followed. Images of other
  prompts have no adaptability (None).
- **copy check**: each image's nearest training image and their cosine similarity; ``copy_threshold`` and above
  counts as a copy of that training image (copying the training set is overfitting).

Models load from a local folder, or a hub id from the local Hugging Face cache; a download happens only with
``allow_download=True`` (CLI ``--download``, notebooks ``DOWNLOAD = True``), as for every other model.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from lorakit.dataset.captioners import model_source, pick_device
from lorakit.dataset.captions import read_captions
from lorakit.dataset.checks import load_upright
from lorakit.errors import DatasetError, ModelError
from lorakit.evaluate.grid_spec import Cell
from lorakit.evaluate.judge import trigger_words
from lorakit.project import Project

TOP_K = 3
COPY_THRESHOLD = 0.95  # cosine similarity to one training image from which an image counts as its copy


@dataclass
class ScoringModels:
    """Which open models score: a CLIP-like model (image and text towers) and, optionally, an image encoder."""

    clip: str = ""  # local folder or hub id, e.g. openai/clip-vit-base-patch32 (image-text agreement)
    image: str = ""  # e.g. facebook/dinov2-small (image-image likeness); empty = CLIP's image tower
    allow_download: bool = False
    device: str = "auto"
    batch_size: int = 16


# ---- the models ------------------------------------------------------------------------------------------
def _from_pretrained(auto_class, what: str, name: str, allow_download: bool, example: str):
    try:
        source, local_only = model_source(name, allow_download)
    except (ValueError, FileNotFoundError) as e:
        raise ModelError(f"No {what} at {name!r}: give a local folder or a hub id such as {example}.") from e
    try:
        return auto_class.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError, KeyError) as e:
        hint = (" It is not in the local Hugging Face cache: download it once with --download (notebooks: "
                "DOWNLOAD = True) or give the folder it is saved in." if local_only and not Path(source).is_dir()
                else "")
        raise ModelError(f"Cannot load {what} {name!r} ({auto_class.__name__}).{hint} ({e})") from e


def _features(out) -> Any:
    """A ``get_*_features`` result as a tensor (transformers 5 returns an output whose pooler_output it is)."""
    return out if hasattr(out, "norm") else out.pooler_output


class Encoders:
    """The loaded models: ``images`` (likeness embeddings), ``clip_images`` and ``texts`` (CLIP space), normalised."""

    def __init__(self, settings: ScoringModels) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoProcessor

        self.settings, self.device = settings, pick_device(settings.device)
        example = "openai/clip-vit-base-patch32"
        self.clip = _from_pretrained(AutoModel, "CLIP model", settings.clip, settings.allow_download, example)
        if not (hasattr(self.clip, "get_text_features") and hasattr(self.clip, "get_image_features")):
            raise ModelError(f"{settings.clip!r} is a {type(self.clip).__name__}, not a CLIP-like model: scoring needs "
                             f"one with an image and a text tower (CLIPModel, SiglipModel), e.g. {example}.")
        self.processor = _from_pretrained(AutoProcessor, "CLIP processor", settings.clip, settings.allow_download,
                                          example)
        self.clip.to(self.device).eval()
        self.image_model = self.image_processor = None
        if settings.image:
            example = "facebook/dinov2-small"
            model = _from_pretrained(AutoModel, "image model", settings.image, settings.allow_download, example)
            if "pixel_values" not in inspect.signature(model.forward).parameters:
                raise ModelError(f"{settings.image!r} is a {type(model).__name__}, which takes no images: the image "
                                 f"model must be an image encoder (Dinov2Model, CLIPVisionModel, ResNetModel), e.g. {example}.")
            self.image_model = model.to(self.device).eval()
            self.image_processor = _from_pretrained(AutoImageProcessor, "image processor", settings.image,
                                                    settings.allow_download, example)

    def _batched(self, items: Sequence, fn) -> Any:
        import torch

        size = max(1, self.settings.batch_size)
        with torch.inference_mode():
            parts = [fn(list(items[i:i + size])).float() for i in range(0, len(items), size)]
        out = torch.cat(parts) if parts else torch.zeros(0, 1)
        return torch.nn.functional.normalize(out, dim=-1).cpu()

    def clip_images(self, images: Sequence[Image.Image]):
        def run(batch):
            px = self.processor(images=[im.convert("RGB") for im in batch], return_tensors="pt")["pixel_values"]
            return _features(self.clip.get_image_features(pixel_values=px.to(self.device)))
        return self._batched(images, run)

    def texts(self, texts: Sequence[str]):
        def run(batch):
            tok = self.processor(text=batch, return_tensors="pt", padding=True, truncation=True)
            return _features(self.clip.get_text_features(**{k: v.to(self.device) for k, v in tok.items()}))
        return self._batched(texts, run)

    def images(self, images: Sequence[Image.Image]):
        """Likeness embeddings: the image model's pooled output (DINOv2: its class token; a CNN: its pooled
        features), else CLIP's."""
        if self.image_model is None:
            return self.clip_images(images)

        def run(batch):
            px = self.image_processor(images=[im.convert("RGB") for im in batch], return_tensors="pt")["pixel_values"]
            out = self.image_model(pixel_values=px.to(self.device))
            pooled = getattr(out, "pooler_output", None)  # a CNN's (ResNet, ConvNeXt) is (n, c, 1, 1): flattened
            return pooled.flatten(1) if pooled is not None else out.last_hidden_state[:, 0]
        return self._batched(images, run)


def load_encoders(settings: ScoringModels) -> Encoders:
    """The scoring models of ``settings``, loaded once (keep the object for every grid)."""
    return Encoders(settings)


# ---- adaptability prompts: one attribute changed at a time -----------------------------------------------
COLOURS = ("red", "blue", "green", "yellow", "white", "purple", "black", "pink", "orange", "brown", "blonde", "grey",
           "gray", "silver")
NEW_COLOURS = ("red", "blue", "green", "yellow", "purple", "white", "black")  # the first one absent is used
CLOTHES = ("t-shirt", "shirt", "jacket", "dress", "sweater", "hoodie", "coat", "suit", "uniform", "blouse", "top",
           "raincoat")
PLACES = ("park", "street", "room", "kitchen", "beach", "forest", "office", "city", "studio", "garden", "bedroom",
          "field", "mountains")
ATTRIBUTES = ("colour", "clothing", "background", "style", "medium")


@dataclass(frozen=True)
class Edit:
    """One adaptability test: a caption with one attribute changed that the concept should not fix."""

    attribute: str
    original: str
    prompt: str

    def line(self) -> str:
        return f"{self.attribute}: {self.original} => {self.prompt}"


def _word(words: Sequence[str], text: str) -> re.Match | None:
    return re.search(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", text, re.IGNORECASE)


def _new_colour(text: str) -> str:
    return next(c for c in NEW_COLOURS if not re.search(rf"\b{c}\b", text, re.IGNORECASE))


def edit_caption(caption: str, attribute: str) -> tuple[str, bool]:
    """(the caption with ``attribute`` changed, whether a word of it was replaced rather than a phrase appended).

    'photo of zkx, black hair' -> ('photo of zkx, red hair', True) for colour.
    """
    text = caption.strip()
    if attribute == "colour":
        m = re.search(r"\b(" + "|".join(COLOURS) + r")\b(?! background)", text, re.IGNORECASE)
        if m:
            return text[:m.start()] + _new_colour(text) + text[m.end():], True
        return f"{text}, in bright {_new_colour(text)}", False
    if attribute == "clothing":
        m = _word(CLOTHES, text)
        if m:
            new = "suit" if m.group(1).lower() == "raincoat" else "raincoat"
            return text[:m.start()] + new + text[m.end():], True
        return f"{text}, wearing a yellow raincoat", False
    if attribute == "background":
        m = re.search(r"\b(" + "|".join(COLOURS) + r") background\b", text, re.IGNORECASE)
        if m:
            return text[:m.start()] + f"{_new_colour(text)} background" + text[m.end():], True
        m = _word(PLACES, text)
        if m:
            return text[:m.start()] + ("beach" if m.group(1).lower() != "beach" else "forest") + text[m.end():], True
        return f"{text}, in front of snowy mountains", False
    if attribute == "style":
        return (f"{text}, photorealistic", False) if "anime" in text.lower() else (f"{text}, anime style", False)
    if attribute == "medium":
        m = _word(("photo", "photograph", "picture"), text)
        if m:
            return text[:m.start()] + "pencil sketch" + text[m.end():], True
        return f"{text}, as a pencil sketch", False
    raise ValueError(f"unknown attribute {attribute!r}; attributes are: {', '.join(ATTRIBUTES)}")


def adaptability_prompts(source: Project | Sequence[str], triggers: Sequence[str] = (),
                         attributes: Sequence[str] = ATTRIBUTES) -> list[Edit]:
    """One edited prompt per attribute, made from the user's own captions (those with a trigger word first).

    Each attribute takes the first caption in which it has a word to change ('black hair' -> 'red hair'), else
    the first caption with a phrase added ('…, wearing a yellow raincoat'). A project gives its captions and
    trigger words; captions without any trigger word get the first one put in front.
    """
    if isinstance(source, Project):
        triggers = list(triggers) or trigger_words(source)
        captions = [c.text for c in read_captions(source.dataset_dir, reg=False) if c.text]
        captions = captions or list(triggers)
    else:
        captions = [c for c in source if c.strip()]
    with_trigger = [c for c in captions if any(re.search(rf"\b{re.escape(t)}\b", c, re.I) for t in triggers)]
    if triggers and not with_trigger:
        with_trigger = [f"{triggers[0]}, {c}" if c not in triggers else c for c in captions]
    captions = list(dict.fromkeys(with_trigger or captions))
    if not captions:
        return []
    edits = []
    for attribute in attributes:
        made = [(c, *edit_caption(c, attribute)) for c in captions]
        original, prompt, _ = next((m for m in made if m[2]), made[0])
        edits.append(Edit(attribute, original, prompt))
    return edits


def edits_text(edits: Sequence[Edit]) -> str:
    """The edits one a line, as notebook 04 lists them for editing: 'colour: <caption> => <edited>'."""
    return "\n".join(e.line() for e in edits)


def parse_edits(text: str) -> list[Edit]:
    """Lines 'attribute: original => edited' (the attribute is optional) back into edits; blank lines skipped."""
    edits = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, sep, prompt = line.partition("=>")
        if not sep or not prompt.strip():
            raise ValueError(f"adaptability prompt line {n} ({line.strip()!r}) needs the form "
                             "'attribute: caption => edited caption'.")
        attribute, colon, original = head.partition(":")
        if not colon or " " in attribute.strip():
            attribute, original = "edit", head
        edits.append(Edit(attribute.strip(), original.strip(), prompt.strip()))
    return edits


# ---- the scorer ------------------------------------------------------------------------------------------
@dataclass
class Copy:
    """A generated image's nearest training image and their similarity; ``copy`` when over the threshold."""

    nearest: Path
    similarity: float
    copy: bool


def load_training(paths: Sequence[Path]) -> list[Image.Image]:
    """The training images, upright RGB; one that fails to load is named, with what to do."""
    images = []
    for path in paths:
        try:
            images.append(load_upright(Path(path)))
        except (OSError, ValueError) as e:
            raise DatasetError(f"Cannot read training image {path} ({e}): fix or remove it (notebook 01 checks the "
                               "dataset), then score again.") from e
    return images


class EmbeddingScorer:
    """A ``Scorer`` for any prompt: likeness for every image, adaptability for the images of ``edits``' prompts."""

    def __init__(self, encoders: Encoders, training: Sequence[Path], edits: Sequence[Edit] = (), top_k: int = TOP_K,
                 copy_threshold: float = COPY_THRESHOLD) -> None:
        if not training:
            raise DatasetError("No training images to compare with: scoring needs the project's dataset "
                               "(dataset/<repeats>_<token>/ with images).")
        self.encoders, self.top_k, self.copy_threshold = encoders, top_k, copy_threshold
        self.training = [Path(p) for p in training]
        self.reference = encoders.images(load_training(self.training))  # (n, d), normalised
        self.edits = {e.prompt: e for e in edits}
        self.texts: dict[str, Any] = {}
        self.seen: dict[tuple, dict[str, Any]] = {}
        self.self_similarity = self._self_similarity()

    def _top_k(self, sims) -> Any:
        k = max(1, min(self.top_k, sims.shape[-1]))
        return sims.topk(k, dim=-1).values.mean(dim=-1)

    def _self_similarity(self) -> float:
        """Mean top-k similarity of each training image to the others (itself left out); 1.0 with one image."""
        import torch

        if len(self.training) < 2:
            return 1.0
        sims = self.reference @ self.reference.T
        sims.fill_diagonal_(-torch.inf)
        return float(self._top_k(sims).mean().clamp(min=1e-6))

    def can_score(self, prompt: str) -> bool:
        """Every prompt: likeness needs no particular prompt."""
        return True

    def _text(self, prompt: str):
        if prompt not in self.texts:
            self.texts[prompt] = self.encoders.texts([prompt])[0]
        return self.texts[prompt]

    def score_images(self, cells: Sequence[Cell], images: Sequence[Image.Image]) -> list[dict[str, Any]]:
        """Scores of many images at once (batched through the models); see the module docstring."""
        todo = [(c, im) for c, im in zip(cells, images, strict=True) if c.image_key() not in self.seen]
        if todo:
            emb = self.encoders.images([im for _, im in todo])
            sims = emb @ self.reference.T
            likeness = (self._top_k(sims) / self.self_similarity).clamp(0.0, 1.0)
            best, nearest = sims.max(dim=-1)
            edited = [(i, c) for i, (c, _) in enumerate(todo) if c.prompt in self.edits]
            agree = {}
            if edited:
                clip = self.encoders.clip_images([todo[i][1] for i, _ in edited])
                for (i, c), e in zip(edited, clip, strict=True):
                    edit = self.edits[c.prompt]
                    agree[i] = float(e @ self._text(edit.prompt) > e @ self._text(edit.original))
            for i, (c, _) in enumerate(todo):
                s = float(best[i])
                self.seen[c.image_key()] = {
                    "likeness": round(float(likeness[i]), 4), "adaptability": agree.get(i),
                    "similarity": round(float(self._top_k(sims[i:i + 1])[0]), 4),
                    "nearest": self.training[int(nearest[i])].name, "nearest_similarity": round(s, 4),
                    "copy": s >= self.copy_threshold,
                    "attribute": self.edits[c.prompt].attribute if c.prompt in self.edits else None}
        return [self.seen[c.image_key()] for c in cells]

    def __call__(self, cell: Cell, image: Image.Image) -> dict[str, Any]:
        return self.score_images([cell], [image])[0]

    def copy_check(self, image: Image.Image) -> Copy:
        """The nearest training image to ``image`` and their similarity (1.0 = the same picture)."""
        sims = self.encoders.images([image])[0] @ self.reference.T
        s, i = sims.max(dim=0)
        return Copy(self.training[int(i)], round(float(s), 4), float(s) >= self.copy_threshold)

    def annotate(self, cell: Cell, image: Image.Image) -> str:
        """A note under a grid cell: likeness, adaptability (edited prompts) and a copy warning."""
        s = self(cell, image)
        note = f"L {s['likeness']:.2f}"
        if s["adaptability"] is not None:
            note += f" A {'yes' if s['adaptability'] else 'no'}"
        return note + (f" copy {Path(s['nearest']).stem}" if s["copy"] else "")


# ---- tiny random models (tests, benchmarks): real classes, toy sizes, built offline --------------------
def build_tiny_clip(folder: str | Path, words: Sequence[str] = (), seed: int = 0, image_size: int = 32,
                    hidden: int = 32, layers: int = 1, patch: int = 8) -> Path:
    """Save a random CLIPModel + CLIPProcessor (a word-level CLIP tokenizer: letters plus ``words``) to ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor  # no torchvision needed
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for w in [*dict.fromkeys(w.lower() for w in words), *"abcdefghijklmnopqrstuvwxyz0123456789,.-!"]:
        vocab.setdefault(w, len(vocab))
        vocab.setdefault(f"{w}</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    small = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
             "num_attention_heads": 2}
    config = CLIPConfig(text_config={**small, "vocab_size": len(vocab), "max_position_embeddings": 77,
                                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
                        vision_config={**small, "image_size": image_size, "patch_size": patch}, projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    processor = CLIPProcessor(image_processor=ImageProcessor(size={"shortest_edge": image_size},
                                                             crop_size={"height": image_size, "width": image_size}),
                              tokenizer=tokenizer)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_dinov2(folder: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """Save a random Dinov2Model + its image processor (BitImageProcessor, as DINOv2 ships) to ``folder``."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    try:
        from transformers import BitImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import BitImageProcessor as ImageProcessor
    torch.manual_seed(seed)
    model = Dinov2Model(Dinov2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=image_size, patch_size=8))
    folder = Path(folder)
    model.save_pretrained(folder)
    ImageProcessor(size={"shortest_edge": image_size},
                   crop_size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder
