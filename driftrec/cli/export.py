"""`driftrec export`: every user's top-k list in one file (CSV, JSONL or a TREC run), retrieval only.

The lists are the ones `RecommenderAgent.recommend(user, k, explain=False)` returns without a reranker
(and so `driftrec recommend --llm none --json -k K`): the same generator depth, seen items excluded and
items whose title the user already rated under another id dropped. They are computed in batches through
`CandidateGenerator.generate_batch`; no LLM runs (the LLM reranks interactive requests, not bulk lists).
The file is written to a temporary name beside the target and renamed into place, so a failed or
interrupted export never leaves a partial file under the target name.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Literal, get_args

from agent.agent import AgentConfig
from agent.limits import MAX_K, check_count, check_user_id
from agent.seen_titles import SeenTitles
from driftrec.cli.options import (
    check_out_path,
    dataset_options,
    load_data,
    make_retriever,
    open_index,
    saved_index_options,
)
from retrieval.candidates.base import Candidate, CandidateGenerator
from retrieval.data.model import Dataset
from retrieval.errors import ConfigError, DataError, UnknownUserError
from retrieval.vectors.store import write_file_atomically

Format = Literal["csv", "jsonl", "trec"]
FORMATS: tuple[Format, ...] = get_args(Format)
# File name endings accepted per format; the first one is named in errors.
SUFFIXES: dict[Format, tuple[str, ...]] = {"csv": (".csv",), "jsonl": (".jsonl", ".json"),
                                           "trec": (".trec", ".run", ".txt")}
RUN_TAG = "driftrec"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `export` subcommand."""
    p = sub.add_parser(
        "export", help="write every user's top-k list to a file (CSV, JSONL or TREC run; retrieval only)",
        description="Bulk top-k lists from the retriever, batched, with no LLM: the LLM reranks interactive "
                    "requests (`recommend --explain`, `chat`), not bulk exports. Each user's list equals "
                    "`driftrec recommend --llm none --json -k K` for that user.")
    dataset_options(p)
    saved_index_options(p)
    p.add_argument("-k", "--k", dest="k", type=int, default=100,
                   help=f"items per user, 1 to {MAX_K:,} (default 100; fewer when fewer are unseen)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="output file, written atomically (temporary file, then rename); an existing file is "
                        "replaced, a directory refused")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="csv (user,rank,item,score,title), jsonl (one object per user) or trec "
                        f"(user Q0 item rank score {RUN_TAG}); default: from the --out suffix")
    p.add_argument("--users", default=None, metavar="FILE_OR_LIST",
                   help="only these users: a file with one id per line, or a comma-separated list "
                        "(default: every user)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N",
                   help="users per generate_batch call (default 256)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `driftrec export`."""
    k = check_count(args.k, "--k")
    batch_size = check_count(args.batch_size, "--batch-size", None)
    fmt = output_format(args.out, args.format)
    out = check_out_path(args.out, "--out", SUFFIXES[fmt])
    requested = parse_users(args.users) if args.users is not None else None
    dataset = load_data(args)
    users = select_users(dataset, requested)
    index = open_index(args, dataset)
    generator = make_retriever(args, dataset, index)
    lists = top_k_lists(dataset, generator, users, k, batch_size, progress=True)
    n = write_atomic(out, lambda f: write_lists(f, fmt, dataset, lists))
    print(f"driftrec: wrote top-{k} lists of {n:,} users to {out} ({fmt})")
    return 0


def output_format(out: Path, given: str | None) -> Format:
    """The --format given, else the one the --out suffix names.

    Raises:
        ConfigError: `out` is a directory; no --format and a suffix that names none.
    """
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory: give a file name")
    if given is not None:
        return given  # type: ignore[return-value]  # argparse checked it against FORMATS
    for fmt, suffixes in SUFFIXES.items():
        if out.suffix.lower() in suffixes:
            return fmt
    raise ConfigError(f"--out {out}: cannot tell the format from the name; pass --format "
                      f"{'|'.join(FORMATS)} or end the name in {', '.join(s[0] for s in SUFFIXES.values())}")


def parse_users(spec: str) -> list[str]:
    """User ids from --users: the lines of a file when `spec` names one, else a comma-separated list.

    Raises:
        ConfigError: the file cannot be read, or it names no user.
    """
    path = Path(spec)
    if path.is_file():
        try:
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--users: cannot read {path} ({exc}); give a UTF-8 file of ids") from None
    else:
        ids = [part.strip() for part in spec.split(",")]
    ids = list(dict.fromkeys(i for i in ids if i))  # blank lines dropped, first occurrence kept
    if not ids:
        raise ConfigError(f"--users {spec!r} names no user: give ids separated by commas or a file of ids")
    return [check_user_id(i) for i in ids]


def select_users(dataset: Dataset, requested: Sequence[str] | None) -> list[str]:
    """The users to export: `requested` in its order, or every user of the dataset.

    Raises:
        UnknownUserError: a requested user is not in the dataset.
    """
    if requested is None:
        return [str(u) for u in dataset.users]
    known = set(dataset.users)
    unknown = [u for u in requested if u not in known]
    if unknown:
        raise UnknownUserError(f"--users names {len(unknown):,} user(s) not in {dataset.name}, e.g. "
                               f"{unknown[0]!r}: check the ids against the data")
    return list(requested)


def top_k_lists(dataset: Dataset, generator: CandidateGenerator, users: Sequence[str], k: int,
                batch_size: int = 256, depth: int | None = None,
                progress: bool = False) -> Iterator[tuple[str, list[Candidate]]]:
    """Each user's top-k list, in `users` order, as `RecommenderAgent.recommend(explain=False)` builds it.

    The generator is asked for exactly the agent's number of candidates per user (`max(depth, k)` plus
    room for other copies of titles the user rated, `agent.seen_titles.SeenTitles`), those copies are
    dropped and the list cut to k: a list is shorter than k only when the user has run out of items.

    Args:
        dataset: catalogue and histories (every user must be in it).
        generator: the candidate generator.
        users: user ids to list.
        k: items per user.
        batch_size: users per `generate_batch` call.
        depth: the agent's retrieval depth (default `AgentConfig().candidates`).
        progress: show a tqdm bar on stderr.

    Returns:
        an iterator of (user id, candidates best first).
    """
    from tqdm import tqdm

    wanted = max(depth if depth is not None else AgentConfig().candidates, k)
    rule = SeenTitles(dataset.catalog)
    with tqdm(total=len(users), unit="user", desc="export", file=sys.stderr, disable=not progress,
              mininterval=0.5) as bar:
        for start in range(0, len(users), batch_size):
            batch = users[start:start + batch_size]
            histories = {u: dataset.history(u) for u in batch}
            # One generate_batch call per depth: the same depth as the agent's single call for each user
            # (a fused retriever's order can depend on it).
            by_depth: dict[int, list[str]] = {}
            for user in batch:
                by_depth.setdefault(rule.depth(histories[user], wanted), []).append(user)
            found: dict[str, list[Candidate]] = {}
            for n, group in by_depth.items():
                lists = generator.generate_batch([histories[u] for u in group], n)
                found.update(zip(group, lists, strict=True))
            for user in batch:
                yield user, rule.keep(histories[user], found[user])[:k]
            bar.update(len(batch))


def write_lists(f: IO[str], fmt: Format, dataset: Dataset, lists: Iterable[tuple[str, list[Candidate]]]) -> int:
    """Write the lists to an open text file in `fmt`; returns the number of users written.

    Scores are rounded to 6 decimals, as `driftrec recommend --json` prints them.

    Raises:
        DataError: a TREC run with a user or item id holding whitespace (the format cannot hold it).
    """
    n = 0
    writer = csv.writer(f, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(("user", "rank", "item", "score", "title"))
    for user, cands in lists:
        n += 1
        if fmt == "jsonl":
            f.write(json.dumps({"user": user, "items": [c.item_id for c in cands],
                                "scores": [round(c.score, 6) for c in cands],
                                "titles": [dataset.catalog[c.item_id].title for c in cands]},
                               ensure_ascii=False) + "\n")
            continue
        for rank, c in enumerate(cands, 1):
            if writer is not None:
                writer.writerow((user, rank, c.item_id, round(c.score, 6), dataset.catalog[c.item_id].title))
            else:
                if any(ch.isspace() for ch in user + c.item_id):
                    raise DataError(f"TREC run format cannot hold ids with whitespace (user {user!r}, item "
                                    f"{c.item_id!r}): export with --format csv or jsonl")
                f.write(f"{user} Q0 {c.item_id} {rank} {round(c.score, 6)} {RUN_TAG}\n")
    return n


def write_atomic(out: Path, write: Callable[[IO[str]], int]) -> int:
    """Run `write` on a temporary file beside `out`, then rename it to `out`; returns what `write` returns.

    Missing parent directories are created. On any error (or Ctrl-C) the temporary file is removed and
    `out` is left as it was.

    Raises:
        ConfigError: `out` is a directory, or the file cannot be written.
    """
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory: give a file name")
    try:
        return write_file_atomically(out, write, newline="")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc}); give a writable path") from None
