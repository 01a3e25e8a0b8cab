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
from retrieval.errors import DataError, DatasetNotFoundError, UnknownUserError


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
