"""A small caption encoder trained with the denoiser: words -> a sequence of context vectors for cross-attention."""

from __future__ import annotations

import re

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config

PAD, UNKNOWN = 0, 1


class CaptionEncoder(ModelMixin, ConfigMixin):
    """Word-level tokenizer (its vocabulary lives in the config) and a 2-layer transformer encoder.

    ``forward(captions: list[str]) -> (B, max_words, dim)``. The empty caption is all padding: its encoding is
    the learned unconditional context used by classifier-free guidance.
    """

    @register_to_config
    def __init__(self, vocabulary: list[str] = (), dim: int = 64, layers: int = 2, heads: int = 4,
                 max_words: int = 24):
        super().__init__()
        self.index = {word: i + 2 for i, word in enumerate(vocabulary)}
        self.embed = torch.nn.Embedding(len(vocabulary) + 2, dim)
        self.position = torch.nn.Parameter(torch.zeros(max_words, dim))
        layer = torch.nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(dim)

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        """``(B, max_words)`` int64 word ids; unknown words map to UNKNOWN, the rest is PAD."""
        ids = torch.full((len(captions), self.config.max_words), PAD, dtype=torch.long)
        for row, caption in enumerate(captions):
            words = re.findall(r"[a-z]+", caption.lower())[: self.config.max_words]
            ids[row, : len(words)] = torch.tensor([self.index.get(w, UNKNOWN) for w in words], dtype=torch.long)
        return ids

    def forward(self, captions: list[str]) -> torch.Tensor:
        ids = self.tokenize(captions).to(self.position.device)
        return self.norm(self.encoder(self.embed(ids) + self.position))
