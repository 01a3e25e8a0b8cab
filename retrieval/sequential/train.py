"""Training of the sequential model: every position of every training sequence is a next-item target.

Objective: full-softmax cross-entropy over the whole catalogue at the real (non-padding) positions
(the gSASRec / RecTools finding: it beats binary cross-entropy with one sampled negative); or, for
catalogues where that is too slow, a sampled softmax or gSASRec's gBCE over shared uniform
negatives; or BCE with one uniform negative for the ablation. Early stopping on validation NDCG@10
(full ranking, seen items masked); the best epoch's weights are restored. Seeded: the same config
and data give the same weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError
from retrieval.sequential.config import SeqConfig
from retrieval.sequential.model import SequentialModel
from retrieval.sequential.network import SASRecNet
from retrieval.vectors.embed import Embedder, EmbeddingCache
from retrieval.vectors.fingerprint import events_fingerprint

Arrays = tuple[np.ndarray, np.ndarray]  # (rows (n,) int64, seconds (n,) float64)


@dataclass(frozen=True)
class EpochStat:
    """One epoch of training: mean loss, and validation metrics when evaluated."""

    epoch: int
    loss: float
    ndcg10: float | None
    recall10: float | None
    seconds: float


@dataclass
class TrainReport:
    """What training did: best epoch and its validation metrics, the learning curve, the time."""

    best_epoch: int = 0
    best_ndcg10: float = float("nan")
    best_recall10: float = float("nan")
    epochs_run: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    n_targets: int = 0
    n_valid: int = 0
    curve: list[EpochStat] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def holdout_last(histories: Mapping[str, Sequence[Event]]) -> tuple[dict[str, tuple[Event, ...]],
                                                                      list[tuple[tuple[Event, ...], str]]]:
    """Split off each user's last event as a validation target (users with ≥ 2 events).

    Returns:
        (training histories without the last event, [(input events, target item id)]).
    """
    train: dict[str, tuple[Event, ...]] = {}
    valid: list[tuple[tuple[Event, ...], str]] = []
    for user, events in histories.items():
        events = tuple(events)
        if len(events) >= 2:
            train[user] = events[:-1]
            valid.append((events[:-1], events[-1].item))
        else:
            train[user] = events
    return train, valid


def text_matrix(catalog: Catalog, item_ids: Sequence[str], embedder: Embedder,
                cache: EmbeddingCache | None = None) -> np.ndarray:
    """Text vectors of item_ids, shape (len(item_ids), embedder.dim), via the catalogue's vector index."""
    from retrieval.vectors.build import build_index

    index = build_index(catalog, embedder, "numpy", cache=cache)
    return index.vectors[index.rows(item_ids)]


def training_windows(sequences: Sequence[Arrays], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut sequences into right-padded windows so every position after the first is a target once.

    A sequence of n events gives windows of at most max_len + 1 events, newest first; each window's
    inputs are its events but the last and its targets are the events one step later.

    Returns:
        items (W, max_len) int64 (row + 1, 0 = padding), times (W, max_len) float32 relative seconds,
        targets (W, max_len) int64 (row + 1, 0 = no target).
    """
    spans: list[tuple[int, int, int]] = []
    for s, (rows, _) in enumerate(sequences):
        end = len(rows)
        while end >= 2:
            start = max(0, end - max_len - 1)
            spans.append((s, start, end))
            end = start + 1
    items = np.zeros((len(spans), max_len), np.int64)
    times = np.zeros((len(spans), max_len), np.float32)
    targets = np.zeros((len(spans), max_len), np.int64)
    for w, (s, start, end) in enumerate(spans):
        rows, secs = sequences[s]
        n = end - start - 1
        items[w, :n] = rows[start:end - 1] + 1
        times[w, :n] = secs[start:end - 1] - secs[start]
        targets[w, :n] = rows[start + 1:end] + 1
    return items, times, targets


def ranking_metrics(model: SequentialModel, inputs: Sequence[Arrays], targets: np.ndarray, k: int = 10,
                    chunk: int = 1024) -> tuple[float, float]:
    """Mean NDCG@k and Recall@k of full-catalogue ranking with each input's items masked.

    Args:
        inputs: per user, (rows, seconds) of the input sequence.
        targets: (n,) int64 target rows.

    Returns:
        (ndcg, recall); a target tied with other items counts as ranked below them.
    """
    items = torch.from_numpy(model.item_vectors())
    ndcg = recall = 0.0
    for start in range(0, len(inputs), chunk):
        part = inputs[start:start + chunk]
        scores = torch.from_numpy(model.encode_arrays(part)) @ items.T
        tgt = torch.from_numpy(targets[start:start + len(part)])
        for b, (rows, _) in enumerate(part):
            seen = rows[rows != int(tgt[b])]
            scores[b, torch.from_numpy(seen)] = float("-inf")
        target_score = scores.gather(1, tgt[:, None])
        rank = (scores >= target_score).sum(1) - 1
        hit = rank < k
        recall += float(hit.sum())
        ndcg += float((hit / torch.log2(rank.float() + 2.0)).sum())
    n = max(1, len(inputs))
    return ndcg / n, recall / n


def train(model: SequentialModel, histories: Mapping[str, Sequence[Event]],
          valid: Sequence[tuple[Sequence[Event], str]] | None = None, progress: bool | None = None,
          checkpoint: str | Path | None = None) -> TrainReport:
    """Train `model` in place on every next-item position of `histories`.

    Args:
        model: a SequentialModel over the catalogue (its config holds the training settings).
        histories: user → training events, oldest first (validation/test events already removed).
        valid: (input events, target item id) pairs for early stopping; None trains for config.epochs.
        progress: tqdm bar with loss and validation NDCG@10 (default: on when stderr is a terminal).
        checkpoint: a directory where the model is saved at each validation improvement, so an
            interrupted run still leaves its best model behind.

    Returns:
        the TrainReport; the model holds the best epoch's weights.
    """
    cfg = model.config
    begin = time.perf_counter()
    model.trained_on = events_fingerprint(histories)  # saved with it: the harness checks its split
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    sampler = torch.Generator().manual_seed(cfg.seed)
    sequences = [model.arrays(evs) for evs in histories.values() if len(evs) >= 2]
    items, times, targets = training_windows(sequences, cfg.max_len)
    lengths = (items > 0).sum(1)
    report = TrainReport(n_targets=int((targets > 0).sum()))
    if not len(items):
        raise ConfigError("no training targets: every history has fewer than 2 events")
    v_inputs: list[Arrays] = []
    v_targets = np.zeros(0, np.int64)
    if valid:
        pairs = list(valid)
        if cfg.valid_users is not None and len(pairs) > cfg.valid_users:
            keep = np.sort(rng.choice(len(pairs), cfg.valid_users, replace=False))
            pairs = [pairs[i] for i in keep]
        v_inputs = [model.arrays(evs) for evs, _ in pairs]
        v_targets = model.rows([target for _, target in pairs])
        report.n_valid = len(pairs)
    net, device = model.net, model.device
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best_state, bad = copy.deepcopy(net.state_dict()), 0
    bar = tqdm(range(1, cfg.epochs + 1), desc="train sequential", unit="epoch",
               disable=None if progress is None else not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        net.train()
        total, count = 0.0, 0
        for idx in _length_batches(lengths, cfg.batch_size, rng):
            width = int(lengths[idx].max())  # drop all-padding columns on the right
            it = torch.from_numpy(items[idx, :width]).to(device)
            tm = torch.from_numpy(times[idx, :width]).to(device)
            tg = torch.from_numpy(targets[idx, :width]).to(device)
            mask = tg > 0
            hidden = net(it, tm)[mask]
            loss = _loss(net, hidden, tg[mask], cfg, sampler)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * int(mask.sum())
            count += int(mask.sum())
        model.invalidate()
        ndcg = recall = None
        if v_inputs and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            ndcg, recall = ranking_metrics(model, v_inputs, v_targets)
        report.curve.append(EpochStat(epoch, total / max(1, count), ndcg, recall, time.perf_counter() - t0))
        report.epochs_run = epoch
        if ndcg is not None:
            if not report.best_epoch or ndcg > report.best_ndcg10:
                report.best_epoch, report.best_ndcg10, report.best_recall10 = epoch, ndcg, recall or 0.0
                best_state, bad = copy.deepcopy(net.state_dict()), 0
                if checkpoint is not None:
                    model.save(checkpoint)
            else:
                bad += 1
        bar.set_postfix(loss=f"{total / max(1, count):.4f}",
                        ndcg10=f"{ndcg:.4f}" if ndcg is not None else "-",
                        best=f"{report.best_ndcg10:.4f}@{report.best_epoch}" if report.best_epoch else "-")
        if bad >= cfg.patience:
            report.stopped_early = True
            break
    bar.close()
    if v_inputs:
        net.load_state_dict(best_state)
    else:
        report.best_epoch = report.epochs_run
    model.invalidate()
    net.eval()
    report.seconds = time.perf_counter() - begin
    return report


def _length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Window indices in batches of similar length (little padding), batch order shuffled.

    Within equal lengths the order is random, so batches differ between epochs; all from `rng`.
    """
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def full_ce(hidden: torch.Tensor, items: torch.Tensor, target: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Mean full-softmax cross-entropy over the catalogue, `chunk` positions at a time.

    Each chunk is one (chunk, H) @ (H, n_items) matmul whose logits are recomputed in the backward pass
    (activation checkpointing), so memory stays at chunk × n_items however many positions a batch has.

    Args:
        hidden: (N, H) hidden states of real (non-padding) positions only.
        items: (n_items, H) output item vectors.
        target: (N,) target rows (0-based).
    """
    if len(hidden) <= chunk:
        return F.cross_entropy(hidden @ items.T, target)
    total = hidden.new_zeros(())
    for start in range(0, len(hidden), chunk):
        h, t = hidden[start:start + chunk], target[start:start + chunk]
        total = total + checkpoint(_ce_sum, h, items, t, use_reentrant=False)
    return total / len(hidden)


def _ce_sum(hidden: torch.Tensor, items: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(hidden @ items.T, target, reduction="sum")


def _loss(net: SASRecNet, hidden: torch.Tensor, target: torch.Tensor, cfg: SeqConfig,
          sampler: torch.Generator) -> torch.Tensor:
    """hidden (N, H), target (N,) padded item indices (row + 1)."""
    if cfg.loss == "ce":
        return full_ce(hidden, net.item_vectors(), target - 1)
    if cfg.loss == "sampled":
        neg = torch.randint(1, net.n_items + 1, (cfg.negatives,), generator=sampler).to(target.device)
        pos_logit = (hidden * net.item_vectors(target)).sum(-1)
        neg_logit = hidden @ net.item_vectors(neg).T  # (N, negatives)
        neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], float("-inf"))  # a hit is no negative
        return F.cross_entropy(torch.cat([pos_logit[:, None], neg_logit], 1), torch.zeros_like(target))
    neg = torch.randint(1, net.n_items + 1, target.shape, generator=sampler).to(target.device)
    pos_logit = (hidden * net.item_vectors(target)).sum(-1)
    neg_logit = (hidden * net.item_vectors(neg)).sum(-1)
    return (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
            + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))


def fit_sequential(item_ids: Sequence[str], histories: Mapping[str, Sequence[Event]], config: SeqConfig | None = None,
                   text: np.ndarray | None = None, text_embedder: str | None = None,
                   valid: Sequence[tuple[Sequence[Event], str]] | None = None,
                   progress: bool | None = None) -> tuple[SequentialModel, TrainReport]:
    """Build a SequentialModel over item_ids and train it (see `train`).

    Args:
        item_ids: catalogue ids (row order).
        histories: user → training events.
        config: settings (default SeqConfig()).
        text: (len(item_ids), dim) text vectors (required when config.use_text).
        text_embedder: the embedder's name, written into the saved manifest.
        valid: early-stopping pairs; None holds out each user's last training event.
    """
    config = config or SeqConfig()
    if valid is None:
        histories, valid = holdout_last(histories)
    model = SequentialModel(item_ids, config, text if config.use_text else None, text_embedder)
    return model, train(model, histories, valid, progress)
