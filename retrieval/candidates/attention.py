"""User interest vectors pooled from history item vectors with dynamic attention (similarity × recency)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrieval.errors import ConfigError

DAY = 86_400.0


@dataclass(frozen=True)
class InterestConfig:
    """Attention-pooling settings.

    Attributes:
        temperature: softmax temperature over similarity to recent behaviour (lower = sharper).
        recent_events: how many newest events form the "recent behaviour" anchor.
        short_half_life_days: recency half-life of the short-term vector.
        long_half_life_days: recency half-life of the long-term vector.
        short_weight: weight of the short-term vector in the fused query (long gets 1 - this).
        short_half_life_events: optional recency half-life of the short-term vector counted in events
            (0.5^(events since) on top of the day-based decay); for data rated in bulk sessions, where
            days say little about order. None = days only.
        long_half_life_events: the same for the long-term vector.
    """

    temperature: float = 0.1
    recent_events: int = 5
    short_half_life_days: float = 7.0
    long_half_life_days: float = 365.0
    short_weight: float = 0.6
    short_half_life_events: float | None = None
    long_half_life_events: float | None = None

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.short_half_life_days <= 0 or self.long_half_life_days <= 0:
            raise ConfigError("temperature and half-lives must be positive")
        if any(h is not None and not h > 0 for h in (self.short_half_life_events, self.long_half_life_events)):
            raise ConfigError("event half-lives must be positive (or None)")
        if self.recent_events < 1:
            raise ConfigError("recent_events must be ≥ 1")
        if not 0.0 <= self.short_weight <= 1.0:
            raise ConfigError("short_weight must lie in [0, 1]")


def attention_weights(vectors: np.ndarray, times: np.ndarray, half_life_days: float,
                      config: InterestConfig, half_life_events: float | None = None) -> np.ndarray:
    """Attention over history items: softmax(similarity to recent behaviour / T) × recency decay.

    Args:
        vectors: (n, dim) history item vectors, oldest first.
        times: (n,) event times in epoch seconds.
        half_life_days: recency half-life; the newest event has decay 1.
        config: pooling settings.
        half_life_events: optional half-life counted in events, applied on top of the day-based one.

    Returns:
        (n,) non-negative weights summing to 1.
    """
    anchor = vectors[-config.recent_events:].mean(axis=0)
    logits = vectors @ anchor / config.temperature
    logits -= logits.max()
    age_days = (times[-1] - times) / DAY
    weights = np.exp(logits) * np.power(0.5, age_days / half_life_days)
    if half_life_events is not None:
        weights = weights * np.power(0.5, np.arange(len(vectors))[::-1] / half_life_events)
    total = weights.sum()
    return weights / total if total > 0 else np.full(len(vectors), 1.0 / len(vectors))


def _normalize(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def interest_vectors(vectors: np.ndarray, times: np.ndarray,
                     config: InterestConfig) -> tuple[np.ndarray, np.ndarray]:
    """Short-term and long-term interest vectors of one user.

    Args:
        vectors: (n, dim) history item vectors, oldest first, n ≥ 1.
        times: (n,) epoch seconds.
        config: pooling settings.

    Returns:
        (short, long), each (dim,) and L2-normalised.
    """
    short = _normalize(attention_weights(vectors, times, config.short_half_life_days, config,
                                         config.short_half_life_events) @ vectors)
    long = _normalize(attention_weights(vectors, times, config.long_half_life_days, config,
                                        config.long_half_life_events) @ vectors)
    return short, long


def fused_query(short: np.ndarray, long: np.ndarray, short_weight: float) -> np.ndarray:
    """The single query whose inner products equal the weighted sum of the two vectors' scores.

    Inner product is linear, so searching with w·s + (1-w)·l ranks items exactly as fusing the two
    searches' scores would: one index search per user instead of two.
    """
    return (short_weight * short + (1.0 - short_weight) * long).astype(np.float32)


def interest_vectors_batch(vectors: np.ndarray, times: np.ndarray, mask: np.ndarray,
                           config: InterestConfig) -> tuple[np.ndarray, np.ndarray]:
    """`interest_vectors` for many users at once, on right-aligned padded histories.

    Args:
        vectors: (B, L, dim) history vectors; each user's events are right-aligned (newest at L-1).
        times: (B, L) epoch seconds (any value where masked).
        mask: (B, L) bool, True for real events; every row has at least one.
        config: pooling settings.

    Returns:
        (short, long), each (B, dim), L2-normalised; equal to per-user `interest_vectors`.
    """
    n_real = mask.sum(axis=1)
    r = min(config.recent_events, vectors.shape[1])
    anchor = (vectors[:, -r:] * mask[:, -r:, None]).sum(axis=1) / np.minimum(n_real, r)[:, None]
    logits = np.einsum("bld,bd->bl", vectors, anchor) / config.temperature
    logits = np.where(mask, logits, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)
    sim = np.exp(logits)
    age_days = np.where(mask, (times[:, -1:] - times) / DAY, 0.0)
    half_lives = np.array([config.short_half_life_days, config.long_half_life_days])
    decay = -age_days[:, None, :] / half_lives[None, :, None]  # (B, 2, L)
    age_events = np.arange(vectors.shape[1])[::-1].astype(np.float64)  # right-aligned: newest is 0
    for part, events in enumerate((config.short_half_life_events, config.long_half_life_events)):
        if events is not None:
            decay[:, part, :] -= age_events / events
    w = (sim[:, None, :] * np.exp2(decay)).astype(np.float32)
    w /= w.sum(axis=2, keepdims=True)
    pooled = np.matmul(w, vectors)  # (B, 2, dim): short and long in one product
    pooled /= np.maximum(np.linalg.norm(pooled, axis=2, keepdims=True), 1e-12)
    return pooled[:, 0], pooled[:, 1]
