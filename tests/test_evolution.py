"""Interest evolution: timeline windows, drift, change points, long/short term, forecasters, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from eval.research.evolution_synthetic import match_points, score_detector, synthetic_shift_users, windowed
from eval.research.forecast_gru import GRUForecaster
from retrieval.data.model import Catalog, Dataset, Event, Item
from retrieval.errors import ConfigError
from retrieval.evolution.drift import (
    ShiftConfig,
    change_points,
    consecutive_drift,
    cosine_distance,
    js_divergence,
    long_short_terms,
)
from retrieval.evolution.forecast import (
    AutoregressiveForecaster,
    ExpSmoothingForecaster,
    ForecastGenerator,
    HistoryMeanForecaster,
    LastWindowForecaster,
    TunedSmoothingForecaster,
)
from retrieval.evolution.summary import summarize_evolution
from retrieval.evolution.timeline import Window, build_timeline
from retrieval.vectors.build import build_index
from retrieval.vectors.embed import HashingEmbedder

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)


def _catalog() -> Catalog:
    return Catalog([Item(id="a1", title="A one", categories=("A",)), Item(id="a2", title="A two", categories=("A",)),
                    Item(id="b1", title="B one", categories=("B",)),
                    Item(id="ab", title="A and B", categories=("A", "B")),
                    Item(id="n", title="no category")])


def _ev(item: str, days: float) -> Event:
    return Event(user="u", item=item, timestamp=MONDAY + timedelta(days=days))


def test_weekly_windows_split_on_monday_and_skip_silent_weeks() -> None:
    events = [_ev("a1", 0.1), _ev("b1", 6.9), _ev("a2", 7.0), _ev("ab", 30.0)]
    windows = build_timeline(events, _catalog(), period="week")
    assert [w.items for w in windows] == [("a1", "b1"), ("a2",), ("ab",)]
    assert [w.index for w in windows] == [0, 1, 2]
    assert windows[0].start == MONDAY and windows[0].end == MONDAY + timedelta(days=7)
    assert windows[2].start == MONDAY + timedelta(days=28)  # week of day 30; weeks 2-3 were silent
    assert windows[0].categories == {"A": 0.5, "B": 0.5}
    assert windows[2].categories == {"A": 0.5, "B": 0.5}  # one item with two categories splits its unit
    assert all(w.vector is None for w in windows)


def test_day_month_and_event_count_windows() -> None:
    events = [_ev("a1", 0.5), _ev("a2", 0.7), _ev("b1", 1.2), _ev("n", 40.0), _ev("ab", 41.0)]
    assert len(build_timeline(events, _catalog(), period="day")) == 4
    months = build_timeline(events, _catalog(), period="month")
    assert [len(w.items) for w in months] == [3, 2] and months[1].start == datetime(2024, 2, 1, tzinfo=UTC)
    by_two = build_timeline(events, _catalog(), period="events:2")
    assert [w.items for w in by_two] == [("a1", "a2"), ("b1", "n"), ("ab",)]
    assert by_two[1].categories == {"B": 1.0}  # the item without categories adds nothing
    for bad in ("fortnight", "events:0", "events:x"):
        with pytest.raises(ConfigError):
            build_timeline(events, _catalog(), period=bad)


def test_window_vectors_are_unit_and_drift_uses_vectors_without_categories() -> None:
    cat = _catalog()
    index = build_index(cat, HashingEmbedder(32), backend="numpy", progress=False)
    windows = build_timeline([_ev("n", 0), _ev("n", 8), _ev("a1", 15)], cat, index)
    assert all(w.vector is not None and abs(np.linalg.norm(w.vector) - 1) < 1e-5 for w in windows)
    drift = consecutive_drift([w.categories for w in windows], [w.vector for w in windows])
    assert drift[0] == pytest.approx(0.0, abs=1e-6)  # same item, no categories: cosine distance 0
    assert drift[1] == pytest.approx(cosine_distance(windows[1].vector, windows[2].vector))


def test_js_and_cosine_on_hand_made_cases() -> None:
    assert js_divergence({"a": 1.0}, {"a": 1.0}) == 0.0
    assert js_divergence({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    # m = (0.75, 0.25): 0.5·log2(1/0.75) + 0.5·(0.5·log2(0.5/0.75) + 0.5·log2(0.5/0.25))
    expected = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5)
    assert js_divergence({"a": 1.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(expected)
    assert js_divergence({}, {"a": 1.0}) == 0.0
    u, v = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    assert cosine_distance(u, v) == pytest.approx(0.5)
    assert cosine_distance(u, -u) == pytest.approx(1.0)
    assert cosine_distance(u, None) == 0.0
    assert consecutive_drift([{"a": 1.0}, {"a": 1.0}, {"b": 1.0}]) == pytest.approx((0.0, 1.0))


def test_planted_shift_is_found_with_direction_and_evidence(shift_dataset) -> None:  # type: ignore[no-untyped-def]
    evo = summarize_evolution("u3", shift_dataset.history("u3"), shift_dataset.catalog)
    assert len(evo.windows) == 24 and len(evo.drift) == 23
    assert [s.window for s in evo.shifts] == [12]
    shift = evo.shifts[0]
    assert shift.from_categories == ("space",) and shift.to_categories == ("cooking",)
    assert shift.strength == pytest.approx(1.0)
    assert shift.at == evo.windows[12].start
    assert shift.supporting_items[0].startswith("space") and shift.supporting_items[-1].startswith("cooking")
    assert evo.short_term == ("cooking",) and "space" not in evo.short_term
    assert max(evo.forecast, key=evo.forecast.get) == "cooking"


def test_long_term_is_the_stable_category() -> None:
    dists = [{"A": 0.8, "B": 0.2}, {"A": 0.7, "C": 0.3}, {"A": 0.9, "B": 0.1}, {"A": 0.5, "D": 0.5},
             {"A": 0.4, "D": 0.6}]
    long_term, short_term = long_short_terms(dists)
    assert long_term == ("A",)
    assert short_term == ("D",)


def test_no_shift_reported_on_a_stable_user() -> None:
    dists = [{"A": 0.6, "B": 0.4}] * 10
    assert change_points(dists) == []
    assert change_points([{"A": 1.0}] * 5 + [{"B": 1.0}] * 5, ShiftConfig(span=2)) == [(5, 1.0)]


def test_shift_detection_precision_recall_on_synthetic_users() -> None:
    data = synthetic_shift_users(n_users=200, seed=2)  # a draw the defaults were not tuned on (seed 1)
    assert sum(len(p) for p in data.planted.values()) > 150  # the answer key has real shifts
    score = score_detector(data, windowed())
    assert score.precision >= 0.9 and score.recall >= 0.9, score
    assert match_points([4, 5, 11], [5, 12]) == 2 and match_points([2], [5]) == 0


def _trend_windows(n_users: int, n_windows: int, seed: int) -> list[list[Window]]:
    """Users whose share of A falls linearly 0.9 → 0.1 while B rises, 30 sampled items a window."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n_users):
        windows = []
        offset = rng.uniform(0, 0.2)
        for t in range(n_windows):
            p_a = float(np.clip(0.9 - offset - 0.8 * t / (n_windows - 1), 0.02, 0.98))
            a = int(rng.binomial(30, p_a))
            shares = {k: v for k, v in (("A", a / 30), ("B", 1 - a / 30)) if v > 0}
            start = MONDAY + timedelta(days=7 * t)
            windows.append(Window(t, start, start + timedelta(days=7), tuple(f"i{u}-{t}-{j}" for j in range(30)),
                                  shares, None))
        out.append(windows)
    return out


def _mean_js(forecaster, users: list[list[Window]]) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean([js_divergence(forecaster.forecast(w[:-1])[0], w[-1].categories) for w in users]))


def test_forecasters_beat_last_window_on_a_trend() -> None:
    train, test = _trend_windows(40, 10, seed=1), _trend_windows(30, 10, seed=2)
    last = _mean_js(LastWindowForecaster(), test)
    ar = _mean_js(AutoregressiveForecaster().fit(train), test)
    gru = _mean_js(GRUForecaster(epochs=60).fit(train), test)
    assert ar < 0.8 * last, (ar, last)
    assert gru < last, (gru, last)
    assert _mean_js(HistoryMeanForecaster(), test) > last  # on a trend the long average is the wrong answer


def test_smoothing_closed_form_and_baselines() -> None:
    ws = [Window(i, MONDAY, MONDAY, ("x",) * n, s, None)
          for i, (n, s) in enumerate([(1, {"A": 1.0}), (3, {"B": 1.0}), (1, {"A": 1.0})])]
    # level: A=1 → 0.5A+0.5B → 0.75A+0.25B
    assert ExpSmoothingForecaster(0.5).forecast(ws)[0] == pytest.approx({"A": 0.75, "B": 0.25})
    assert LastWindowForecaster().forecast(ws)[0] == {"A": 1.0}
    assert HistoryMeanForecaster().forecast(ws)[0] == pytest.approx({"A": 0.4, "B": 0.6})  # event-weighted
    # Interests that persist once changed: the newest window is the best evidence, so tuning must pick α = 1
    # (β > 0 may still be chosen: the population prior softens the one switch it cannot foresee).
    persistent = [Window(i, MONDAY, MONDAY, ("x",) * 2, {"A": 1.0} if i == 0 else {"B": 1.0}, None) for i in range(6)]
    tuned = TunedSmoothingForecaster().fit([persistent, persistent])
    assert tuned.alpha == 1.0
    # Interests that alternate every window: the last window is always wrong, the long average is best.
    alternating = [Window(i, MONDAY, MONDAY, ("x",) * 2, {"AB"[i % 2]: 1.0}, None) for i in range(8)]
    tuned = TunedSmoothingForecaster().fit([alternating, alternating])
    assert tuned.alpha <= 0.3 or tuned.beta >= 0.3, (tuned.alpha, tuned.beta)
    assert _mean_js(tuned, [alternating]) < _mean_js(LastWindowForecaster(), [alternating])
    with pytest.raises(ConfigError):
        ExpSmoothingForecaster(0.0)
    with pytest.raises(ConfigError):
        AutoregressiveForecaster().forecast(ws)


def test_forecast_generator_follows_the_new_interest(shift_dataset) -> None:  # type: ignore[no-untyped-def]
    index = build_index(shift_dataset.catalog, HashingEmbedder(64), backend="numpy", progress=False)
    gen = ForecastGenerator(index, shift_dataset.catalog)
    cands = gen.generate(shift_dataset.history("u0"), 10)
    seen = {ev.item for ev in shift_dataset.history("u0")}
    assert len(cands) == 10 and all(c.source == "forecast" for c in cands)
    assert not seen & {c.item_id for c in cands}
    assert sum(c.item_id.startswith("cooking") for c in cands) >= 8


def test_real_ml100k_timeline(ml100k_path: Path) -> None:
    from retrieval.data.datasets import load_dataset

    dataset = load_dataset(ml100k_path)
    history = dataset.history("1")
    windows = build_timeline(history, dataset.catalog, period="week")
    assert sum(len(w.items) for w in windows) == len(history)
    assert all(abs(sum(w.categories.values()) - 1) < 1e-9 for w in windows)
    assert all(a.end <= b.start for a, b in zip(windows, windows[1:], strict=False))
    evo = summarize_evolution("1", history, dataset.catalog)
    assert len(evo.drift) == len(windows) - 1 and all(0 <= d <= 1 for d in evo.drift)


def test_cli_writes_png_and_json(ml100k_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from driftrec.cli.main import main

    out = tmp_path / "u.png"
    code = main(["timeline", "--data", str(ml100k_path), "--user", "13", "--out", str(out), "--json",
                 "--embedder", "hashing", "--no-cache"])
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    data = json.loads(capsys.readouterr().out)
    assert data["user"] == "13" and len(data["windows"]) >= 2
    assert len(data["drift"]) == len(data["windows"]) - 1
    assert abs(sum(data["forecast"].values()) - 1) < 1e-3
    assert main(["timeline", "--data", str(ml100k_path), "--user", "nobody", "--json", "--no-vectors"]) == 3


def test_pick_shift_user_is_seeded_and_only_picks_users_with_a_shift(shift_dataset) -> None:  # type: ignore[no-untyped-def]
    from retrieval.evolution.summary import pick_shift_user

    stable = {f"s{i}": tuple(Event(user=f"s{i}", item="space-1", timestamp=MONDAY + timedelta(days=7 * j))
                             for j in range(24)) for i in range(30)}
    histories = {**stable, **shift_dataset.histories}
    picks = {pick_shift_user(histories, shift_dataset.catalog, seed=s, min_side_events=3).user for s in range(12)}
    assert picks <= set(shift_dataset.histories) and len(picks) > 1
    again = pick_shift_user(dict(reversed(list(histories.items()))), shift_dataset.catalog, seed=3, min_side_events=3)
    first = pick_shift_user(histories, shift_dataset.catalog, seed=3, min_side_events=3)
    assert again == first and first.candidates == 20  # the pick ignores the order users come in
    assert "seed 3" in first.statement() and "among the 20 users" in first.statement()
    # one event a week: the 3 windows either side of the shift hold 3 events, fewer than 4
    thin = pick_shift_user(histories, shift_dataset.catalog, min_side_events=4)
    assert thin.user is None and "no user" in thin.statement()
    assert pick_shift_user(stable, shift_dataset.catalog, min_side_events=1).user is None


def test_forecast_split_keeps_users_with_enough_windows() -> None:
    from eval.research.evolution_eval import forecast_split

    def seq(n: int) -> list[Window]:
        return [Window(i, MONDAY + timedelta(days=30 * i), MONDAY + timedelta(days=30 * i + 30), ("a1",), {"A": 1.0},
                       None) for i in range(n)]

    tl = {"two": seq(2), "four": seq(4), "six": seq(6)}
    cut = MONDAY + timedelta(days=90)
    train, cases = forecast_split(tl, cut, min_windows=4)
    assert [u for u, _, _ in cases] == ["four", "six"]
    assert all(w.end <= cut for s in train for w in s) and [len(h) for _, h, _ in cases] == [3, 5]


def test_statsmodels_forecasters_follow_a_per_category_trend() -> None:
    pytest.importorskip("statsmodels")
    from eval.research.forecast_stats import ARIMAForecaster, ETSForecaster

    def windows(a_shares: list[float]) -> list[Window]:
        return [Window(i, MONDAY, MONDAY, ("x",), {"A": a, "B": 1 - a}, None) for i, a in enumerate(a_shares)]

    trend, zigzag = windows([0.8, 0.65, 0.5, 0.35]), windows([0.8, 0.2, 0.8, 0.2, 0.8])
    ets, arima = ETSForecaster(), ARIMAForecaster()
    pred, vec = ets.forecast(trend)
    assert vec is None and abs(sum(pred.values()) - 1) < 1e-9
    assert pred["B"] > 0.7, pred  # the trend goes on past the last window (0.65)
    pred, vec = arima.forecast(zigzag)
    assert vec is None and abs(sum(pred.values()) - 1) < 1e-9
    assert pred["A"] < 0.4, pred  # AR(1) with a negative coefficient: after a high month comes a low one
    assert ets.fallbacks == arima.fallbacks == 0 and ets.fits == arima.fits == 2
    assert ETSForecaster().forecast(trend[:2])[0] == {"A": 0.65, "B": 0.35}  # too short to fit: the last window


def test_month_split_and_multi_target_metrics() -> None:
    from eval.research.movietweetings_eval import month_split, recall_ndcg

    def ev(user: str, item: str, month: int) -> Event:
        return Event(user=user, item=item, timestamp=datetime(2013, month, 5, tzinfo=UTC))

    ds = Dataset(_catalog(), [ev("u", "a1", 6), ev("u", "a2", 8), ev("u", "a1", 8), ev("v", "b1", 8),
                              ev("w", "ab", 7)])
    inputs, users, targets = month_split(ds, datetime(2013, 8, 1, tzinfo=UTC), datetime(2013, 9, 1, tzinfo=UTC))
    assert users == ["u"] and targets == [{"a2"}] and set(inputs) == {"u", "w"}  # v has no input, w no August
    m = recall_ndcg([["b1", "a2"], ["x"]], [{"a2", "ab"}, {"y"}], 2)
    np.testing.assert_allclose(m["recall@2"], [0.5, 0.0])
    np.testing.assert_allclose(m["ndcg@2"], [(1 / np.log2(3)) / (1 + 1 / np.log2(3)), 0.0])


def test_demo_picks_a_user_with_a_shift_and_writes_the_timeline(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from driftrec.cli.main import main
    from tests.conftest import planted_shift_dataset

    ds = planted_shift_dataset(n_users=4)

    def twin(e: Event) -> Event:  # another item of the same topic an hour later
        topic, number = e.item.rsplit("-", 1)
        return e.model_copy(update={"item": f"{topic}-{(int(number) + 20) % 40}",
                                    "timestamp": e.timestamp + timedelta(hours=1)})

    # two events a week, so each side of the shift has the 5 events the demo's pick asks for
    doubled = [ev for evs in ds.histories.values() for e in evs for ev in (e, twin(e))]
    data = tmp_path / "data"
    data.mkdir()
    (data / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{it.id},{it.title},{'|'.join(it.categories)}\n" for it in ds.catalog))
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{ev.user},{ev.item},4,{int(ev.timestamp.timestamp())}\n" for ev in doubled))
    png = tmp_path / "out" / "t.png"
    base = ["demo", "--data", str(data), "--embedder", "hashing", "--no-cache", "--llm", "none", "-k", "2",
            "--timeline-out", str(png)]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "picked at random (seed 0) among the 4 users" in out
    assert "2024-03-25 (previous active window from 2024-03-18): from space to cooking" in out  # week 13
    assert f"timeline: {png.resolve()}" in out and png.stat().st_size > 10_000
    assert main([*base, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["demo"]["shifts"][0]["to"] == ["cooking"] and "seed 0" in captured.err
