"""`GRUForecaster`: a small recurrent model over a user's windows (torch is imported only when used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from retrieval.errors import ConfigError
from retrieval.evolution.forecast import (
    FORECASTERS,
    Forecaster,
    Prediction,
    prior_from,
    share_matrix,
    to_shares,
    unit_vector,
    vector_matrix,
)
from retrieval.evolution.timeline import Window

if TYPE_CHECKING:
    from eval.research.gru_net import GRUNet


@FORECASTERS.register("gru")
class GRUForecaster(Forecaster):
    """A small GRU over a user's windows ("evolution direction"), trained on training users' windows.

    Per window the input is its shares, the running mean of shares, log(1 + items) and (when
    present) its vector. The output is a learned mixture of last window, running mean, population
    prior and a free softmax head; the mixture lets it fall back to a baseline where data are thin.
    Trained with soft cross-entropy on next shares plus (1 - cosine) on next vectors, CPU, seconds.

    Args:
        hidden: GRU width.
        epochs: maximum training epochs (the best epoch on a 15% validation split of users is kept).
        lr: Adam learning rate.
        max_windows: only the newest windows of a sequence are used.
        patience: stop after this many epochs without a new best validation loss.
        seed: torch seed.
    """

    name = "gru"

    def __init__(self, hidden: int = 32, epochs: int = 80, lr: float = 0.01, max_windows: int = 16,
                 patience: int = 10, seed: int = 0) -> None:
        self.hidden, self.epochs, self.lr, self.max_windows, self.seed = hidden, epochs, lr, max_windows, seed
        self.patience = patience
        self.model: GRUNet | None = None
        self.prior = np.zeros(0)
        self.prior_vector: np.ndarray | None = None
        self.history: list[float] = []  # validation loss per epoch

    def _arrays(self, shares: np.ndarray, vectors: np.ndarray | None, n_items: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inputs (n, F), 'last' and 'mean' expert shares (n, C) for each prefix of one sequence."""
        running = np.cumsum(shares, axis=0) / np.arange(1, len(shares) + 1)[:, None]
        parts = [shares, running, np.log1p(n_items)[:, None] / 3.0]
        if vectors is not None and self.prior_vector is not None:
            parts.append(vectors)
        return np.hstack(parts).astype(np.float32), shares.astype(np.float32), running.astype(np.float32)

    def _tensors(self, seqs: Sequence[Sequence[Window]]):  # type: ignore[no-untyped-def]
        import torch

        rows = []
        for seq in seqs:
            seq = seq[-self.max_windows:]
            sh = share_matrix(seq, self.vocab or [])
            vec = vector_matrix(seq) if self.prior_vector is not None else None
            x, last, mean = self._arrays(sh, vec, np.array([len(w.items) for w in seq], dtype=np.float64))
            vmean = None if vec is None else np.cumsum(vec, axis=0) / np.arange(1, len(vec) + 1)[:, None]
            rows.append((x, last, mean, vec, vmean))
        n, width = len(rows), max(len(r[0]) for r in rows)

        def pad(k: int, dim: int) -> torch.Tensor:
            out = np.zeros((n, width, dim), dtype=np.float32)
            for i, r in enumerate(rows):
                if r[k] is not None:
                    out[i, :len(r[0])] = r[k]  # left-aligned: the GRU is causal, trailing padding is never read
            return torch.from_numpy(out)

        c = len(self.vocab or [])
        d = 0 if self.prior_vector is None else len(self.prior_vector)
        lengths = torch.tensor([len(r[0]) for r in rows])
        return pad(0, rows[0][0].shape[1]), pad(1, c), pad(2, c), pad(3, d), pad(4, d), lengths

    def fit(self, sequences: Sequence[Sequence[Window]]) -> GRUForecaster:
        import torch

        from eval.research.gru_net import GRUNet

        self.vocab, self.prior, self.prior_vector = prior_from(sequences)
        seqs = [s for s in sequences if len(s) >= 2]
        if len(seqs) < 4:
            raise ConfigError(f"GRU needs ≥ 4 training users with ≥ 2 windows, got {len(seqs)}")
        torch.manual_seed(self.seed)
        order = np.random.default_rng(self.seed).permutation(len(seqs))
        n_val = max(1, len(seqs) * 15 // 100)
        val = self._tensors([seqs[i] for i in order[:n_val]])
        train = self._tensors([seqs[i] for i in order[n_val:]])
        model = GRUNet(train[0].shape[2], self.hidden, len(self.vocab), self.prior, self.prior_vector)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=1e-4)
        best_state, since_best = None, 0
        self.history = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a model this small is slower with 2 threads on a shared 2-core box (measured)
        try:
            for _ in range(self.epochs):
                if not self._epoch(model, opt, train, val):
                    since_best += 1
                    if since_best >= self.patience:
                        break
                else:
                    since_best = 0
                    best_state = {k: t.clone() for k, t in model.state_dict().items()}
        finally:
            torch.set_num_threads(threads)
        model.load_state_dict(best_state)  # type: ignore[arg-type]
        self.model = model.eval()
        return self

    def _epoch(self, model, opt, train, val) -> bool:  # type: ignore[no-untyped-def]
        """One full-batch step; True when the validation loss reached a new best."""
        import torch

        from eval.research.gru_net import sequence_loss

        model.train()
        opt.zero_grad()
        loss = sequence_loss(model, *train)
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            v = float(sequence_loss(model, *val))
        self.history.append(v)
        return v <= min(self.history)

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise ConfigError("GRUForecaster forecasts from windows: call forecast(windows)")

    def forecast(self, windows: Sequence[Window], vocab: Sequence[str] | None = None) -> Prediction:
        import torch

        if self.model is None or self.vocab is None:
            raise ConfigError("GRUForecaster must be fitted before forecasting")
        if not windows:
            raise ConfigError("forecasting needs at least one window")
        with torch.no_grad():
            shares, vector = self.model.predict(*self._tensors([windows]))
        v = None if vector is None else vector[0].numpy()
        return to_shares(shares[0].numpy().astype(np.float64), self.vocab), unit_vector(v)
