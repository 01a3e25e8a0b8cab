"""Next-window interest forecasters (baselines, exponential smoothing, autoregression, GRU) and a retriever.

A forecaster sees a user's windows up to now and predicts the next window's category shares and
(when windows carry vectors) its interest vector. Shares are predicted over a fixed category
vocabulary set by `fit` (or taken from the windows themselves for untrained forecasters).

`FORECASTERS` maps a name to a factory of a fresh forecaster; `make_forecaster(name)` looks one up.
Third parties register under the entry-point group "driftrec.forecasters".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from retrieval.candidates.base import Candidate, CandidateGenerator, History
from retrieval.candidates.interest import InterestRetriever
from retrieval.data.model import Catalog
from retrieval.errors import ConfigError
from retrieval.evolution.timeline import Window, build_timeline
from retrieval.registry import Registry
from retrieval.vectors.index import VectorIndex

Prediction = tuple[dict[str, float], np.ndarray | None]
FORECASTERS: Registry[Callable[[], Forecaster]] = Registry("forecaster", "driftrec.forecasters")


def _vocab(windows: Sequence[Window]) -> list[str]:
    return sorted({c for w in windows for c in w.categories})


def share_matrix(windows: Sequence[Window], vocab: Sequence[str]) -> np.ndarray:
    """(n_windows, len(vocab)) category shares; categories outside vocab are dropped and rows renormalised."""
    pos = {c: i for i, c in enumerate(vocab)}
    out = np.zeros((len(windows), len(vocab)))
    for r, w in enumerate(windows):
        for c, v in w.categories.items():
            if c in pos:
                out[r, pos[c]] = v
        s = out[r].sum()
        if s > 0:
            out[r] /= s
    return out


def counts(windows: Sequence[Window]) -> np.ndarray:
    """(n_windows,) number of events per window."""
    return np.array([len(w.items) for w in windows], dtype=np.float64)


def vector_matrix(windows: Sequence[Window]) -> np.ndarray | None:
    """(n_windows, dim) window vectors, or None when any window lacks one."""
    if not windows or any(w.vector is None for w in windows):
        return None
    return np.stack([w.vector for w in windows]).astype(np.float64)  # type: ignore[misc]


def to_shares(row: np.ndarray, vocab: Sequence[str]) -> dict[str, float]:
    """(C,) scores over `vocab` → positive shares summing to 1, largest first (empty when none is positive)."""
    row = np.clip(row, 0.0, None)
    s = row.sum()
    if s <= 0:
        return {}
    return {vocab[i]: float(row[i] / s) for i in np.argsort(-row, kind="stable") if row[i] > 0}


def unit_vector(v: np.ndarray | None) -> np.ndarray | None:
    """v scaled to unit L2 norm as float32 (a zero vector stays zero); None stays None."""
    if v is None:
        return None
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).astype(np.float32)


class Forecaster:
    """Base class: predict the next window from the windows so far. One method to implement.

    `fit` is for learned forecasters and a no-op otherwise; it must only ever see windows that lie
    before whatever is predicted later (the caller enforces that split).
    """

    name = "forecaster"
    vocab: list[str] | None = None  # set by fit; untrained forecasters use the windows' own categories

    def fit(self, sequences: Sequence[Sequence[Window]]) -> Forecaster:
        """Learn from training users' window sequences (oldest first). Default: nothing to learn."""
        return self

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Next window from past windows.

        Args:
            shares: (n, C) category shares of the windows so far, n ≥ 1.
            vectors: (n, dim) window vectors, or None.
            counts: (n,) events per window.

        Returns:
            ((C,) predicted shares, (dim,) predicted vector or None).
        """
        raise NotImplementedError

    def forecast(self, windows: Sequence[Window], vocab: Sequence[str] | None = None) -> Prediction:
        """Predicted (category shares, unit (dim,) vector or None) of the window after `windows`."""
        if not windows:
            raise ConfigError("forecasting needs at least one window")
        # A fitted forecaster's weights belong to its own vocabulary; others use the one given.
        vocab = self.vocab if self.vocab is not None else list(vocab) if vocab is not None else _vocab(windows)
        shares, vector = self.predict_arrays(share_matrix(windows, vocab), vector_matrix(windows), counts(windows))
        return to_shares(shares, vocab), unit_vector(vector)


@FORECASTERS.register("last-window")
class LastWindowForecaster(Forecaster):
    """Baseline: the next window looks like the last one."""

    name = "last-window"

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return shares[-1], None if vectors is None else vectors[-1]


@FORECASTERS.register("history-mean")
class HistoryMeanForecaster(Forecaster):
    """Baseline: the next window looks like the whole history so far (every event weighs the same)."""

    name = "history-mean"

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        w = counts / counts.sum()
        return w @ shares, None if vectors is None else w @ vectors


@FORECASTERS.register("window-mean")
class WindowMeanForecaster(Forecaster):
    """Baseline: the unweighted average of the windows so far (a one-event week weighs as a busy one)."""

    name = "window-mean"

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return shares.mean(axis=0), None if vectors is None else vectors.mean(axis=0)


@FORECASTERS.register("exp-smoothing")
class ExpSmoothingForecaster(Forecaster):
    """Simple exponential smoothing: level ← α·x_t + (1-α)·level, started at the first window.

    Args:
        alpha: smoothing weight of the newest window in (0, 1]; 1 equals the last-window baseline.
    """

    name = "exp-smoothing"

    def __init__(self, alpha: float = 0.5) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"alpha must lie in (0, 1], got {alpha}")
        self.alpha = alpha

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return _smooth(shares, self.alpha), None if vectors is None else _smooth(vectors, self.alpha)


def _smooth(x: np.ndarray, alpha: float, extra: np.ndarray | None = None) -> np.ndarray:
    """Exponential smoothing of the rows of x (n, width), optionally times per-row weights (n,), renormalised."""
    # Closed form of the recursion: weight α(1-α)^k on the k-th newest row, the rest on the oldest.
    n = len(x)
    w = alpha * (1.0 - alpha) ** np.arange(n - 1, -1, -1, dtype=np.float64)
    w[0] = (1.0 - alpha) ** (n - 1)
    if extra is not None:
        w = w * extra
        w /= w.sum()
    return w @ x


def training_pairs(sequences: Sequence[Sequence[Window]], min_history: int = 1,
                   ) -> list[tuple[Sequence[Window], Window]]:
    """Every (windows so far, next window) pair in the sequences, with at least `min_history` windows so far."""
    return [(seq[:t], seq[t]) for seq in sequences for t in range(min_history, len(seq))]


def prior_from(sequences: Sequence[Sequence[Window]]) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Category vocabulary, (C,) mean share over all training windows, (dim,) mean vector or None."""
    windows = [w for seq in sequences for w in seq]
    if not windows:
        raise ConfigError("fit needs at least one training window")
    vocab = _vocab(windows)
    prior = share_matrix(windows, vocab).mean(axis=0)
    vecs = vector_matrix(windows)
    return vocab, prior, None if vecs is None else vecs.mean(axis=0)


@FORECASTERS.register("exp-smoothing-tuned")
class TunedSmoothingForecaster(ExpSmoothingForecaster):
    """Exponential smoothing whose α is picked on training pairs (lowest mean JS), shrunk to the prior.

    Window k's smoothing weight is also multiplied by (events in k)^γ, so a one-event week moves the
    level less than a busy one. The prediction is (1-β)·smoothed + β·(population mean share);
    α, γ and β come from a grid search on the training pairs (a seeded sample of `max_pairs` when
    there are more).
    """

    name = "exp-smoothing-tuned"
    alphas = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    gammas = (0.0, 0.5, 1.0)
    betas = (0.0, 0.1, 0.2, 0.3, 0.5)

    def __init__(self, alpha: float = 0.5, beta: float = 0.0, gamma: float = 0.0, max_pairs: int = 3000) -> None:
        super().__init__(alpha)
        self.beta, self.gamma = beta, gamma
        # The grid costs one JS divergence per pair and setting: past max_pairs, a seeded sample is enough.
        self.max_pairs = max_pairs
        self.prior: np.ndarray | None = None
        self.prior_vector: np.ndarray | None = None

    def fit(self, sequences: Sequence[Sequence[Window]]) -> TunedSmoothingForecaster:
        from retrieval.evolution.drift import js_divergence

        self.vocab, self.prior, self.prior_vector = prior_from(sequences)
        pairs = training_pairs(sequences)
        if not pairs:
            return self
        if len(pairs) > self.max_pairs:
            keep = np.random.default_rng(0).choice(len(pairs), self.max_pairs, replace=False)
            pairs = [pairs[i] for i in sorted(keep)]
        histories = [(share_matrix(h, self.vocab), counts(h)) for h, _ in pairs]
        targets = [to_shares(share_matrix([t], self.vocab)[0], self.vocab) for _, t in pairs]
        best = (np.inf, self.alpha, self.gamma, self.beta)
        for a in self.alphas:
            for g in self.gammas:
                smoothed = [_smooth(h, a, n ** g) for h, n in histories]
                for b in self.betas:
                    err = float(np.mean([js_divergence(to_shares((1 - b) * s + b * self.prior, self.vocab), t)
                                         for s, t in zip(smoothed, targets, strict=True)]))
                    best = min(best, (err, a, g, b))
        _, self.alpha, self.gamma, self.beta = best
        return self

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        w = counts ** self.gamma
        s = _smooth(shares, self.alpha, w)
        v = None if vectors is None else _smooth(vectors, self.alpha, w)
        if self.prior is not None and len(self.prior) == len(s):
            s = (1 - self.beta) * s + self.beta * self.prior
        return s, v


def _ar_features(x: np.ndarray, counts: np.ndarray, alpha: float) -> np.ndarray:
    """(5, width) regressors for the next row of x (n, width): last, smoothed, mean, event-weighted mean, first."""
    return np.stack([x[-1], _smooth(x, alpha), x.mean(axis=0), (counts / counts.sum()) @ x, x[0]])


@FORECASTERS.register("autoregressive")
class AutoregressiveForecaster(Forecaster):
    """Pooled linear autoregression: next = Σ_j w_j·feature_j + w_p·prior, weights shared by all categories.

    Features are the last window, an exponentially smoothed level, the all-history mean and the
    first window; `prior` is the population mean. Weights are fitted by least squares on training
    pairs (categories stacked as rows), separately for shares and for vectors.
    """

    name = "autoregressive"

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.w_shares: np.ndarray | None = None
        self.w_vectors: np.ndarray | None = None
        self.prior = np.zeros(0)
        self.prior_vector: np.ndarray | None = None

    def fit(self, sequences: Sequence[Sequence[Window]]) -> AutoregressiveForecaster:
        self.vocab, self.prior, self.prior_vector = prior_from(sequences)
        pairs = training_pairs(sequences)
        if not pairs:
            raise ConfigError("autoregression needs training users with at least two windows")
        n = [counts(h) for h, _ in pairs]
        self.w_shares = self._lstsq([share_matrix(h, self.vocab) for h, _ in pairs], n,
                                    [share_matrix([t], self.vocab)[0] for _, t in pairs], self.prior)
        xv, yv = [vector_matrix(h) for h, _ in pairs], [t.vector for _, t in pairs]
        if self.prior_vector is not None and all(x is not None for x in xv) and all(y is not None for y in yv):
            self.w_vectors = self._lstsq(xv, n, yv, self.prior_vector)  # type: ignore[arg-type]
        return self

    def _lstsq(self, xs: Sequence[np.ndarray], ns: Sequence[np.ndarray], ys: Sequence[np.ndarray],
               prior: np.ndarray) -> np.ndarray:
        # Categories (or vector dimensions) are stacked as rows: one shared weight per regressor.
        xs = [np.vstack([_ar_features(x, n, self.alpha), prior]).T for x, n in zip(xs, ns, strict=True)]
        w, *_ = np.linalg.lstsq(np.vstack(xs), np.concatenate(ys), rcond=None)
        return w

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.w_shares is None:
            raise ConfigError("AutoregressiveForecaster must be fitted before forecasting")
        s = np.vstack([_ar_features(shares, counts, self.alpha), self.prior]).T @ self.w_shares
        v = None
        if vectors is not None and self.w_vectors is not None and self.prior_vector is not None:
            v = np.vstack([_ar_features(vectors, counts, self.alpha), self.prior_vector]).T @ self.w_vectors
        return s, v


def make_forecaster(name: str) -> Forecaster:
    """A fresh forecaster by registered name; an unknown name raises ConfigError listing the valid ones."""
    return FORECASTERS.get(name)()


class ForecastGenerator(CandidateGenerator):
    """Candidates near the forecast interest vector of each user's next window (source "forecast").

    Histories whose forecast has no vector (empty history) get the `popularity` generator's
    candidates (flagged "popularity"), or none when no popularity generator is given.

    Args:
        index: item vectors.
        catalog: item catalogue (window categories).
        forecaster: a fitted forecaster; default exponential smoothing.
        period: window size, see `build_timeline`.
        popularity: fallback for empty histories (e.g. `PopularityGenerator(training histories)`).
    """

    name = "forecast"

    def __init__(self, index: VectorIndex, catalog: Catalog, forecaster: Forecaster | None = None,
                 period: str = "week", popularity: CandidateGenerator | None = None) -> None:
        self.index, self.catalog, self.period = index, catalog, period
        self.forecaster = forecaster or ExpSmoothingForecaster()
        # shares the interest retriever's seen-item filtering and fallback
        self._search = InterestRetriever(index, popularity=popularity)

    def queries(self, histories: Sequence[History]) -> tuple[np.ndarray, list[bool]]:
        """Forecast vector per history, shape (len(histories), dim), and which histories have one."""
        out = np.zeros((len(histories), self.index.dim), dtype=np.float32)
        has = []
        for i, history in enumerate(histories):
            windows = build_timeline(history, self.catalog, self.index, self.period)
            vector = self.forecaster.forecast(windows)[1] if windows else None
            has.append(vector is not None)
            if vector is not None:
                out[i] = vector
        return out, has

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        queries, has = self.queries(histories)
        return self._search.search_queries(histories, queries, has, k, self.name)
