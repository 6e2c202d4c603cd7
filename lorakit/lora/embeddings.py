"""Textual-inversion embeddings bundled inside a LoRA file (kohya's ``bundle_emb.*`` keys, which AUTOMATIC1111
loads with the LoRA), and the embedding files A1111 and ComfyUI read from their embeddings folder.

    loras, embeddings = split_bundle(state_dict)   # {"lora_unet_…": …}, {"blicket": {"emb_params": (N, 768)}}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

BUNDLE = "bundle_emb"


def is_bundle_key(key: str) -> bool:
    return key.startswith(BUNDLE + ".")


def bundled_embeddings(state_dict: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """{name: {"clip_l"/"clip_g" or "emb_params": vectors}} of the embeddings bundled in a LoRA file."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        if not key.startswith(BUNDLE + "."):
            continue
        name, _, part = key[len(BUNDLE) + 1:].partition(".")
        out.setdefault(name, {})["emb_params" if part.startswith("string_to_param") else part] = tensor
    return out


def split_bundle(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """(the LoRA's own tensors, the embeddings bundled with it)."""
    return ({k: v for k, v in state_dict.items() if not is_bundle_key(k)}, bundled_embeddings(state_dict))


def token_names(trigger: str, vectors: int) -> list[str]:
    """diffusers' multi-vector naming: the word, then word_1, word_2, …"""
    return [trigger] + [f"{trigger}_{i}" for i in range(1, vectors)]


class NewTokens(nn.Module):
    """A text encoder's token embedding with trainable vectors for added token ids; the table stays frozen."""

    def __init__(self, table: nn.Embedding, token_ids: list[int], vectors: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.vectors = nn.Parameter(vectors.detach().float().clone())
        lut = torch.full((max(token_ids) + 1,), -1, dtype=torch.long)
        lut[torch.tensor(token_ids)] = torch.arange(len(token_ids))
        self.register_buffer("lut", lut, persistent=False)

    @property
    def weight(self) -> torch.Tensor:  # what code reading ``token_embedding.weight`` (its dtype, device) expects
        return self.table.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        row = self.lut.to(ids.device)[ids.clamp(max=len(self.lut) - 1)]
        row = torch.where(ids < len(self.lut), row, -1)
        new = row >= 0
        out = self.table(torch.where(new, 0, ids))
        if not bool(new.any()):
            return out
        extra = self.vectors.to(out.dtype)[row.clamp(min=0)]
        return torch.where(new.unsqueeze(-1), extra, out)


@dataclass
class AddedWords:
    """Words added to a base model as new tokens: a copy of each tokenizer that knows them (the pipeline's own
    are kept and given back by ``remove``) and their vectors in each text encoder's embedding table."""

    base: object  # a lorakit BaseModel
    names: dict[str, list[str]] = field(default_factory=dict)  # word -> its token names
    modules: list[NewTokens] = field(default_factory=list)  # one per text encoder
    _saved: dict = field(default_factory=dict)

    @classmethod
    def attach(cls, base, vectors: dict[str, list[torch.Tensor]], trainable: bool = False) -> AddedWords:
        """``vectors``: word -> one (N, dim) tensor per text encoder. Any words attached before are removed."""
        from transformers import AddedToken

        old = base.extra.get("added_words")
        if old is not None:
            old.remove()
        pipe = base.pipe
        keys = ["tokenizer", "tokenizer_2"][: len(base.text_encoders)]
        words = cls(base, {w: token_names(w, len(v[0])) for w, v in vectors.items()})
        words._saved = {"tokenizers": {k: getattr(pipe, k) for k in keys},
                        "tables": [te.get_input_embeddings() for te in base.text_encoders]}
        base.extra["added_words"] = words  # detach_all gives the model back even after an error
        for i, (key, te) in enumerate(zip(keys, base.text_encoders, strict=True)):
            tok = copy.deepcopy(getattr(pipe, key))
            all_names = [n for w in vectors for n in words.names[w]]
            tok.add_tokens([AddedToken(n, single_word=True) for n in all_names])
            table = te.get_input_embeddings()
            rows = torch.cat([vectors[w][i].reshape(len(words.names[w]), -1) for w in vectors])
            if rows.shape[1] != table.embedding_dim:
                words.remove()
                raise ValueError(f"the vectors of {', '.join(vectors)} have {rows.shape[1]} values and text encoder "
                                 f"{i + 1} reads {table.embedding_dim}: they were made for another model.")
            module = NewTokens(table, tok.convert_tokens_to_ids(all_names), rows).to(table.weight.device)
            module.vectors.requires_grad_(trainable)
            te.set_input_embeddings(module)
            setattr(pipe, key, tok)
            words.modules.append(module)
        return words

    def remove(self) -> None:
        """Give the pipeline its own tokenizers and embedding tables back."""
        for key, tok in self._saved.get("tokenizers", {}).items():
            setattr(self.base.pipe, key, tok)
        for te, table in zip(self.base.text_encoders, self._saved.get("tables", []), strict=False):
            te.set_input_embeddings(table)
        self._saved, self.modules = {}, []
        if self.base.extra.get("added_words") is self:
            del self.base.extra["added_words"]


def embedding_vectors(emb: dict[str, torch.Tensor], encoders: int) -> list[torch.Tensor]:
    """One embedding's vectors per text encoder: emb_params (or a lone tensor) for one, clip_l + clip_g for two."""
    if encoders == 2:
        if "clip_l" not in emb or "clip_g" not in emb:
            raise ValueError("an SDXL embedding needs clip_l and clip_g vectors; this one has " + ", ".join(emb))
        return [emb["clip_l"], emb["clip_g"]]
    vec = emb.get("emb_params", next(iter(emb.values())) if len(emb) == 1 else None)
    if vec is None:
        raise ValueError("an SD1/SD2 embedding needs emb_params; this one has " + ", ".join(emb))
    return [vec]
