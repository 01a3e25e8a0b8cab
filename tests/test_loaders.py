from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from retrieval.data.datasets import load_dataset, locate_ml100k
from retrieval.data.loaders import (
    ColumnMap,
    ItemColumnMap,
    load_csv,
    load_dataframe,
    load_movielens_100k,
    load_movielens_csv,
    load_movielens_dat,
    load_recbole,
)
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import DataError, DatasetNotFoundError, EmptyDatasetError, UnknownUserError


def test_ml100k_real(ml100k_path: Path) -> None:
    ds = load_movielens_100k(ml100k_path)
    assert len(ds.catalog) == 1682 and len(ds.users) == 943 and ds.n_events == 100_000
    assert ds.catalog["1"].title == "Toy Story (1995)"
    assert ds.catalog["1"].categories == ("Animation", "Children's", "Comedy")
    h = ds.history("196")
    assert all(a.timestamp <= b.timestamp for a, b in pairwise(h))
    assert h[0].timestamp.tzinfo is not None and h[0].action == "rate"
    assert not ds.synthetic_time and not ds.report.skipped
    assert repr(ds.catalog) == "<Catalog 1,682 items>"


def test_ml100k_ties_keep_file_order(ml100k_path: Path) -> None:
    ds = load_movielens_100k(ml100k_path)
    raw = [line.split("\t") for line in (ml100k_path / "u.data").read_text().splitlines()]
    for user in ("1", "196", "405"):
        mine = [(r[1], int(r[3])) for r in raw if r[0] == user]
        expected = [i for i, _ in sorted(mine, key=lambda x: x[1])]  # stable: ties in file order
        assert [e.item for e in ds.history(user)] == expected


def test_games_real(games_path: Path) -> None:
    ds = load_recbole(games_path, "Games-6k")
    assert len(ds.catalog) == 16_859 and len(ds.users) == 50_546 and ds.n_events == 440_264
    assert ds.synthetic_time
    h = ds.history("0")
    assert [e.item for e in h] == [str(i) for i in range(15)]
    assert all(e.synthetic_time for e in h)
    assert ds.catalog["0"].title == "Fire Emblem: The Sacred Stones"


def _ml_dir(tmp_path: Path, items: str, data: str, item_bytes: bytes | None = None) -> Path:
    (tmp_path / "u.item").write_bytes(item_bytes if item_bytes is not None else items.encode("latin-1"))
    (tmp_path / "u.data").write_text(data)
    return tmp_path


GOOD_ITEM = "1|Toy Story (1995)|01-Jan-1995||url|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
GOOD_ITEM2 = "2|GoldenEye (1995)|01-Jan-1995||url|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"


@pytest.mark.parametrize(("items", "data", "line_file", "reason"), [
    (GOOD_ITEM, "1\t1\t5\t881250949\n1\t2\n", "u.data:2", "malformed row"),
    (GOOD_ITEM, "1\t1\t5\t881250949\n1\t99\t3\t881250949\n", "u.data:2", "unknown item id"),
    (GOOD_ITEM + GOOD_ITEM.replace("Toy Story", "Other"), "1\t1\t5\t881250949\n", "u.item:2", "duplicate item id"),
    (GOOD_ITEM + "2|   |01-Jan-1995||url|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n", "1\t1\t5\t881250949\n",
     "u.item:2", "empty title"),
    (GOOD_ITEM, "1\t1\t5\t881250949\n1\t1\t5\t99999999999\n", "u.data:2", "out of range"),
    (GOOD_ITEM, "1\t1\t5\t881250949\n1\t1\t5\t-5\n", "u.data:2", "out of range"),
    (GOOD_ITEM, "1\t1\tfive\t881250949\n", "u.data:1", "invalid"),
])
def test_bad_rows_raise_naming_file_and_line(tmp_path: Path, items: str, data: str, line_file: str,
                                             reason: str) -> None:
    root = _ml_dir(tmp_path, items, data)
    with pytest.raises(DataError) as err:
        load_movielens_100k(root)
    assert line_file in str(err.value) and reason in str(err.value)


def test_skip_reports_every_row(tmp_path: Path) -> None:
    data = "1\t1\t5\t881250949\n1\t2\n1\t99\t3\t881250949\n2\t1\t4\t-1\n2\t1\t4\t881250950\n"
    root = _ml_dir(tmp_path, GOOD_ITEM + GOOD_ITEM.replace("Toy Story", "Dup"), data)
    ds = load_movielens_100k(root, on_error="skip")
    assert ds.n_events == 2
    reasons = ds.report.reasons()
    assert reasons == {"malformed row": 1, "unknown item id": 1, "invalid value": 1, "duplicate item id": 1}
    where = sorted((Path(s.file).name, s.line, s.kind) for s in ds.report.skipped)
    assert where == [("u.data", 2, "malformed row"), ("u.data", 3, "unknown item id"),
                     ("u.data", 4, "invalid value"), ("u.item", 2, "duplicate item id")]
    assert "4 skipped" in ds.report.summary()


def test_bad_encoding(tmp_path: Path) -> None:
    root = tmp_path
    (root / "events.csv").write_bytes(b"user,item,timestamp\nu1,a,1000000\nu1,a,\xff\xfe1000\n")
    (root / "items.csv").write_text("id,title\na,Alpha\n")
    with pytest.raises(DataError, match=r"events.csv:3: bad encoding"):
        load_csv(root / "events.csv", root / "items.csv")
    ds = load_csv(root / "events.csv", root / "items.csv", on_error="skip")
    assert ds.n_events == 1 and ds.report.skipped[0].line == 3


def test_movielens_dat_and_csv(tmp_path: Path) -> None:
    dat = tmp_path / "ml1m"
    dat.mkdir()
    (dat / "movies.dat").write_text("1::Toy Story (1995)::Animation|Children's|Comedy\n2::Heat (1995)::Action\n",
                                    encoding="latin-1")
    (dat / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978300761\n")
    ds = load_movielens_dat(dat)
    assert ds.n_events == 2 and ds.catalog["1"].categories == ("Animation", "Children's", "Comedy")
    csvd = tmp_path / "mlcsv"
    csvd.mkdir()
    (csvd / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story, The (1995)",Comedy|Drama\n')
    (csvd / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.5,964982703\n")
    ds2 = load_movielens_csv(csvd)
    assert ds2.catalog["1"].title == "Toy Story, The (1995)" and ds2.history("7")[0].rating == 4.5
    assert load_dataset(csvd).n_events == 1 and load_dataset(dat).n_events == 2


def test_recbole_with_timestamps(tmp_path: Path) -> None:
    (tmp_path / "toy.item").write_text("item_id:token\ttitle:token_seq\na\tAlpha\nb\tBeta\n")
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\tb\t200\nu\ta\t100\n")
    ds = load_recbole(tmp_path)
    assert [e.item for e in ds.history("u")] == ["a", "b"] and not ds.synthetic_time


def test_jsonl_and_dataframe(tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text('{"sku": "x", "name": "Xylophone", "tags": "music,toys"}\n')
    (tmp_path / "events.jsonl").write_text(
        '{"uid": 1, "sku": "x", "ts": "2024-05-01T10:00:00", "kind": "purchase"}\n{not json}\n')
    cmap = ColumnMap(user="uid", item="sku", timestamp="ts", action="kind")
    imap = ItemColumnMap(id="sku", title="name", categories="tags")
    with pytest.raises(DataError, match="events.jsonl:2: malformed row"):
        load_csv(tmp_path / "events.jsonl", tmp_path / "items.jsonl", cmap, imap)
    ds = load_csv(tmp_path / "events.jsonl", tmp_path / "items.jsonl", cmap, imap, on_error="skip")
    ev = ds.history("1")[0]
    assert ev.action == "purchase" and ev.timestamp == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert ds.catalog["x"].categories == ("music", "toys")
    events = pd.DataFrame({"uid": [1, 1], "sku": ["x", "nope"], "ts": [1_700_000_000, 1_700_000_001],
                           "kind": ["view", "view"]})
    items = pd.DataFrame({"sku": ["x"], "name": ["Xylophone"], "tags": [""]})
    with pytest.raises(DataError, match="unknown item id"):
        load_dataframe(events, items, cmap, imap)
    assert load_dataframe(events, items, cmap, imap, on_error="skip").report.reasons() == {"unknown item id": 1}


def test_missing_column_and_bad_action(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,title\na,Alpha\n")
    (tmp_path / "events.csv").write_text("user,item\nu,a\n")
    with pytest.raises(DataError, match="missing column 'timestamp'"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv")
    (tmp_path / "events.csv").write_text("user,item,timestamp,action\nu,a,1000,teleport\n")
    with pytest.raises(DataError, match="events.csv:2: invalid action"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv", ColumnMap(action="action"))


def test_containers_validate() -> None:
    with pytest.raises(ValueError):
        Event(user="u", item="i", timestamp=datetime(2020, 1, 1))  # naive
    with pytest.raises(ValueError):
        Item(id="a", title="  ")
    with pytest.raises(DataError, match="duplicate item id"):
        Catalog([Item(id="a", title="A"), Item(id="a", title="B")])
    with pytest.raises(DataError, match="unknown item id"):
        Dataset(Catalog([Item(id="a", title="A")]),
                [Event(user="u", item="b", timestamp=datetime(2020, 1, 1, tzinfo=UTC))])
    ds = Dataset(Catalog([Item(id="a", title="A")]), [])
    with pytest.raises(UnknownUserError):
        ds.history("ghost")


def test_locate(tmp_path: Path, ml100k_path: Path) -> None:
    assert locate_ml100k(ml100k_path) == ml100k_path
    with pytest.raises(DatasetNotFoundError, match="no u.data"):
        locate_ml100k(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="not a known dataset"):
        load_dataset(tmp_path / "nowhere")


# --- Bad input that must never crash a loader or lose a row silently -------------------------------

BOM = b"\xef\xbb\xbf"


def _accounted(ds: Dataset, written: int | None = None) -> None:
    """rows read == loaded + skipped per file and in total, checked against the skipped list itself."""
    report = ds.report
    for name, counts in report.files.items():
        assert counts.rows_read == counts.rows_loaded + counts.rows_skipped, name
        assert counts.rows_skipped == sum(1 for s in report.skipped if s.file == name), name
    assert report.rows_read == report.rows_loaded + report.rows_skipped and report.balanced
    assert report.rows_loaded == len(ds.catalog) + ds.n_events
    if written is not None:
        assert report.rows_read == written


def _skipped(ds: Dataset) -> list[tuple[str, int, str]]:
    return [(Path(s.file).name, s.line, s.kind.value) for s in ds.report.skipped]


def test_real_ml100k_accounting(ml100k_path: Path) -> None:
    ds = load_movielens_100k(ml100k_path)
    _accounted(ds, written=100_000 + 1682)
    assert ds.report.files[str(ml100k_path / "u.data")].rows_loaded == 100_000


def test_bom_is_dropped_from_every_file(tmp_path: Path) -> None:
    root = tmp_path / "ml"
    root.mkdir()
    (root / "u.item").write_bytes(BOM + GOOD_ITEM.encode("latin-1"))
    (root / "u.data").write_bytes(BOM + b"7\t1\t5\t881250949\n8\t1\t3\t881250950\n")
    ds = load_movielens_100k(root)
    assert ds.users == ["7", "8"] and ds.catalog.ids == ("1",)  # no phantom "\ufeff7" user
    _accounted(ds, written=3)
    (tmp_path / "items.csv").write_bytes(BOM + b"id,title\na,Alpha\n")
    (tmp_path / "events.csv").write_bytes(BOM + b"user,item,timestamp\nu,a,1000000\n")
    assert load_csv(tmp_path / "events.csv", tmp_path / "items.csv").n_events == 1
    (tmp_path / "items.jsonl").write_bytes(BOM + b'{"id": "a", "title": "Alpha"}\n')
    (tmp_path / "events.jsonl").write_bytes(BOM + b'{"user": "u", "item": "a", "timestamp": 1000000}\n')
    ds = load_csv(tmp_path / "events.jsonl", tmp_path / "items.jsonl")
    assert ds.users == ["u"] and not ds.report.skipped


def test_csv_field_over_the_csv_limit_is_a_bad_row(tmp_path: Path) -> None:
    big = "x" * 200 * 1024
    (tmp_path / "items.csv").write_text(f'id,title\na,Alpha\nb,"{big}"\nc,"multi\n{big}\nline"\nd,Delta\n')
    (tmp_path / "events.csv").write_text("user,item,timestamp\nu,a,1000000\nu,d,1000001\n")
    with pytest.raises(DataError, match=r"items.csv:3: field too large: over 131,072 characters$"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv")
    ds = load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")
    assert ds.catalog.ids == ("a", "d")  # the multi-line record is skipped whole: no rows from its lines
    assert _skipped(ds) == [("items.csv", 3, "field too large"), ("items.csv", 4, "field too large")]
    assert ds.report.skipped[1].reason.endswith("(record spans lines 4-6)")
    _accounted(ds, written=4 + 2)


def test_field_limit_applies_to_every_format(tmp_path: Path) -> None:
    (tmp_path / "u.item").write_text(GOOD_ITEM + GOOD_ITEM2.replace("GoldenEye (1995)", "y" * 200_000))
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n")
    with pytest.raises(DataError, match=r"u.item:2: field too large: title has 200,000 characters"):
        load_movielens_100k(tmp_path)
    ds = load_movielens_100k(tmp_path, on_error="skip")
    assert _skipped(ds) == [("u.item", 2, "field too large")]
    _accounted(ds, written=3)


def test_quoted_newline_is_kept_and_lines_stay_physical(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_bytes(b'id,title\na,"Line one\r\nline two, ""quoted"""\nb,Beta\nc\n')
    (tmp_path / "events.csv").write_text("user,item,timestamp\nu,a,1000000\n")
    with pytest.raises(DataError, match=r"items.csv:5: malformed row: expected 2 fields, got 1"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv")
    ds = load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")
    assert ds.catalog["a"].title == 'Line one\nline two, "quoted"' and ds.catalog["b"].title == "Beta"
    _accounted(ds, written=3 + 1)


def test_a_stray_quote_is_one_bad_row_and_the_lines_after_it_still_load(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text('id,title\na,Alpha\nb,"Beta\nc,Gamma\nd,"Delta\ne,Epsilon\n')
    (tmp_path / "events.csv").write_text("user,item,timestamp\nu,a,1000000\nu,c,1000001\n")
    with pytest.raises(DataError, match=r"items.csv:3: malformed row: .* \(a stray quote\?\)$"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv")
    ds = load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")
    assert ds.catalog.ids == ("a", "c", "e") and ds.catalog["c"].title == "Gamma"
    assert _skipped(ds) == [("items.csv", 3, "malformed row"), ("items.csv", 5, "malformed row")]
    assert ds.report.skipped[1].reason == "malformed row: a quote that is never closed"
    _accounted(ds, written=5 + 2)


def _jsonl(tmp_path: Path, event_line: str, item_line: str = '{"id": "a", "title": "Alpha"}') -> tuple[Path, Path]:
    (tmp_path / "items.jsonl").write_text(item_line + '\n{"id": "z", "title": "Zeta"}\n')
    (tmp_path / "events.jsonl").write_text(event_line + '\n{"user": "u", "item": "z", "timestamp": 1000000}\n')
    return tmp_path / "events.jsonl", tmp_path / "items.jsonl"


DEEP = "[" * 5000 + "]" * 5000


@pytest.mark.parametrize(("event_line", "item_line", "where", "kind", "message"), [
    ('{"user": null, "item": "z", "timestamp": 1000000}', None, "events.jsonl:1", "missing value",
     "missing value: user is null"),
    ('{"user": "", "item": "z", "timestamp": 1000000}', None, "events.jsonl:1", "missing value",
     "missing value: empty user"),
    ('{"user": true, "item": "z", "timestamp": 1000000}', None, "events.jsonl:1", "invalid value",
     "invalid value: user must be text or a number, got bool"),
    ('{"user": "u\\u0000v", "item": "z", "timestamp": 1000000}', None, "events.jsonl:1", "NUL byte",
     "NUL byte in user"),
    ('{"user": "u", "item": "z", "timestamp": 1000000, "rating": NaN}', None, "events.jsonl:1", "invalid value",
     "invalid value: rating must be a finite number >= 0, got nan"),
    ('{"user": "u", "item": "z", "timestamp": 1000000, "rating": -1}', None, "events.jsonl:1", "invalid value",
     "invalid value: rating must be a finite number >= 0, got -1.0"),
    ('{"user": "u", "item": "z", "timestamp": 1000000, "rating": Infinity}', None, "events.jsonl:1",
     "invalid value", "invalid value: rating must be a finite number >= 0, got inf"),
    ('{"user": "u", "item": "z", "timestamp": true}', None, "events.jsonl:1", "invalid value",
     "invalid value: unreadable timestamp of type bool"),
    ('{"user": "u", "user": "v", "item": "z", "timestamp": 1}', None, "events.jsonl:1", "malformed row",
     "malformed row: key 'user' appears twice"),
    (f'{{"user": "u", "item": "z", "timestamp": 1000000, "x": {DEEP}}}', None, "events.jsonl:1",
     "nesting too deep", "nesting too deep: JSON nested beyond Python's recursion limit"),
    (None, '{"id": "a", "title": ["Alpha"]}', "items.jsonl:1", "invalid value",
     "invalid value: title must be text, got list"),
    (None, '{"id": "a", "title": {"en": "Alpha"}}', "items.jsonl:1", "invalid value",
     "invalid value: title must be text, got dict"),
    (None, '{"id": "a", "title": "Al\\u0000pha"}', "items.jsonl:1", "NUL byte", "NUL byte in title"),
    (None, '{"id": null, "title": "Alpha"}', "items.jsonl:1", "missing value", "missing value: id is null"),
])
def test_jsonl_values_are_never_coerced_silently(tmp_path: Path, event_line: str | None, item_line: str | None,
                                                 where: str, kind: str, message: str) -> None:
    good_event = '{"user": "u", "item": "a", "timestamp": 1000000}'
    events, items = _jsonl(tmp_path, event_line or good_event, *([item_line] if item_line else []))
    with pytest.raises(DataError) as err:
        load_csv(events, items)
    assert str(err.value) == f"{tmp_path}/{where}: {message}"
    ds = load_csv(events, items, on_error="skip")
    assert [(s.file, s.line, s.kind.value, s.reason) for s in ds.report.skipped][0] == (
        str(tmp_path / where.split(":")[0]), 1, kind, message)
    _accounted(ds, written=4)


def test_explicit_coercions(tmp_path: Path) -> None:
    events, items = _jsonl(tmp_path, '{"user": 7.0, "item": " a ", "timestamp": 1000000, "rating": "4.5", '
                                     '"action": null}', '{"id": "a", "title": 1917, "tags": ["War", " "]}')
    ds = load_csv(events, items, item_columns=ItemColumnMap(categories="tags"), columns=ColumnMap(action="action"))
    ev = ds.history("7")[0]  # 7.0 → "7"; " a " → "a"; "4.5" → 4.5; null action → the default
    assert (ev.item, ev.rating, ev.action) == ("a", 4.5, "interact")
    assert ds.catalog["a"].title == "1917" and ds.catalog["a"].categories == ("War",)
    _accounted(ds, written=4)


def test_nul_bytes_in_line_and_csv_files(tmp_path: Path) -> None:
    root = _ml_dir(tmp_path, GOOD_ITEM, "1\t1\t5\t881250949\n1\x00\t1\t4\t881250950\n")
    with pytest.raises(DataError, match=r"u.data:2: NUL byte in user$"):
        load_movielens_100k(root)
    ds = load_movielens_100k(root, on_error="skip")
    assert ds.users == ["1"] and _skipped(ds) == [("u.data", 2, "NUL byte")]
    _accounted(ds, written=3)
    (tmp_path / "items.csv").write_bytes(b"id,title\na,Al\x00pha\nb,Beta\n")
    (tmp_path / "events.csv").write_text("user,item,timestamp\nu,b,1000000\n")
    ds = load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")
    assert _skipped(ds) == [("items.csv", 2, "NUL byte")]


def test_generic_csv_reads_the_rating_column(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,title\na,Alpha\n")
    (tmp_path / "events.csv").write_text("user,item,timestamp,rating\nu,a,1000000,4.5\nu,a,1000001,\n"
                                         "u,a,1000002,nan\nu,a,1000003,-2\n")
    with pytest.raises(DataError, match=r"events.csv:4: invalid value: rating must be a finite number >= 0, got nan"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv")
    ds = load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")
    assert [e.rating for e in ds.history("u")] == [4.5, None]  # an empty cell is no rating
    assert _skipped(ds) == [("events.csv", 4, "invalid value"), ("events.csv", 5, "invalid value")]
    _accounted(ds, written=5)
    with pytest.raises(DataError, match="missing column 'stars'"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv", ColumnMap(rating="stars"))


def test_undecodable_header_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,title\na,Alpha\n")
    (tmp_path / "events.csv").write_bytes(b"us\xe9r,item,timestamp\nuser,a,1000000\nu,a,1000001\n")
    for mode in ("raise", "skip"):
        with pytest.raises(DataError, match=r"events.csv:1: header bad encoding: not valid utf-8 \(byte 0xe9"):
            load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error=mode)  # type: ignore[arg-type]
    (tmp_path / "events.csv").write_bytes(b"user,user,timestamp\nu,a,1000000\n")
    with pytest.raises(DataError, match="header has column 'user' twice"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")
    (tmp_path / "events.csv").write_bytes("user,item,timestamp\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16 text; save it as UTF-8"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")


def test_every_loader_reports_instead_of_crashing(tmp_path: Path) -> None:
    dat = tmp_path / "dat"
    dat.mkdir()
    (dat / "movies.dat").write_text("1::Toy Story::Comedy\n2::" + "t" * 140_000 + "::Drama\n", encoding="latin-1")
    (dat / "ratings.dat").write_text("1::1::5::978300760\n1::1::NaN::978300761\n\x00::1::3::978300762\n")
    ds = load_movielens_dat(dat, on_error="skip")
    assert _skipped(ds) == [("movies.dat", 2, "field too large"), ("ratings.dat", 2, "invalid value"),
                            ("ratings.dat", 3, "NUL byte")]
    _accounted(ds, written=5)
    csvd = tmp_path / "mlcsv"
    csvd.mkdir()
    (csvd / "movies.csv").write_bytes(BOM + b'movieId,title,genres\n1,"A\nB",Comedy\n2,"' + b"z" * 140_000 + b'",X\n')
    (csvd / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.5,964982703\n7,2,4,964982704\n")
    ds = load_movielens_csv(csvd, on_error="skip")
    assert ds.catalog["1"].title == "A\nB" and _skipped(ds) == [
        ("movies.csv", 4, "field too large"), ("ratings.csv", 3, "unknown item id")]
    _accounted(ds, written=4)
    rb = tmp_path / "rb"
    rb.mkdir()
    (rb / "toy.item").write_bytes(BOM + b"item_id:token\ttitle:token_seq\na\tAlpha\nb\t\xff\n")
    (rb / "toy.test.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\nu\ta zz a\ta\nv\ta\n")
    ds = load_recbole(rb, on_error="skip")
    assert _skipped(ds) == [("toy.item", 3, "bad encoding"), ("toy.test.inter", 3, "malformed row"),
                            ("toy.test.inter", 2, "unknown item id")]
    _accounted(ds, written=2 + 4 + 1)  # each item position of a sequence line is a row


def test_dataframe_missing_markers(tmp_path: Path) -> None:
    events = pd.DataFrame({"user": [1, None, 3, 4], "item": ["a"] * 4,
                           "timestamp": [1e6, 1e6, pd.NaT, 2e6], "rating": [4.0, 1.0, 2.0, float("nan")]})
    items = pd.DataFrame({"id": ["a", "b"], "title": ["Alpha", float("nan")]})
    with pytest.raises(DataError, match=r"^items:1: missing value: title is null$"):
        load_dataframe(events, items)
    ds = load_dataframe(events, items, on_error="skip")
    assert _skipped(ds) == [("items", 1, "missing value"), ("events", 1, "missing value"),
                            ("events", 2, "missing value")]
    assert [(e.user, e.rating) for u in ds.users for e in ds.history(u)] == [("1", 4.0), ("4", None)]
    _accounted(ds, written=6)


def test_empty_datasets_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id,title\na,Alpha\n")
    (tmp_path / "events.csv").write_text("user,item,timestamp\nu,zz,1000000\n")
    with pytest.raises(EmptyDatasetError, match=r"events.csv: no events loaded \(2 rows read, 1 loaded, 1 skipped"):
        load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error="skip")
    (tmp_path / "events.csv").write_text("user,item,timestamp\n")
    for mode in ("raise", "skip"):
        with pytest.raises(EmptyDatasetError, match="events.csv: no events loaded"):
            load_csv(tmp_path / "events.csv", tmp_path / "items.csv", on_error=mode)  # type: ignore[arg-type]
    (tmp_path / "ml").mkdir()
    root = _ml_dir(tmp_path / "ml", "", "1\t1\t5\t881250949\n")
    with pytest.raises(EmptyDatasetError, match=r"u.item: no items loaded"):
        load_movielens_100k(root, on_error="skip")


def test_cli_skipped_rows_file_and_empty_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from driftrec.cli.main import main

    data = tmp_path / "d"
    data.mkdir()
    (data / "items.csv").write_text("id,title\na,Alpha\nb,Beta\n")
    bad = "".join(f"u{i},nope{i},1000000\n" for i in range(25))
    (data / "events.csv").write_text("user,item,timestamp\nu,a,1000000\n" + bad + "v,b,1000001\n")
    out = tmp_path / "skipped.tsv"
    base = ["--data", str(data), "--embedder", "hashing", "--no-cache", "--on-error", "skip"]
    assert main(["recommend", *base, "--user", "u", "-k", "1", "--skipped-rows", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("  skipped ") == 20 and f"… 5 more (all in {out})" in err
    lines = out.read_text().splitlines()
    assert lines[0] == "file\tline\tkind\treason" and len(lines) == 26
    assert lines[1] == f"{data / 'events.csv'}\t3\tunknown item id\tunknown item id: 'nope0' not in catalogue"
    (data / "events.csv").write_text("user,item,timestamp\n" + bad)
    assert main(["demo", *base, "--llm", "none", "--skipped-rows", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"driftrec: error: {data / 'events.csv'}: no events loaded")
    assert len(out.read_text().splitlines()) == 26  # the list is written even though the load failed
