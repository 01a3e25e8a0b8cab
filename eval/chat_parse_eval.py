"""Request understanding: how well the chat parsers turn messages into `ChatRequest`s.

    python -m eval.chat_parse_eval                                           # the deterministic parser
    python -m eval.chat_parse_eval --llm embedded --llm-model smollm2-135m --out parse.json

Reads `tests/data/chat_requests.jsonl` (messages over ml-100k and Games with their gold parse, written by
`tests/data/make_chat_requests.py`). Each message's parse and gold become sets of (field, value) facts
(`ChatRequest.facts()`); precision, recall and F1 are micro-averaged over all facts and per field, with a
bootstrap 95% interval over messages for F1. Exact match = the share of messages whose facts equal the
gold's. With `--llm`, the deterministic parser and the parser + LLM (`agent.chat.llm_parse.parse_request`)
run side by side, with the share of messages where the LLM's parse was used. Latency is per message.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval.metrics import bootstrap_ci

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chat_requests.jsonl"
FIELDS = ("intent", "include", "exclude", "lift", "year_start", "year_end", "relative_years", "include_seen",
          "reference", "position", "preference", "k")
Fact = tuple[str, str]


@dataclass(frozen=True)
class Row:
    """One test message: its dataset, template, text and gold request (a `ChatRequest`)."""

    dataset: str
    template: str
    message: str
    gold: Any


def load_rows(path: Path = DEFAULT_DATA) -> list[Row]:
    """The test messages; every gold is validated as a `ChatRequest`.

    Raises:
        DataError: a line is not JSON or its gold is not a valid `ChatRequest`.
    """
    from pydantic import ValidationError

    from agent.chat.request import ChatRequest
    from retrieval.errors import DataError

    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append(Row(d["dataset"], d.get("template", ""), d["message"], ChatRequest.model_validate(d["gold"])))
        except (json.JSONDecodeError, KeyError, ValidationError) as exc:
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise DataError(f"{path}:{n}: not a chat request row ({why})") from None
    return rows


@dataclass(frozen=True)
class FieldScore:
    """Counts and scores of one field (or all fields together)."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision, "recall": self.recall,
                "f1": self.f1}


def counts(gold: Sequence[set[Fact]], pred: Sequence[set[Fact]]) -> np.ndarray:
    """Per message and field: (n_messages, n_fields, 3) int counts of true positives, false positives, misses.

    Args:
        gold: per message, the gold facts.
        pred: per message, the predicted facts.
    """
    col = {f: i for i, f in enumerate(FIELDS)}
    out = np.zeros((len(gold), len(FIELDS), 3), dtype=np.int64)
    for m, (g, p) in enumerate(zip(gold, pred, strict=True)):
        for fact in g & p:
            out[m, col[fact[0]], 0] += 1
        for fact in p - g:
            out[m, col[fact[0]], 1] += 1
        for fact in g - p:
            out[m, col[fact[0]], 2] += 1
    return out


def score(gold: Sequence[set[Fact]], pred: Sequence[set[Fact]]) -> tuple[FieldScore, dict[str, FieldScore], float]:
    """Micro-averaged score over all facts, per-field scores, and the exact-match share.

    Args:
        gold: per message, the gold facts.
        pred: per message, the predicted facts.
    """
    c = counts(gold, pred)
    total = c.sum(axis=(0, 1))
    per_field = {f: FieldScore(*map(int, c[:, i].sum(axis=0))) for i, f in enumerate(FIELDS)
                 if c[:, i].sum() > 0}
    exact = float(np.mean([g == p for g, p in zip(gold, pred, strict=True)])) if gold else float("nan")
    return FieldScore(*map(int, total)), per_field, exact


def f1_ci(gold: Sequence[set[Fact]], pred: Sequence[set[Fact]], n_boot: int = 1000, seed: int = 0,
          level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the micro F1, resampling messages.

    Args:
        gold, pred: per message, the gold and predicted facts.
        n_boot: resamples.
        seed: generator seed.
        level: confidence level.
    """
    per_msg = counts(gold, pred).sum(axis=1)  # (n_messages, 3)
    if len(per_msg) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_msg), size=(n_boot, len(per_msg)))
    sums = per_msg[idx].sum(axis=1)  # (n_boot, 3)
    denom = 2 * sums[:, 0] + sums[:, 1] + sums[:, 2]
    f1 = np.where(denom > 0, 2 * sums[:, 0] / np.maximum(denom, 1), np.nan)
    alpha = (1 - level) / 2
    low, high = np.nanquantile(f1, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_f1_diff(gold: Sequence[set[Fact]], pred_a: Sequence[set[Fact]], pred_b: Sequence[set[Fact]],
                   n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Micro F1 of b minus that of a on the same messages, with a paired percentile bootstrap interval
    (both parsers resampled with the same message indices).

    Args:
        gold: per message, the gold facts.
        pred_a, pred_b: per message, the facts of each parser.
    """
    def f1(sums: np.ndarray) -> np.ndarray:  # (..., 3) tp, fp, fn
        denom = 2 * sums[..., 0] + sums[..., 1] + sums[..., 2]
        return np.where(denom > 0, 2 * sums[..., 0] / np.maximum(denom, 1), np.nan)

    a, b = counts(gold, pred_a).sum(axis=1), counts(gold, pred_b).sum(axis=1)  # (n_messages, 3)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    diffs = f1(b[idx].sum(axis=1)) - f1(a[idx].sum(axis=1))
    alpha = (1 - level) / 2
    low, high = np.nanquantile(diffs, [alpha, 1 - alpha])
    return {"diff": float(f1(b.sum(axis=0)) - f1(a.sum(axis=0))), "ci95_low": float(low), "ci95_high": float(high)}


@dataclass(frozen=True)
class Parsed:
    """One parse of one message."""

    facts: frozenset[Fact]
    latency_s: float
    llm_used: bool = False
    fallback: bool = False
    error: str | None = None


def run_parser(rows: Sequence[Row], parse: Callable[[Row], Any], desc: str) -> list[Parsed]:
    """Parse every message with `parse(row)` (a `ChatRequest` or a `ParsedMessage`), timing each."""
    out = []
    for row in tqdm(rows, desc=desc, unit="msg"):
        start = time.perf_counter()
        got = parse(row)
        elapsed = time.perf_counter() - start
        request = getattr(got, "request", got)
        out.append(Parsed(frozenset(request.facts()), elapsed, bool(getattr(got, "llm_used", False)),
                          bool(getattr(got, "fallback", False)), getattr(got, "error", None)))
    return out


def summarize(rows: Sequence[Row], parsed: Sequence[Parsed], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Scores of one parser: overall, per field, per dataset, exact match, LLM share, latency."""
    gold = [set(r.gold.facts()) for r in rows]
    pred = [set(p.facts) for p in parsed]
    total, per_field, exact = score(gold, pred)
    ex = np.array([g == p for g, p in zip(gold, pred, strict=True)], dtype=np.float64)
    lat = np.array([p.latency_s for p in parsed])
    by_dataset = {}
    for name in sorted({r.dataset for r in rows}):
        keep = [i for i, r in enumerate(rows) if r.dataset == name]
        t, _, e = score([gold[i] for i in keep], [pred[i] for i in keep])
        by_dataset[name] = {"messages": len(keep), "f1": t.f1, "exact_match": e}
    return {
        "messages": len(rows), **{k: v for k, v in total.as_dict().items()},
        "f1_ci95": f1_ci(gold, pred, n_boot, seed), "exact_match": exact,
        "exact_match_ci95": bootstrap_ci(ex, n_boot, seed),
        "per_field": {f: s.as_dict() for f, s in per_field.items()}, "by_dataset": by_dataset,
        "llm_used": float(np.mean([p.llm_used for p in parsed])) if parsed else float("nan"),
        "llm_fallback": float(np.mean([p.fallback for p in parsed])) if parsed else float("nan"),
        "latency_p50_ms": float(np.percentile(lat, 50) * 1000) if len(lat) else float("nan"),
        "latency_p95_ms": float(np.percentile(lat, 95) * 1000) if len(lat) else float("nan"),
    }


def failures(rows: Sequence[Row], parsed: Sequence[Parsed], top: int = 12) -> list[dict[str, Any]]:
    """The most common wrong facts (missed or extra, by field) with an example message each."""
    seen: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    for row, p in zip(rows, parsed, strict=True):
        g = row.gold.facts()
        for kind, facts in (("missed", g - p.facts), ("extra", p.facts - g)):
            for fact in facts:
                key = (kind, fact[0])
                seen[key] += 1
                example.setdefault(key, f"{row.message!r} {kind} {fact}")
    return [{"kind": k, "field": f, "count": n, "example": example[(k, f)]} for (k, f), n in seen.most_common(top)]


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """One column per parser: overall and per-field F1, exact match, LLM share, latency."""
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |")

    row("messages", lambda r: str(r["messages"]))
    row("micro F1 [95% CI]", lambda r: f"{r['f1']:.3f} [{r['f1_ci95'][0]:.3f}, {r['f1_ci95'][1]:.3f}]")
    row("precision / recall", lambda r: f"{r['precision']:.3f} / {r['recall']:.3f}")
    row("exact match", lambda r: f"{100 * r['exact_match']:.1f}%")
    def dataset_cell(r: dict[str, Any], n: str) -> str:
        d = r["by_dataset"].get(n)
        return f"{d['f1']:.3f} / {100 * d['exact_match']:.1f}%" if d else "–"

    def field_cell(r: dict[str, Any], f: str) -> str:
        s = r["per_field"].get(f)
        return f"{s['f1']:.2f} ({s['precision']:.2f}/{s['recall']:.2f})" if s else "–"

    for name in sorted({d for r in results.values() for d in r["by_dataset"]}):
        row(f"F1 / exact, {name}", lambda r, n=name: dataset_cell(r, n))  # type: ignore[misc]
    for f in FIELDS:
        row(f"F1 {f} (P/R)", lambda r, f=f: field_cell(r, f))  # type: ignore[misc]
    row("LLM parse used", lambda r: f"{100 * r['llm_used']:.1f}%")
    row("latency p50 / p95 (ms)", lambda r: f"{r['latency_p50_ms']:.1f} / {r['latency_p95_ms']:.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.chat_parse_eval", description=__doc__.split("\n")[0])
    p.add_argument("--data-file", type=Path, default=DEFAULT_DATA, help="JSONL test messages with gold parses")
    p.add_argument("--dataset", default=None, choices=("ml-100k", "games"), help="only this dataset's messages")
    p.add_argument("--limit", type=int, default=None, help="first N messages only")
    p.add_argument("--sample", type=int, default=None, help="a seeded random sample of N messages (slow LLMs)")
    p.add_argument("--llm", default="none", help="LLM backend for the parser + LLM column ('none' = rules only)")
    p.add_argument("--llm-model", default=None, help="packaged model name or GGUF path (embedded), served name")
    p.add_argument("--llm-url", default=None)
    p.add_argument("--llm-timeout", type=float, default=60.0)
    p.add_argument("--mode", default="rules+llm", choices=("auto", "rules+llm"),
                   help="parse_request mode of the LLM column")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from agent.chat.parse import parse_message
    from agent.chat.vocabulary import CatalogVocabulary
    from retrieval.data.datasets import load_dataset

    rows = load_rows(args.data_file)
    if args.dataset:
        rows = [r for r in rows if r.dataset == args.dataset]
    rows = rows[: args.limit] if args.limit else rows
    if args.sample is not None and args.sample < len(rows):
        keep = sorted(random.Random(args.seed).sample(range(len(rows)), args.sample))
        rows = [rows[i] for i in keep]
    vocabs = {}
    for name in sorted({r.dataset for r in rows}):
        ds = load_dataset(name)
        vocabs[name] = CatalogVocabulary(ds.catalog, ds.item_popularity())
    def rules(r: Row) -> Any:
        return parse_message(r.message, vocabs[r.dataset])

    parsers: dict[str, Callable[[Row], Any]] = {"rules": rules}
    model = None
    if args.llm != "none":
        from agent.chat.llm_parse import parse_request
        from agent.llm import LLMSettings, make_client

        client = make_client(LLMSettings(backend=args.llm, model=args.llm_model, base_url=args.llm_url,
                                         timeout_s=args.llm_timeout))
        model = args.llm_model or getattr(client, "model_id", args.llm)
        def with_llm(r: Row) -> Any:
            return parse_request(client, r.message, vocabs[r.dataset], args.mode)

        parsers[f"rules+llm ({model})"] = with_llm
    results, fails, per_message, facts = {}, {}, {}, {}
    for name, parse in parsers.items():
        parsed = run_parser(rows, parse, name)
        facts[name] = [set(q.facts) for q in parsed]
        results[name] = summarize(rows, parsed, args.n_boot, args.seed)
        fails[name] = failures(rows, parsed)
        per_message[name] = [{"message": r.message, "dataset": r.dataset, "template": r.template,
                              "missed": sorted(map(list, r.gold.facts() - q.facts)),
                              "extra": sorted(map(list, q.facts - r.gold.facts())), **{
                                  k: v for k, v in asdict(q).items() if k != "facts"}} for r, q in zip(rows, parsed,
                                                                                                      strict=True)]
    print(f"Request understanding on {len(rows)} messages ({args.data_file.name})\n")
    print(markdown(results))
    paired = None
    if len(facts) == 2:
        gold = [set(r.gold.facts()) for r in rows]
        base, other = list(facts)
        paired = paired_f1_diff(gold, facts[base], facts[other], args.n_boot, args.seed)
        print(f"\nF1 {other} − {base}: {paired['diff']:+.3f} [{paired['ci95_low']:+.3f}, {paired['ci95_high']:+.3f}] "
              "(paired bootstrap over messages)")
    for name, top in fails.items():
        print(f"\nmost common errors, {name}:")
        for f in top[:8]:
            print(f"  {f['count']:4d} {f['kind']:6s} {f['field']:14s} e.g. {f['example']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"data_file": str(args.data_file), "llm_model": model, "results": results,
                  "paired_f1_diff": paired, "top_errors": fails, "messages": per_message}
        args.out.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
