"""Recommendation-tuned sentence embeddings: fine-tune a sentence-transformer on next-item pairs.

An item's text is pulled towards the texts of the items that follow it in users' training histories
with a symmetric in-batch-negatives contrastive loss (InfoNCE, as MultipleNegativesRankingLoss): a
batch is a set of items (a seeded permutation of the catalogue cut into `batch_size` chunks); every
(history item, next item) pair with both ends in the batch is a positive, in both directions, weighted
by how often it occurs, and the batch's other items are its negatives. One encoding of B items thus
serves every pair among them (about B²/n² of all pairs) instead of B/2 pairs, which is what makes a
CPU run of a few minutes useful.

Speed on a CPU: the catalogue's texts are fixed, so the frozen lower transformer layers are run once
for every item and their token states kept; each step runs only the top `train_layers` layers (and
the pooling) on the unique items of the batch. `train_layers` ≥ the model's depth, or a model that is
not BERT-shaped, trains the whole model through `model(features)["sentence_embedding"]`.

Validation: after each epoch, every item is embedded and each validation user's last training item
ranks the catalogue (last-item nearest neighbours, seen items excluded); the epoch with the best
NDCG@10 is kept (epoch 0 = the base model). Only training events make pairs.

The saved directory is a sentence-transformers model plus `manifest.json` (format
"driftrec-embedder/1"): base model, the training-events fingerprint, objective, pairs, epochs, time,
validation metrics and the weights' sha256 (`sha256["model.safetensors"]`).
`make_embedder("sentence-transformers", DIR)` loads it, named `<dir name>-<sha256[:12]>` so each tuned
model has its own embedding-cache entries, and `check_tuned_on` refuses it for a run whose training
events differ (`LeakageError`).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from retrieval.data.model import Catalog, Event
from retrieval.errors import ConfigError, IndexStateError
from retrieval.log import get_logger
from retrieval.vectors.fingerprint import check_same_events, events_fingerprint

log = get_logger(__name__)

FORMAT = "driftrec-embedder/1"
WEIGHTS = "model.safetensors"
OBJECTIVE = ("symmetric in-batch InfoNCE (as MultipleNegativesRankingLoss) over batches of items: the (history item, "
             "next item) pairs among a batch's items are count-weighted positives, the batch's other items negatives")

History = Sequence[Event]


@dataclass(frozen=True)
class TuneConfig:
    """Fine-tuning settings.

    Attributes:
        epochs: passes over the catalogue (each item in one batch per pass), each followed by a validation.
        batch_size: items per step; the pairs among them are the positives, the other items the negatives.
        max_pairs: use a seeded sample of this many training pairs (None = every pair).
        max_minutes: stop training after this many minutes (then validate and save the best epoch).
        lr: AdamW learning rate of the trained layers.
        scale: similarity scale of the loss (1 / temperature; 20 as in MultipleNegativesRankingLoss).
        window: pair each history item with the next `window` items.
        train_layers: top transformer layers trained (the rest frozen and cached).
        patience: epochs without a better validation NDCG@10 before stopping.
        valid_users: validate on a seeded sample of this many users (None = all).
        seed: seeds pair sampling and the torch generator.
    """

    epochs: int = 20
    batch_size: int = 384
    max_pairs: int | None = None
    max_minutes: float | None = None
    lr: float = 1e-3
    scale: float = 20.0
    window: int = 1
    train_layers: int = 1
    patience: int = 3
    valid_users: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "window", "train_layers", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be ≥ 2 (in-batch negatives need a second item)")
        if self.valid_users is not None and self.valid_users < 1:
            raise ConfigError(f"valid_users must be ≥ 1, got {self.valid_users}")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ConfigError(f"max_pairs must be ≥ 1, got {self.max_pairs}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be > 0, got {self.max_minutes}")
        if not (self.lr > 0 and self.scale > 0) or self.seed < 0:
            raise ConfigError("lr and scale must be > 0 and seed ≥ 0")


@dataclass
class TuneReport:
    """What a tuning run did; `manifest` is what was saved beside the weights."""

    model_dir: Path
    best_epoch: int
    validation: list[dict[str, float]] = field(default_factory=list)  # per epoch, epoch 0 = base model
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        """Validation metrics of the kept epoch."""
        return self.validation[self.best_epoch]


def training_pairs(histories: Mapping[str, History], window: int = 1,
                   excluded: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(history item, later item) pairs from consecutive training events, users in sorted order.

    Args:
        histories: user → training events, oldest first.
        window: pair each event with the next `window` events.
        excluded: items removed from every history first (cold-item experiments).

    Returns:
        pairs of item ids; an item is never paired with itself.
    """
    drop = set(excluded)
    pairs: list[tuple[str, str]] = []
    for user in sorted(histories):
        items = [ev.item for ev in histories[user] if ev.item not in drop]
        for i, a in enumerate(items):
            pairs.extend((a, b) for b in items[i + 1:i + 1 + window] if b != a)
    return pairs


def last_item_metrics(vectors: np.ndarray, row: Mapping[str, int],
                      validation: Sequence[tuple[History, str]]) -> dict[str, float]:
    """NDCG@10 and Recall@20 of last-item nearest neighbours, seen items excluded.

    Args:
        vectors: (n_items, dim) L2-normalised item vectors.
        row: item id → row of `vectors`.
        validation: (input events, target item) per user; users with an empty input are skipped.

    Returns:
        {"ndcg@10", "recall@20", "users"}.
    """
    ndcg, recall, users = 0.0, 0.0, 0
    for inputs, target in validation:
        if not inputs:
            continue
        scores = vectors @ vectors[row[inputs[-1].item]]
        seen = [row[ev.item] for ev in inputs if ev.item != target]
        scores[seen] = -np.inf
        rank = int((scores > scores[row[target]]).sum()) + 1
        ndcg += 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0
        recall += rank <= 20
        users += 1
    return {"ndcg@10": ndcg / max(users, 1), "recall@20": recall / max(users, 1), "users": float(users)}


def tune_embedder(catalog: Catalog, train: Mapping[str, History], validation: Sequence[tuple[History, str]],
                  out: str | Path, config: TuneConfig | None = None, base_model: str | None = None,
                  excluded_items: Sequence[str] = (), progress: bool = True) -> TuneReport:
    """Fine-tune a sentence-transformer on next-item pairs of the training events and save it.

    Args:
        catalog: every item (texts are not behaviour; all may be embedded).
        train: user → TRAINING events only, oldest first (the split's training histories).
        validation: (training events, validation target item) per user, for picking the epoch.
        out: model directory to write (replaced atomically; an unrelated directory is refused).
        config: settings.
        base_model: sentence-transformers model name or directory (default: packaged all-MiniLM-L6-v2).
        excluded_items: items whose events are left out of the pairs and the validation (cold items).
        progress: tqdm bar over steps.

    Returns:
        the report; `report.manifest` is the saved manifest.
    """
    import torch

    from retrieval.vectors.store import check_replaceable, write_atomically

    config = config or TuneConfig()
    check_replaceable(Path(out).absolute(), FORMAT.split("/")[0])  # before training, not after it
    drop = set(excluded_items)
    pairs = training_pairs(train, config.window, drop)
    if not pairs:
        raise ConfigError("no training pairs: every training history has fewer than two items")
    rng = random.Random(config.seed)
    used = rng.sample(pairs, config.max_pairs) if config.max_pairs and config.max_pairs < len(pairs) else pairs
    row = {item: r for r, item in enumerate(catalog.ids)}
    counts = _pair_counts(used, row)
    active = sorted(set(counts.nonzero()[0].tolist()))  # items in at least one pair
    valid = [(tuple(ev for ev in inp if ev.item not in drop), t) for inp, t in validation if t not in drop]
    if config.valid_users is not None and config.valid_users < len(valid):
        valid = random.Random(config.seed).sample(valid, config.valid_users)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    encoder = _Encoder(_load_model(base_model), [it.embedding_text() for it in catalog], config.train_layers)
    history = [last_item_metrics(encoder.all_vectors(), row, valid)]
    log.info("tune-embedder: base model validation %s", history[0])
    best_epoch, best_state = 0, encoder.state()
    opt = torch.optim.AdamW(encoder.parameters(), lr=config.lr)
    deadline = started + 60 * config.max_minutes if config.max_minutes else math.inf
    steps = math.ceil(len(active) / config.batch_size)
    bar = tqdm(total=config.epochs * steps, desc="tune embedder", unit="step", disable=not progress)
    for epoch in range(1, config.epochs + 1):
        order = rng.sample(active, len(active))
        encoder.train()
        for start in range(0, len(order), config.batch_size):
            batch = sorted(order[start:start + config.batch_size])
            weights = torch.tensor(counts[batch][:, batch].toarray(), dtype=torch.float32)
            if len(batch) < 2 or not weights.sum() > 0:
                continue
            loss = _batch_loss(encoder.encode_rows(batch), weights, config.scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            if time.perf_counter() > deadline:
                break
        history.append(last_item_metrics(encoder.all_vectors(), row, valid))
        log.info("tune-embedder: epoch %d validation %s", epoch, history[-1])
        if history[-1]["ndcg@10"] > history[best_epoch]["ndcg@10"]:
            best_epoch, best_state = epoch, encoder.state()
        if epoch - best_epoch >= config.patience or time.perf_counter() > deadline:
            break
    bar.close()
    encoder.load_state(best_state)
    seconds = time.perf_counter() - started
    manifest = {
        "format": FORMAT,
        "base_model": base_model or "all-MiniLM-L6-v2",
        "trained_on": events_fingerprint(train),
        "excluded_items": {"count": len(drop), "ids": sorted(drop)},
        "objective": OBJECTIVE,
        "pairs": {"available": len(pairs), "used": len(used), "distinct": int(counts.nnz // 2),
                  "window": config.window, "batch_items": config.batch_size},
        "config": asdict(config),
        "epochs_run": len(history) - 1,
        "best_epoch": best_epoch,
        "seconds": round(seconds, 1),
        "validation": {"metric": "last-item nearest neighbours, full ranking of unseen items",
                       "per_epoch": history, "best": history[best_epoch]},
    }
    target = write_atomically(out, ".tmp-embedder-", lambda tmp: encoder.model.save(str(tmp)), manifest, [WEIGHTS])
    return TuneReport(target, best_epoch, history, seconds, json.loads((target / "manifest.json").read_text()))


def _pair_counts(pairs: Sequence[tuple[str, str]], row: Mapping[str, int]) -> Any:
    """(n_items, n_items) symmetric sparse matrix: how often each pair occurs, either direction."""
    from scipy import sparse

    a = np.array([row[p[0]] for p in pairs] + [row[p[1]] for p in pairs], dtype=np.int64)
    b = np.array([row[p[1]] for p in pairs] + [row[p[0]] for p in pairs], dtype=np.int64)
    return sparse.csr_matrix((np.ones(len(a), dtype=np.float32), (a, b)), shape=(len(row), len(row)))


def _batch_loss(vectors: Any, weights: Any, scale: float) -> Any:
    """Count-weighted InfoNCE over one batch of items.

    Args:
        vectors: (B, dim) L2-normalised item embeddings (with gradients).
        weights: (B, B) pair counts among the batch's items, symmetric, zero diagonal.
        scale: similarity scale (1 / temperature).

    Returns:
        scalar loss: -Σ w_ij log softmax_j(scale · v_i·v_j) / Σ w_ij, the softmax over the other items.
    """
    import torch

    weights = weights.to(vectors.device)
    logits = scale * vectors @ vectors.T
    logits = logits.masked_fill(torch.eye(len(vectors), dtype=torch.bool, device=logits.device), float("-inf"))
    logp = torch.log_softmax(logits, dim=1).masked_fill(weights == 0, 0.0)
    return -(weights * logp).sum() / weights.sum()


def _load_model(base_model: str | None) -> Any:
    """The base SentenceTransformer on the CPU (or CUDA when present), via the embedder's own loading rules."""
    from retrieval.vectors.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(base_model)._model


class _Encoder:
    """Item texts → normalised sentence embeddings, with the frozen lower layers computed once.

    Args:
        model: a SentenceTransformer (Transformer → Pooling → [Normalize]).
        texts: every item's text, in row order.
        train_layers: top transformer layers to train.
    """

    def __init__(self, model: Any, texts: Sequence[str], train_layers: int) -> None:
        import torch

        self.model, self.texts = model, list(texts)
        self.device = next(model.parameters()).device
        bert: Any = getattr(model[0], "auto_model", None)
        layers: Any = getattr(getattr(bert, "encoder", None), "layer", None)
        plain_head = all(type(m).__name__ in ("Pooling", "Normalize") for m in list(model)[1:])
        self.cached = layers is not None and plain_head and train_layers < len(layers)
        for p in model.parameters():
            p.requires_grad_(not self.cached)
        self.states: list[Any] = []
        if self.cached:
            self.bert, self.top = bert, list(layers)[len(layers) - train_layers:]
            for layer in self.top:
                for p in layer.parameters():
                    p.requires_grad_(True)
            with torch.no_grad():
                for start in range(0, len(self.texts), 128):
                    feats = self._features(self.texts[start:start + 128])
                    hidden = bert(input_ids=feats["input_ids"], attention_mask=feats["attention_mask"],
                                  token_type_ids=feats.get("token_type_ids"), output_hidden_states=True)
                    frozen = hidden.hidden_states[len(layers) - train_layers]
                    for h, m in zip(frozen, feats["attention_mask"], strict=True):
                        self.states.append(h[: int(m.sum())].to(torch.float16))

    def _features(self, texts: Sequence[str]) -> dict[str, Any]:
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize  # tokenize is deprecated in 6.x
        feats = prepare(list(texts))
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in feats.items()}

    def parameters(self) -> list[Any]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def train(self) -> None:
        self.model.train()

    def encode_rows(self, rows: Sequence[int]) -> Any:
        """(len(rows), dim) L2-normalised embeddings of the given items, with gradients."""
        import torch

        if not self.cached:
            out = self.model(self._features([self.texts[r] for r in rows]))["sentence_embedding"]
            return torch.nn.functional.normalize(out, dim=-1)
        width = max(len(self.states[r]) for r in rows)
        hidden = torch.zeros(len(rows), width, self.states[rows[0]].shape[1], device=self.device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            hidden[i, : len(self.states[r])] = self.states[r].float()
            mask[i, : len(self.states[r])] = 1
        # Additive (B, 1, 1, T) mask: what BERT's eager and SDPA attention both accept for padding.
        attn = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.top:
            out = layer(hidden, attn)
            hidden = out[0] if isinstance(out, tuple) else out
        pooled = self.model[1]({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
        return torch.nn.functional.normalize(pooled, dim=-1)

    def all_vectors(self, batch: int = 256) -> np.ndarray:
        """(n_items, dim) float32 embeddings of every item, no gradients, eval mode."""
        import torch

        self.model.eval()
        with torch.no_grad():
            parts = [self.encode_rows(list(range(s, min(s + batch, len(self.texts))))).cpu().numpy()
                     for s in range(0, len(self.texts), batch)]
        return np.concatenate(parts).astype(np.float32)

    def state(self) -> dict[str, Any]:
        """A copy of the trainable weights."""
        return {k: p.detach().clone() for k, p in self.model.named_parameters() if p.requires_grad}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state, strict=False)


def read_manifest(model_dir: str | Path) -> dict[str, Any] | None:
    """The tuning manifest of a model directory, or None when it is not a driftrec-tuned model."""
    path = Path(model_dir).expanduser() / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexStateError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or str(manifest.get("format", "")).split("/")[0] != FORMAT.split("/")[0]:
        return None
    return manifest


def tuned_name(model_dir: str | Path) -> str | None:
    """Embedder name of a tuned directory, `<dir name>-<weights sha256[:12]>`; None for other directories.

    Raises:
        IndexStateError: the weights file differs from the one the manifest records.
    """
    from retrieval.vectors.store import sha256_file

    manifest = read_manifest(model_dir)
    if manifest is None:
        return None
    root = Path(model_dir).expanduser()
    recorded = str((manifest.get("sha256") or {}).get(WEIGHTS, ""))
    if not (root / WEIGHTS).is_file() or sha256_file(root / WEIGHTS) != recorded:
        raise IndexStateError(f"{root}: {WEIGHTS} is missing or differs from the sha256 its manifest records; "
                              "re-run `driftrec tune-embedder`")
    return f"{root.resolve().name}-{recorded[:12]}"


def check_tuned_on(model_dir: str | Path, histories: Mapping[str, History]) -> None:
    """Refuse a tuned embedding model whose training events are not this run's training events.

    A plain sentence-transformers directory (no driftrec manifest) passes: it learned nothing from the data.

    Raises:
        LeakageError: the model was tuned on other events (another split or dataset), so it may have
            seen held-out events.
    """
    manifest = read_manifest(model_dir)
    if manifest is None:
        return
    check_same_events(manifest.get("trained_on") or {}, histories, f"embedding model {model_dir}",
                      "`driftrec tune-embedder`")
