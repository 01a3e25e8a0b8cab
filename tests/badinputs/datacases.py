"""Data-file cases: each supported format written from the base data, then with one kind of bad input.

Every generated dataset is run four ways: loaded through the API in skip and in raise mode (the silent-loss
check: rows loaded + rows reported = rows written, counted from what the generator wrote), `driftrec index
--on-error skip`, and `driftrec recommend` (raise mode, the one-line `file:line` error).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.badinputs.formats import (
    FORMATS,
    BaseEvent,
    BaseItem,
    Raw,
    Variant,
    event_probe,
    item_probe,
    write_dataset,
    write_sequences,
)
from tests.badinputs.spec import Case

BOM = b"\xef\xbb\xbf"
TS = 881250949
VariantFn = Callable[[list[BaseItem], list[BaseEvent]], Variant]


def _bad_events(rows: list[str | bytes], why: str, at: int = 50) -> Variant:
    return Variant(event_raws=[(at + 7 * n, Raw(r, bad=why)) for n, r in enumerate(rows)])


def _ml100k(items: list[BaseItem], events: list[BaseEvent]) -> dict[str, VariantFn]:
    f = FORMATS["ml100k"]
    long_title = "x" * (200 * 1024)
    huge_user = "9" * 5000
    return {
        "control": lambda i, e: Variant(item_probe=[0, 50], event_probe=[0, 500]),
        "bom_events": lambda i, e: Variant(event_head=BOM, event_probe=[0]),
        "bom_items": lambda i, e: Variant(item_head=BOM, item_probe=[0]),
        "crlf": lambda i, e: Variant(line_end="\r", item_probe=[5], event_probe=[5]),
        "truncated_last_line": lambda i, e: Variant(event_tail=Raw("7\t3", bad="truncated last line", end=b"")),
        "wrong_field_count": lambda i, e: _bad_events(["1\t2\t3", f"1\t2\t3\t{TS}\t9"], "wrong field count"),
        "nul_in_user": lambda i, e: _bad_events([f"1\x002\t5\t3\t{TS}"], "NUL byte in user id"),
        "nan_rating": lambda i, e: _bad_events([f"1\t7\tnan\t{TS}"], "NaN rating"),
        "inf_rating": lambda i, e: _bad_events([f"1\t7\tinf\t{TS}"], "infinite rating"),
        "negative_rating": lambda i, e: Variant(event_raws=[(50, Raw(f"1\t9\t-3\t{TS}", probe=event_probe(
            BaseEvent("1", "9", -3, TS), "faithful_or_reported", rating=-3.0)))]),
        "timestamp_out_of_range": lambda i, e: _bad_events(
            ["1\t7\t3\t99999999999999", "1\t7\t3\t-5", "1\t7\t3\t1e30", "1\t7\t3\tnan"], "timestamp out of range"),
        "huge_user_id": lambda i, e: Variant(event_raws=[(50, Raw(f"{huge_user}\t1\t3\t{TS}", probe=event_probe(
            BaseEvent(huge_user, "1", 3, TS), "faithful_or_reported")))]),
        "unknown_item": lambda i, e: _bad_events([f"1\t99999\t3\t{TS}"], "unknown item id"),
        "duplicate_item": lambda i, e: Variant(item_raws=[(50, Raw(f.item(i[3]), bad="duplicate item id"))]),
        "bad_genre_flags": lambda i, e: Variant(item_raws=[(50, Raw(
            f.item(BaseItem("101", "Eighteen Flags (1999)", "", ())).rsplit("|", 1)[0], bad="18 genre flags"))]),
        "title_200k": lambda i, e: Variant(item_raws=[(50, Raw(
            f.item(BaseItem("101", long_title, "", ("Drama",))),
            probe=item_probe(BaseItem("101", long_title, "", ()), "faithful_or_reported")))]),
        "latin1_title": lambda i, e: Variant(item_raws=[(50, Raw(
            f.item(BaseItem("101", "Café Olé (1999)", "", ("Drama",))).encode("latin-1"),
            probe=item_probe(BaseItem("101", "Café Olé (1999)", "", ()))))]),
        "zero_events": lambda i, e: Variant(empty_events=True, refusable=True),
        "blank_lines_only": lambda i, e: Variant(event_head=b"\n  \n\t\n", no_events=True, refusable=True),
        "empty_items": lambda i, e: Variant(empty_items=True, refusable=True),
        "thirty_bad_rows": lambda i, e: Variant(event_raws=[
            (10 + 25 * n, Raw(f"1\t2\t{n}", bad="wrong field count")) for n in range(30)]),
    }


def _dat(items: list[BaseItem], events: list[BaseEvent]) -> dict[str, VariantFn]:
    return {
        "control": lambda i, e: Variant(item_probe=[0, 50], event_probe=[0, 500]),
        "title_with_separator": lambda i, e: Variant(item_raws=[(50, Raw("101::Foo::Bar (1999)::Drama",
                                                                         bad="'::' inside a title"))]),
        "truncated_last_line": lambda i, e: Variant(event_tail=Raw("1::2", bad="truncated last line", end=b"")),
        "non_numeric_rating": lambda i, e: _bad_events([f"1::2::five::{TS}"], "rating 'five'"),
    }


def _mlcsv(items: list[BaseItem], events: list[BaseEvent]) -> dict[str, VariantFn]:
    f = FORMATS["mlcsv"]
    two_lines = BaseItem("101", "Two\nLines (1999)", "", ("Drama",))
    wide = BaseItem("101", "y" * (200 * 1024), "", ("Drama",))
    return {
        "control": lambda i, e: Variant(item_probe=[0, 50], event_probe=[0, 500]),
        "bom_items": lambda i, e: Variant(item_head=BOM + b"movieId,title,genres\n", item_probe=[0]),
        "bom_events": lambda i, e: Variant(event_head=BOM + b"userId,movieId,rating,timestamp\n", event_probe=[0]),
        "quoted_newline_title": lambda i, e: Variant(item_raws=[(50, Raw(f.item(two_lines),
                                                                         probe=item_probe(two_lines)))]),
        "field_200k": lambda i, e: Variant(item_raws=[(50, Raw(f.item(wide), probe=item_probe(
            wide, "faithful_or_reported")))]),
        "wrong_field_count": lambda i, e: _bad_events(["1,2,3", f"1,2,3,{TS},9"], "wrong field count"),
        "unbalanced_quote": lambda i, e: _bad_events([f'1,"2,3,{TS}'], "unbalanced quote"),
        "nul_byte": lambda i, e: _bad_events([f"1,2\x00,3,{TS}"], "NUL byte"),
        "non_utf8_header": lambda i, e: Variant(event_head=b"userId,movieId,rating,timestamp\xff\n",
                                                refusable=True),
        "non_utf8_row": lambda i, e: _bad_events([f"1\xff,2,3,{TS}".encode("latin-1")], "invalid UTF-8"),
        "header_only": lambda i, e: Variant(no_events=True, refusable=True),
        "empty_ratings": lambda i, e: Variant(empty_events=True, refusable=True),
        "nan_rating": lambda i, e: _bad_events([f"1,7,NaN,{TS}"], "NaN rating"),
        "negative_rating": lambda i, e: Variant(event_raws=[(50, Raw(f"1,9,-3,{TS}", probe=event_probe(
            BaseEvent("1", "9", -3, TS), "faithful_or_reported", rating=-3.0)))]),
    }


def _recbole(items: list[BaseItem], events: list[BaseEvent]) -> dict[str, VariantFn]:
    return {
        "control": lambda i, e: Variant(item_probe=[0, 50], event_probe=[0, 500]),
        "nan_rating": lambda i, e: _bad_events([f"1\t7\tnan\t{TS}"], "NaN rating"),
        "wrong_field_count": lambda i, e: _bad_events(["1\t2"], "wrong field count"),
        "missing_item_id_column": lambda i, e: Variant(
            item_head=b"id:token\ttitle:token_seq\tcategories:token_seq\n", refusable=True),
    }


def _csv(items: list[BaseItem], events: list[BaseEvent]) -> dict[str, VariantFn]:
    f = FORMATS["csv"]
    two_lines = BaseItem("101", "Two\nLines (1999)", "", ())
    return {
        "control": lambda i, e: Variant(item_probe=[0, 50], event_probe=[0, 500]),
        "iso_timestamps": lambda i, e: Variant(event_raws=[
            (50, Raw("iso-1,7,2001-09-09T01:46:40+02:00", probe=event_probe(BaseEvent("iso-1", "7", 0, 0)))),
            (51, Raw("iso-2,8,2001-09-09 01:46:40", probe=event_probe(BaseEvent("iso-2", "8", 0, 0))))]),
        "bad_timestamps": lambda i, e: _bad_events(["1,7,yesterday", "1,7,", "1,7,nan", "1,7,-5"],
                                                   "unreadable timestamp"),
        "empty_user": lambda i, e: _bad_events([f",7,{TS}"], "empty user id"),
        "blank_user": lambda i, e: _bad_events([f"   ,7,{TS}"], "blank user id"),
        "field_300k_item_id": lambda i, e: _bad_events([f"1,{'9' * 300 * 1024},{TS}"],
                                                       "300 KiB item id not in the catalogue"),
        "items_without_title_column": lambda i, e: Variant(item_head=b"id,name\n", refusable=True),
        "quoted_newline_title": lambda i, e: Variant(item_raws=[(50, Raw(f.item(two_lines),
                                                                         probe=item_probe(two_lines)))]),
    }


def _jsonl(items: list[BaseItem], events: list[BaseEvent]) -> dict[str, VariantFn]:
    def ev(body: str) -> str:
        return "{" + body + "}"

    deep = "[" * 100_000 + "]" * 100_000
    big = BaseItem("101", "z" * (1 << 20), "", ())
    return {
        "control": lambda i, e: Variant(item_probe=[0, 50], event_probe=[0, 500]),
        "bom_items": lambda i, e: Variant(item_head=BOM, item_probe=[0]),
        "nested_100k_deep": lambda i, e: _bad_events([ev(f'"user": {deep}, "item": "1", "timestamp": {TS}')],
                                               "nested 100,000 levels deep"),
        "user_null": lambda i, e: _bad_events([ev(f'"user": null, "item": "1", "timestamp": {TS}')], "user null"),
        "item_null": lambda i, e: _bad_events([ev(f'"user": "1", "item": null, "timestamp": {TS}')], "item null"),
        "user_list": lambda i, e: _bad_events([ev(f'"user": ["1"], "item": "1", "timestamp": {TS}')], "user is a list"),
        "title_list_dict_null": lambda i, e: Variant(item_raws=[
            (50, Raw('{"id": "101", "title": ["a", "b"]}', bad="title is a list")),
            (51, Raw('{"id": "102", "title": {"x": 1}}', bad="title is an object")),
            (52, Raw('{"id": "103", "title": null}', bad="title null"))]),
        "timestamp_nan_negative_bool": lambda i, e: _bad_events(
            [ev(f'"user": "1", "item": "1", "timestamp": {t}') for t in ("NaN", "-5", "true", "Infinity")],
            "unusable timestamp"),
        "rating_nan": lambda i, e: _bad_events([ev(f'"user": "1", "item": "1", "timestamp": {TS}, "rating": NaN')],
                                         "NaN rating"),
        "nul_in_user": lambda i, e: _bad_events([ev(f'"user": "1\\u00002", "item": "1", "timestamp": {TS}')],
                                          "NUL byte in user id"),
        "array_line": lambda i, e: _bad_events(["[1, 2]"], "a JSON array, not an object"),
        "invalid_json": lambda i, e: _bad_events(['{"user": "1", '], "invalid JSON"),
        "truncated_last_line": lambda i, e: Variant(event_tail=Raw('{"user": "1", "item', bad="truncated",
                                                                   end=b"")),
        "non_utf8": lambda i, e: _bad_events([f'{{"user": "1\xff", "item": "1", "timestamp": {TS}}}'.encode("latin-1")],
                                       "invalid UTF-8"),
        "huge_int_user": lambda i, e: Variant(event_raws=[(50, Raw(ev(f'"user": {"1" * 5000}, "item": "1", '
                                                                      f'"timestamp": {TS}'), odd=True))]),
        "title_1mib": lambda i, e: Variant(item_raws=[(50, Raw(json.dumps({"id": big.id, "title": big.title}),
                                                               probe=item_probe(big, "faithful_or_reported")))]),
        "int_item_id": lambda i, e: Variant(item_raws=[(50, Raw('{"id": 101, "title": "Int Id"}', probe=item_probe(
            BaseItem("101", "Int Id", "", ()), "faithful_or_reported")))]),
    }


BUILDERS = {"ml100k": _ml100k, "dat": _dat, "mlcsv": _mlcsv, "recbole": _recbole, "csv": _csv, "jsonl": _jsonl}


def data_cases(root: Path, items: list[BaseItem], events: list[BaseEvent], user: str,
               features: set[str]) -> list[Case]:
    """Write every dataset under `root/data` and return its four cases each (`user`: the one recommended for)."""
    cases: list[Case] = []
    for fmt_name, builder in BUILDERS.items():
        for variant, make in builder(items, events).items():
            name = f"{fmt_name}.{variant}"
            acc = write_dataset(root / "data" / name, FORMATS[fmt_name], items, events, make(items, events))
            cases += cases_for(name, acc, root, user, features)
    rated = replace(FORMATS["csv"], event_header="user,item,timestamp,rating", rates=True,
                    event=lambda e: f"{e.user},{e.item},{e.ts},{e.rating}")
    acc = write_dataset(root / "data" / "csv.rating_column", rated, items, events, Variant(event_probe=[0, 500]))
    cases += cases_for("csv.rating_column", acc, root, user, features)
    acc = write_sequences(root / "data" / "seq.control", items, events)
    cases += cases_for("seq.control", acc, root, user, features)
    acc = write_sequences(root / "data" / "seq.unknown_item_in_sequence", items, events,
                          [(5, Raw("999\t1 2 99999\t3", records=4, bad="unknown item 99999 in the sequence"))])
    cases += cases_for("seq.unknown_item_in_sequence", acc, root, user, features)
    return cases


def _expected_raise_exits(acc: dict[str, Any]) -> list[int]:
    files = acc["files"].values()
    if acc["refusable"]:
        return [2, 3]
    if any(f["must_report"] for f in files):
        return [2]
    if any(f["may_report"] or any(p["policy"] == "faithful_or_reported" for p in f["probes"]) for f in files):
        return [0, 2]
    return [0]


def cases_for(name: str, acc: dict[str, Any], root: Path, user: str, features: set[str]) -> list[Case]:
    """The four cases of one generated dataset."""
    data = acc["dir"]
    base = ["--data", data, "--embedder", "hashing", "--no-cache"]
    skip_argv = ["index", *base, "--on-error", "skip", "--out", str(root / "out" / f"ix-{name}")]
    checks: list[list[Any]] = []
    if "--skipped-rows" in features:
        tsv = str(root / "out" / f"skipped-{name}.tsv")
        skip_argv += ["--skipped-rows", tsv]
        checks.append(["skipped_rows_file", {"tsv": tsv, "accounting": acc}])
    refusal = [0, 2] if acc["refusable"] else [0]
    return [
        Case(f"data.{name}.load_skip", "data", "data", kind="api", timeout_s=30, api="load", exits=refusal,
             params={"accounting": acc, "on_error": "skip"}, note="rows loaded + rows reported = rows written"),
        Case(f"data.{name}.load_raise", "data", "data", kind="api", timeout_s=30, api="load", exits=[0, 2],
             params={"accounting": acc, "on_error": "raise"}, note="a bad row stops the load with file:line"),
        Case(f"data.{name}.cli_index_skip", "data", "data", argv=skip_argv, timeout_s=30, exits=refusal, checks=checks,
             note="driftrec index --on-error skip"),
        Case(f"data.{name}.cli_recommend", "data", "data", timeout_s=30, exits=_expected_raise_exits(acc),
             argv=["recommend", *base, "--user", user, "-k", "3", "--json"], checks=[["json_items", {"k": 3}]],
             note="driftrec recommend (raise mode)"),
    ]
