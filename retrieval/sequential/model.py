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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrieval import __version__
from retrieval.candidates.base import Candidate, CandidateGenerator, Evidence, History, top_evidence
from retrieval.data.model import Event
from retrieval.errors import IndexStateError, LeakageError
from retrieval.sequential.config import SeqConfig
from retrieval.sequential.network import SASRecNet
from retrieval.vectors.fingerprint import events_fingerprint
from retrieval.vectors.index import VectorIndex
from retrieval.vectors.store import verify_files, write_atomically

FORMAT = "driftrec-sequential/1"
_FILES = ("model.pt", "ids.json", "config.json")


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
        # What it was trained on (`events_fingerprint`), set by `train` and saved in the manifest.
        self.trained_on: dict[str, Any] | None = None

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

    def masking_drops(self, histories: Sequence[Sequence[Event]],
                      item_ids: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Attribution by removal: how much each item's score falls when one history event is removed.

        Only the newest `max_len` events can matter (older ones are outside the model's window); each
        of them is removed in turn, and all users' shortened sequences are encoded in one batch.

        Args:
            histories: per user, events oldest first.
            item_ids: per user, the items to attribute.

        Returns:
            per user, (event positions (w,) int64 into the history, drops (w, len(ids)) float32): the
            full sequence's score minus the score without that event (negative = the event hurt it).
        """
        seqs: list[tuple[np.ndarray, np.ndarray]] = []
        spans = []
        for events in histories:
            rows, secs = self.arrays(events)
            window = np.arange(max(0, len(rows) - self.config.max_len), len(rows))
            spans.append((len(seqs), window))
            seqs.append((rows, secs))
            seqs.extend((np.delete(rows, e), np.delete(secs, e)) for e in window.tolist())
        queries = self.encode_arrays(seqs) if seqs else np.zeros((0, self.config.hidden), np.float32)
        index = self.index
        out = []
        for (first, window), ids in zip(spans, item_ids, strict=True):
            vecs = index.vectors[index.rows(list(ids))] if ids else np.zeros((0, self.config.hidden), np.float32)
            scores = queries[first:first + 1 + len(window)] @ vecs.T  # (1 + w, len(ids))
            out.append((window, (scores[:1] - scores[1:]).astype(np.float32)))
        return out

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
                    "hidden": self.config.hidden, "text_dim": text_dim, "text_embedder": self.text_embedder,
                    "trained_on": self.trained_on}
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
        trained_on = manifest.get("trained_on")
        model.trained_on = trained_on if isinstance(trained_on, dict) else None
        return model

    def check_trained_on(self, histories: Mapping[str, Sequence[Event]], where: str = "the model") -> None:
        """Refuse to evaluate on a split whose training events differ from the ones this model learned from.

        A model trained on another split (e.g. leave-one-out, then evaluated on a temporal split) or
        another dataset may have seen the evaluation's held-out events.

        Raises:
            LeakageError: the model records other training events, or none (saved before they were recorded).
        """
        expected = events_fingerprint(histories)
        if self.trained_on is None:
            raise LeakageError(f"{where} does not record what it was trained on, so it cannot be checked "
                               "against this split; retrain it with `driftrec train`")
        if self.trained_on.get("sha256") != expected["sha256"]:
            raise LeakageError(
                f"{where} was trained on other events ({self.trained_on.get('events')} events of "
                f"{self.trained_on.get('users')} users) than this split's training data ({expected['events']} "
                f"events of {expected['users']} users): it may have seen held-out events; retrain it on "
                "this dataset and split")


class SequentialGenerator(CandidateGenerator):
    """Candidates from the sequential model: one index search per batch of histories, seen items dropped.

    Empty histories get the `popularity` generator's candidates (source "popularity"), or none when
    no popularity generator is given.

    Args:
        model: a trained SequentialModel.
        popularity: fallback for empty histories (e.g. `PopularityGenerator(training histories)`).
    """

    name = "sequential"

    def __init__(self, model: SequentialModel, popularity: CandidateGenerator | None = None) -> None:
        self.model, self.popularity = model, popularity

    def cache_key(self) -> str:
        """The model's weights fingerprint: identifies it in the hybrid's stored fusion choice."""
        return self.model.fingerprint()

    def generate_batch(self, histories: Sequence[History], k: int) -> list[list[Candidate]]:
        events = list(histories)
        queries = self.model.encode(events)
        seen = [{ev.item for ev in evs} for evs in events]
        index = self.model.index
        scores, rows = index.search_rows(queries, k + max((len(s) for s in seen), default=0))
        out: list[list[Candidate]] = []
        for evs, seen_u, s_row, r_row in zip(events, seen, scores, rows, strict=True):
            if not evs:
                out.append(self.popularity.generate(evs, k) if self.popularity is not None else [])
                continue
            picks = [Candidate(index.ids[r], s, self.name) for s, r in zip(s_row.tolist(), r_row.tolist(), strict=True)
                     if r >= 0 and index.ids[r] not in seen_u]
            out.append(picks[:k])
        return out

    def evidence_batch(self, histories: Sequence[History],
                       item_ids: Sequence[Sequence[str]]) -> list[list[tuple[Evidence, ...]]]:
        """Sequence evidence: the score drop of each item when one history event is removed (`masking_drops`)."""
        out = []
        for events, ids, (window, drops) in zip(histories, item_ids,
                                               self.model.masking_drops(histories, item_ids), strict=True):
            row = []
            for j in range(len(ids)):
                per: dict[str, float] = {}
                for pos, d in zip(window.tolist(), drops[:, j].tolist(), strict=True):
                    if d > 0:
                        per[events[pos].item] = per.get(events[pos].item, 0.0) + d
                row.append(top_evidence(per, self.name, "sequence"))
            out.append(row)
        return out
