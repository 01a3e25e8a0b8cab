"""The SASRec-style network: causal self-attention blocks over item, position and time-gap embeddings."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from retrieval.errors import ConfigError
from retrieval.sequential.config import SeqConfig


def gap_buckets(gaps: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Log2 buckets of non-negative time gaps in seconds: 1 + floor(log2(1 + gap)), capped.

    Bucket 0 is reserved for "no previous event"; callers set it themselves.
    """
    b = torch.floor(torch.log2(1.0 + gaps.clamp(min=0.0))).long() + 1
    return b.clamp(max=n_buckets - 1)


class _Block(nn.Module):
    """Pre-LayerNorm causal self-attention block with an optional additive attention bias.

    No dropout on the attention weights: on CPU it costs more than the rest of the block (it draws
    B·L² random numbers) and residual/FFN dropout regularises enough.
    """

    def __init__(self, hidden: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden * ffn_mult), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden * ffn_mult, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x: (B, L, H); bias: None (plain causal) or (B, heads, L, L) additive with -inf above the diagonal."""
        b, length, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, length, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        if bias is None:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, length, h)))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRecNet(nn.Module):
    """The network. Item index 0 is padding; catalogue item r (index row r) is index r + 1.

    Sequences are right-padded: with padding only after the real events, plain causal attention
    never lets a real position see padding, so no padding mask (and the fast SDPA path) is needed.
    Positions are counted back from each sequence's newest event.

    Args:
        n_items: catalogue size.
        config: architecture settings.
        text: (n_items, text_dim) float32 text vectors, required when config.use_text.
    """

    text: torch.Tensor  # buffer, registered only when config.use_text

    def __init__(self, n_items: int, config: SeqConfig, text: np.ndarray | None = None) -> None:
        super().__init__()
        if config.hidden % config.heads:
            raise ConfigError(f"hidden={config.hidden} is not divisible by heads={config.heads}")
        self.config, self.n_items = config, n_items
        hid = config.hidden
        self.item_emb = nn.Embedding(n_items + 1, hid, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if config.use_text:
            if text is None or text.ndim != 2 or text.shape[0] != n_items:
                got = None if text is None else text.shape
                raise ConfigError(f"use_text needs a ({n_items}, dim) text matrix, got {got}")
            padded = np.vstack([np.zeros((1, text.shape[1]), np.float32), text.astype(np.float32)])
            self.register_buffer("text", torch.from_numpy(padded))
            self.text_proj = nn.Linear(text.shape[1], hid, bias=False)
        self.pos_emb = nn.Embedding(config.max_len, hid)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        if config.use_time:
            self.gap_emb = nn.Embedding(config.time_buckets, hid)
            nn.init.normal_(self.gap_emb.weight, std=0.02)
        if config.use_time and config.time_bias:
            self.rel_bias = nn.Embedding(config.time_buckets, config.heads)
            nn.init.zeros_(self.rel_bias.weight)
        self.blocks = nn.ModuleList(_Block(hid, config.heads, config.ffn_mult, config.dropout)
                                    for _ in range(config.blocks))
        self.drop = nn.Dropout(config.dropout)
        self.ln = nn.LayerNorm(hid)

    def item_vectors(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors (id embedding + projected text) for padded indices idx (any shape), or for
        every catalogue item when idx is None: shape (n_items, hidden)."""
        if idx is None:
            idx = torch.arange(1, self.n_items + 1, device=self.item_emb.weight.device)
        vec = self.item_emb(idx)
        if self.config.use_text:
            vec = vec + self.text_proj(self.text[idx])
        return vec

    def forward(self, items: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Hidden states.

        Args:
            items: (B, L) long, right-padded with 0.
            times: (B, L) float seconds (any per-row origin); ignored without use_time.

        Returns:
            (B, L, hidden); position i summarises items[:, :i + 1].
        """
        length = items.shape[1]
        valid = items > 0
        lengths = valid.sum(1, keepdim=True)
        back = (lengths - 1 - torch.arange(length, device=items.device)).clamp(0, self.config.max_len - 1)
        x = self.item_vectors(items) * math.sqrt(self.config.hidden) + self.pos_emb(back)
        bias = None
        if self.config.use_time:
            gaps = gap_buckets(times - F.pad(times[:, :-1], (1, 0)), self.config.time_buckets)
            gaps[:, 0] = 0  # bucket 0: no previous event
            x = x + self.gap_emb(gaps)
            if self.config.time_bias:
                rel = gap_buckets(times[:, :, None] - times[:, None, :], self.config.time_buckets)
                causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
                bias = self.rel_bias(rel).permute(0, 3, 1, 2).masked_fill(~causal, float("-inf"))
        x = self.drop(x) * valid[..., None]
        for block in self.blocks:
            x = block(x, bias)
        return self.ln(x)
