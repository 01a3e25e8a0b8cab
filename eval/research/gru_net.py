"""The torch module behind `eval.research.forecast_gru.GRUForecaster` (imported lazily, only to train or run it)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class GRUNet(nn.Module):
    """GRU over windows; predicts the next window as a mixture of last / running mean / prior / free head.

    Args:
        n_in: input features per window.
        hidden: GRU width.
        n_cat: number of categories C.
        prior: (C,) population mean shares.
        prior_vector: (dim,) population mean window vector, or None when windows carry no vectors.
    """

    prior: torch.Tensor  # buffers, registered in __init__
    prior_vector: torch.Tensor

    def __init__(self, n_in: int, hidden: int, n_cat: int, prior: np.ndarray, prior_vector: np.ndarray | None) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.share_gate = nn.Linear(hidden, 4)
        self.share_head = nn.Linear(hidden, n_cat)
        self.register_buffer("prior", torch.tensor(prior, dtype=torch.float32))
        self.has_vector = prior_vector is not None
        if prior_vector is not None:
            self.vector_gate = nn.Linear(hidden, 4)
            self.vector_head = nn.Linear(hidden, len(prior_vector))
            self.register_buffer("prior_vector", torch.tensor(prior_vector, dtype=torch.float32))

    def forward(self, x: torch.Tensor, last: torch.Tensor, mean: torch.Tensor, vec: torch.Tensor,
                vmean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-window prediction after every position.

        Args:
            x: (B, W, F) inputs; last, mean: (B, W, C) expert shares; vec, vmean: (B, W, dim) vectors.

        Returns:
            ((B, W, C) shares, (B, W, dim) vectors or None).
        """
        h, _ = self.gru(torch.tanh(self.inp(x)))
        g = torch.softmax(self.share_gate(h), -1)
        # A weighted sum term by term: stacking four (B, W, dim) experts first costs 4× the memory traffic.
        shares = (g[..., :1] * last + g[..., 1:2] * mean + g[..., 2:3] * self.prior
                  + g[..., 3:] * torch.softmax(self.share_head(h), -1))
        if not self.has_vector:
            return shares, None
        gv = torch.softmax(self.vector_gate(h), -1)
        vectors = (gv[..., :1] * vec + gv[..., 1:2] * vmean + gv[..., 2:3] * self.prior_vector
                   + gv[..., 3:] * self.vector_head(h))
        return shares, vectors

    @torch.no_grad()
    def predict(self, x: torch.Tensor, last: torch.Tensor, mean: torch.Tensor, vec: torch.Tensor,
                vmean: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prediction after each sequence's last real window: ((B, C), (B, dim) or None)."""
        shares, vectors = self(x, last, mean, vec, vmean)
        at = torch.arange(len(lengths))
        return shares[at, lengths - 1], None if vectors is None else vectors[at, lengths - 1]


def sequence_loss(model: GRUNet, x: torch.Tensor, last: torch.Tensor, mean: torch.Tensor, vec: torch.Tensor,
                  vmean: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over real (position → next window) pairs of soft cross-entropy (+ 1 - cosine for vectors)."""
    shares, vectors = model(x, last, mean, vec, vmean)
    width = x.shape[1]
    valid = torch.arange(width - 1)[None, :] < (lengths[:, None] - 1)  # (B, W-1): position t predicts t+1
    ce = -(last[:, 1:] * torch.log(shares[:, :-1].clamp_min(1e-6))).sum(-1)
    loss = ce[valid].mean()
    if vectors is not None:
        cos = nn.functional.cosine_similarity(vectors[:, :-1], vec[:, 1:], dim=-1)
        loss = loss + (1.0 - cos)[valid].mean()
    return loss
