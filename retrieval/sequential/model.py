"""SASRec-style next-item model: causal self-attention over a user's item sequence.

An item's vector is a learned id embedding plus a linear projection of its sentence-transformer text
vector, so an item with text but few events still gets a usable vector. The same item vectors are
used on the input side and as the output layer (weight tying). Optional time features come from the
real timestamps: an embedding of the log-bucketed gap to the previous event, and a learned attention
bias per log-bucketed gap between the query event and each earlier event (TiSASRec-like recency).

Serving: the final hidden state of a sequence is the user's query vector; item vectors live in a
`VectorIndex` (the only id↔row mapping), so retrieval is one index search (`SequentialGenerator`).
Training lives in `retrieval.sequential.train`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from retrieval import __version__
from retrieval.data.model import Event
from retrieval.errors import ConfigError, IndexStateError, UnknownUserError
from retrieval.vectors.index import VectorIndex
from retrieval.candidates.base import Candidate, CandidateGenerator, PopularityGenerator
from retrieval.vectors.store import verify_files, write_atomically

FORMAT = "driftrec-sequential/1"
_FILES = ("model.pt", "ids.json", "config.json")


class SeqConfig(BaseModel):
    """Architecture and training settings (saved as config.json beside the weights).

    Attributes:
        max_len: newest events a sequence keeps; longer training sequences are cut into windows.
        hidden: model width; also the dimension of query and item vectors.
        blocks: transformer blocks.
        heads: attention heads (hidden must be divisible by heads).
        ffn_mult: feed-forward width as a multiple of hidden.
        dropout: dropout on embeddings, attention and feed-forward.
        use_text: add the projected text vector to each item's id embedding.
        use_time: embedding of the log-bucketed gap to the previous event, from timestamps.
        time_bias: with use_time, also a learned attention bias per log-bucketed gap between the
            query event and each earlier event (TiSASRec-like; costs B·L² work per batch).
        time_buckets: number of log2 buckets for time gaps (bucket 0 = no previous event).
        loss: "ce" = full-softmax cross-entropy over the catalogue; "bce" = BCE with one sampled
            negative; "sampled" = softmax over the target and `negatives` uniform items shared by the
            batch (for large catalogues, where the full softmax is too slow on CPU).
        lr, weight_decay, batch_size: Adam(W) settings.
        epochs: maximum epochs; patience: evaluations without improvement before stopping.
        eval_every: epochs between validation evaluations.
        valid_users: validate on at most this many users (a fixed, seeded subset), None = all.
        seed: seeds torch and the data order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_len: int = Field(200, ge=2)
    hidden: int = Field(64, ge=4)
    blocks: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    ffn_mult: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    use_text: bool = True
    use_time: bool = True
    time_bias: bool = False
    time_buckets: int = Field(32, ge=4)
    loss: Literal["ce", "bce", "sampled"] = "ce"
    negatives: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=1)
    eval_every: int = Field(1, ge=1)
    valid_users: int | None = Field(None, ge=1)
    seed: int = 0


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


class SequentialModel:
    """A trained (or untrained) next-item model over a fixed catalogue, with save/load and serving.

    Args:
        item_ids: catalogue ids; their order fixes the rows of every score matrix.
        config: settings.
        text: (len(item_ids), text_dim) text vectors in item_ids order (needed when config.use_text).
        text_embedder: name of the embedder that made `text` (checked on load).
        backend: index backend for `index` ("flat" FAISS or "numpy").
    """

    def __init__(self, item_ids: Sequence[str], config: SeqConfig | None = None, text: np.ndarray | None = None,
                 text_embedder: str | None = None, backend: str = "flat") -> None:
        self.config = config or SeqConfig()
        self.text_embedder = text_embedder if self.config.use_text else None
        self.backend = backend
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(self.config.seed)  # identical initial weights for identical configs
        self.net = SASRecNet(len(item_ids), self.config, text).to(self.device)
        # The row order is owned by a VectorIndex; its vectors are refreshed after training/loading.
        self._ids = VectorIndex("sequential", self.config.hidden, backend)
        self._ids.add(list(item_ids), np.zeros((len(item_ids), self.config.hidden), np.float32))
        self._index: VectorIndex | None = None

    def __repr__(self) -> str:
        c = self.config
        return (f"<SequentialModel {len(self.item_ids):,} items, hidden {c.hidden}, {c.blocks} blocks, loss {c.loss}, "
                f"text {'on' if c.use_text else 'off'}, time {'on' if c.use_time else 'off'}>")

    @property
    def item_ids(self) -> list[str]:
        """Catalogue ids in row order."""
        return self._ids.ids

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of item ids, shape (n,) int64 (UnknownItemError for ids outside the catalogue)."""
        return self._ids.rows(item_ids)

    def invalidate(self) -> None:
        """Forget the serving index (call after the weights change)."""
        self._index = None

    @property
    def index(self) -> VectorIndex:
        """Output item vectors, shape (n_items, hidden), in a VectorIndex (built lazily)."""
        if self._index is None:
            index = VectorIndex(f"sequential:{self.fingerprint()[:12]}", self.config.hidden, self.backend)
            index.add(self.item_ids, self.item_vectors())
            self._index = index
        return self._index

    def item_vectors(self) -> np.ndarray:
        """(n_items, hidden) float32 output item vectors in row order."""
        self.net.eval()
        with torch.no_grad():
            return self.net.item_vectors().float().cpu().numpy()

    def batch(self, sequences: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (items, times) tensors of shape (B, L) from per-user (rows, seconds) arrays,
        keeping each sequence's newest max_len events; L is the longest kept length (at least 1)."""
        width = max(1, min(self.config.max_len, max((len(r) for r, _ in sequences), default=1)))
        items = np.zeros((len(sequences), width), np.int64)
        times = np.zeros((len(sequences), width), np.float32)
        for b, (r, t) in enumerate(sequences):
            n = min(width, len(r))
            if n:
                items[b, :n] = r[-n:] + 1
                times[b, :n] = t[-n:] - t[-n]  # relative seconds keep float32 precise
        return torch.from_numpy(items).to(self.device), torch.from_numpy(times).to(self.device)

    def arrays(self, events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]:
        """(rows (n,) int64, seconds (n,) float64) of one event sequence."""
        rows = self.rows([ev.item for ev in events])
        secs = np.fromiter((ev.timestamp.timestamp() for ev in events), np.float64, count=len(events))
        return rows, secs

    def encode_arrays(self, sequences: Sequence[tuple[np.ndarray, np.ndarray]], chunk: int = 512) -> np.ndarray:
        """Query vectors (len(sequences), hidden) float32: the final hidden state of each sequence.

        An empty sequence gets a zero vector (callers fall back to popularity for it).
        """
        self.net.eval()
        out = np.zeros((len(sequences), self.config.hidden), np.float32)
        with torch.no_grad():
            for start in range(0, len(sequences), chunk):
                part = sequences[start:start + chunk]
                items, times = self.batch(part)
                last = ((items > 0).sum(1) - 1).clamp(min=0)
                hidden = self.net(items, times)[torch.arange(len(part)), last].float().cpu().numpy()
                has = np.array([len(r) > 0 for r, _ in part])
                out[start:start + len(part)] = hidden * has[:, None]
        return out

    def encode(self, sequences: Sequence[Sequence[Event]]) -> np.ndarray:
        """Query vectors (len(sequences), hidden) for event sequences (oldest first)."""
        return self.encode_arrays([self.arrays(seq) for seq in sequences])

    def score(self, sequences: Sequence[Sequence[Event]]) -> np.ndarray:
        """Scores of every catalogue item, shape (len(sequences), n_items), exact inner products."""
        return self.encode(sequences) @ self.item_vectors().T

    def fingerprint(self) -> str:
        """sha256 over the weights: identifies this exact model."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write model.pt (state_dict), ids.json, config.json and manifest.json atomically. No pickle."""
        def write(tmp: Path) -> None:
            torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, tmp / "model.pt")
            (tmp / "ids.json").write_text(json.dumps(self.item_ids))
            (tmp / "config.json").write_text(self.config.model_dump_json(indent=2))

        text_dim = int(self.net.text.shape[1]) if self.config.use_text else 0
        manifest = {"format": FORMAT, "driftrec_version": __version__, "count": len(self.item_ids),
                    "hidden": self.config.hidden, "text_dim": text_dim, "text_embedder": self.text_embedder}
        return write_atomically(directory, ".tmp-seq-", write, manifest, _FILES)

    @classmethod
    def load(cls, directory: str | Path, item_ids: Sequence[str] | None = None, text_embedder: str | None = None,
             backend: str = "flat") -> SequentialModel:
        """Load a saved model, verifying manifest, checksums, shapes and (if given) ids and embedder.

        Raises:
            IndexStateError: missing/partial/corrupted directory, other catalogue, other text embedder.
        """
        root = Path(directory)
        mfile = root / "manifest.json"
        if not mfile.is_file():
            raise IndexStateError(f"{root}: not a sequential model directory (no manifest.json); "
                                  "train one with `driftrec train`")
        try:
            manifest = json.loads(mfile.read_text())
            if manifest["format"] != FORMAT:
                raise IndexStateError(f"{mfile}: format {manifest['format']!r}, expected {FORMAT!r}")
            expected, count = manifest["sha256"], int(manifest["count"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IndexStateError(f"{mfile}: corrupted manifest ({exc})") from exc
        verify_files(root, _FILES, expected, "model directory", "retrain it with `driftrec train`")
        config = SeqConfig.model_validate_json((root / "config.json").read_text())
        ids = json.loads((root / "ids.json").read_text())
        if len(ids) != count or int(manifest.get("hidden", -1)) != config.hidden:
            raise IndexStateError(f"{root}: manifest says {count} items × hidden {manifest.get('hidden')}, "
                                  f"files hold {len(ids)} ids and hidden {config.hidden}")
        if item_ids is not None and list(item_ids) != ids:
            missing = len(set(item_ids) - set(ids))
            raise IndexStateError(f"{root}: trained on another catalogue ({len(ids):,} ids; {missing:,} of the "
                                  f"{len(item_ids):,} given ids are unknown or the order differs); retrain")
        saved_embedder = manifest.get("text_embedder")
        if text_embedder is not None and config.use_text and text_embedder != saved_embedder:
            raise IndexStateError(f"{root}: text vectors made by {saved_embedder!r}, but {text_embedder!r} "
                                  "is in use; retrain or use the same embedder")
        state = torch.load(root / "model.pt", map_location="cpu", weights_only=True)
        text = state["text"][1:].numpy() if config.use_text and "text" in state else None
        model = cls(ids, config, text, saved_embedder, backend)
        try:
            model.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise IndexStateError(f"{root}: weights do not match config.json ({exc})") from exc
        return model


class SequentialGenerator(CandidateGenerator):
    """Candidates from the sequential model: one index search per batch of users, seen items dropped.

    Users with an empty history get popularity candidates (source "popularity").

    Args:
        model: a trained SequentialModel.
        histories: user → events, oldest first (the model's input sequences).
    """

    name = "sequential"

    def __init__(self, model: SequentialModel, histories: Mapping[str, Sequence[Event]]) -> None:
        self.model, self.histories = model, histories
        self.popularity = PopularityGenerator(histories)

    def _history(self, user: str) -> Sequence[Event]:
        try:
            return self.histories[user]
        except KeyError:
            raise UnknownUserError(f"unknown user {user!r} ({len(self.histories):,} users known)") from None

    def generate_batch(self, users: Sequence[str], k: int) -> list[list[Candidate]]:
        events = [self._history(u) for u in users]
        queries = self.model.encode(events)
        seen = [{ev.item for ev in evs} for evs in events]
        index = self.model.index
        scores, rows = index.search_rows(queries, k + max((len(s) for s in seen), default=0))
        out: list[list[Candidate]] = []
        for user, evs, seen_u, s_row, r_row in zip(users, events, seen, scores, rows, strict=True):
            if not evs:
                out.append(self.popularity.generate(user, k))
                continue
            picks = [Candidate(index.ids[r], s, self.name) for s, r in zip(s_row.tolist(), r_row.tolist(), strict=True)
                     if r >= 0 and index.ids[r] not in seen_u]
            out.append(picks[:k])
        return out
