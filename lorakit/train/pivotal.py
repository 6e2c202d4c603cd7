"""Pivotal tuning: the trigger word becomes new tokens whose embeddings train beside the LoRA.

    pivot = Pivot.attach(base, cfg, trigger="blicket")  # new tokens in a copy of each tokenizer, new vectors
    captions = [pivot.expand(c) for c in captions]       # "a blicket" -> "a blicket blicket_1" (2 vectors)
    tensors.update(pivot.bundle())                       # inside the LoRA file, as kohya bundles them
    pivot.save_embedding(path)                           # A1111 / ComfyUI embedding file
    pivot.remove()                                       # the base model's own tokenizers and embeddings back

``network.embedding_vectors = N`` adds the trigger word as N new tokens (``blicket``, ``blicket_1``, …, the
naming diffusers' textual-inversion loader expands a prompt with), to a copy of each tokenizer, and N vectors per
text encoder, started from the embedding of ``network.embedding_init_word`` (or of the trigger's own tokens,
so training starts from what the word meant). Only those vectors train (the rest of the embedding table is
untouched); they stop training after ``network.embedding_train_share`` of the steps, and the LoRA goes on
around them — the "pivot". During the run the pipeline uses the copied tokenizers, so the samples show the new
tokens too.

Files: every checkpoint carries the vectors as ``bundle_emb.<trigger>.string_to_param.*`` (SD1/SD2) or
``bundle_emb.<trigger>.clip_l`` / ``.clip_g`` (SDXL), the keys kohya's trainer writes and AUTOMATIC1111 loads
with the LoRA; the run's end also writes ``output/embeddings/<trigger>.safetensors`` (``emb_params``, or
``clip_l``/``clip_g``), the embedding file A1111 and ComfyUI read from their embeddings folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lorakit.config.schema import TrainConfig
from lorakit.errors import ConfigError
from lorakit.files import atomic_path
from lorakit.lora.embeddings import BUNDLE, AddedWords, token_names
from lorakit.models.loading import BaseModel


def check_trigger(trigger: str) -> str:
    word = trigger.strip().lower()
    if not word or re.search(r"\s", word):
        raise ConfigError(f"network.embedding_trigger {trigger!r}: pivotal tuning learns one word; give a single "
                          "word without spaces (e.g. the folder's token, 'fr3dd!e').")
    return word


@dataclass
class Pivot:
    """The new word of one run, attached to the base model as trainable vectors (lorakit.lora.embeddings)."""

    trigger: str
    names: list[str]
    words: AddedWords

    @classmethod
    def attach(cls, base: BaseModel, cfg: TrainConfig, trigger: str) -> Pivot:
        n = cfg.network
        trigger = check_trigger(n.embedding_trigger or trigger)
        names = token_names(trigger, n.embedding_vectors)
        starts = []
        for tok, te in zip(base.tokenizers, base.text_encoders, strict=True):
            vocab = tok.get_vocab()
            clash = [w for w in names if w in vocab or w in tok.all_special_tokens]
            if clash:
                raise ConfigError(f"network.embedding_trigger {trigger!r}: {clash[0]!r} is one of the tokenizer's "
                                  "own tokens, so a new token cannot be learned for it; pick another trigger "
                                  "word (e.g. 'zkx' or 'fr3dd!e').")
            # CLIP stores a whole word as "word</w>": the new token would stand in for that word everywhere (as
            # an A1111 embedding of that name does), so only when asked
            known = [w for w in names if f"{w}</w>" in vocab]
            if known and not n.embedding_replace_word:
                raise ConfigError(f"network.embedding_trigger {trigger!r}: {known[0]!r} is already a word of the "
                                  "base model's vocabulary, and a new token of that name would replace it in every "
                                  "prompt; rename the trigger to a word the model splits into pieces (e.g. 'ohwx', "
                                  "'fr3dd!e'), or set network.embedding_replace_word = true to replace it.")
            table = te.get_input_embeddings()
            start = _start_vector(tok, table, n.embedding_init_word or trigger)
            gen = torch.Generator().manual_seed(cfg.training.seed)
            noise = torch.randn((len(names), table.embedding_dim), generator=gen) * float(start.std()) * 0.01
            starts.append(start.expand(len(names), -1) + noise)  # all from the word, told apart by a little noise
        return cls(trigger, names, AddedWords.attach(base, {trigger: starts}, trainable=True))

    # ---- training ------------------------------------------------------------------------------------
    def parameters(self) -> list[nn.Parameter]:
        return [m.vectors for m in self.words.modules]

    def expand(self, text: str) -> str:
        """The trigger word written as all its new tokens, as diffusers' pipelines expand prompts."""
        if len(self.names) == 1:
            return text
        return re.sub(rf"(?<![\w]){re.escape(self.trigger)}(?![\w])", " ".join(self.names), text, flags=re.I)

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def training(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    # ---- files ---------------------------------------------------------------------------------------
    def vectors(self, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [p.detach().to(dtype).contiguous().cpu().clone() for p in self.parameters()]

    def embedding_tensors(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The A1111 / ComfyUI embedding file's tensors: emb_params, or clip_l and clip_g for SDXL."""
        vecs = self.vectors(dtype)
        return {"clip_l": vecs[0], "clip_g": vecs[1]} if len(vecs) == 2 else {"emb_params": vecs[0]}

    def bundle(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The vectors under the keys kohya bundles them with inside a LoRA file."""
        vecs = self.vectors(dtype)
        if len(vecs) == 2:
            return {f"{BUNDLE}.{self.trigger}.clip_l": vecs[0], f"{BUNDLE}.{self.trigger}.clip_g": vecs[1]}
        return {f"{BUNDLE}.{self.trigger}.string_to_param.*": vecs[0]}

    def save_embedding(self, path: Path, dtype: torch.dtype = torch.float32) -> Path:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(self.embedding_tensors(dtype), str(tmp), metadata={"name": self.trigger,
                                                                          "vectors": str(len(self.names))})
        return path

    def state(self) -> dict[str, torch.Tensor]:
        return {str(i): v for i, v in enumerate(self.vectors())}

    @torch.no_grad()
    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        for i, p in enumerate(self.parameters()):
            p.copy_(state[str(i)])

    def remove(self) -> None:
        self.words.remove()


def _start_vector(tok, table: nn.Embedding, word: str) -> torch.Tensor:
    """The mean embedding of ``word``'s tokens (the word as the base model reads it)."""
    ids = tok(word, add_special_tokens=False).input_ids
    if not ids:
        raise ConfigError(f"network.embedding_init_word {word!r} has no tokens; give a word, e.g. 'person'.")
    with torch.no_grad():
        return table.weight[torch.tensor(ids, device=table.weight.device)].float().mean(0).cpu()
