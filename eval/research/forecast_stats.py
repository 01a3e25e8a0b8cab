"""Classical per-category forecasters from statsmodels (optional extra `driftrec[research]`).

Each category's share series over a user's windows is forecast on its own, one step ahead, by ETS
(Holt's additive trend, damped) or ARIMA(1,0,0) with a constant (Yule-Walker); negative forecasts are clipped and
the row is renormalised. A category the user never had stays at 0. Series shorter than `min_length`
windows, and fits that statsmodels rejects, fall back to the series' last value; `fallbacks` counts
them. Neither forecasts a vector. They are not registered in `FORECASTERS` (statsmodels is optional);
`eval.research.movietweetings_eval` adds them when statsmodels is installed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from retrieval.errors import MissingDependencyError
from retrieval.evolution.forecast import Forecaster

FIX = "pip install 'driftrec[research]' (or: pip install statsmodels)"


def _statsmodels() -> Any:
    try:
        import statsmodels.tsa.arima.model as arima
        import statsmodels.tsa.holtwinters as holtwinters
    except ImportError as exc:
        raise MissingDependencyError(f"statsmodels is missing: {FIX}") from exc
    return arima, holtwinters


def statsmodels_available() -> bool:
    """True when statsmodels can be imported."""
    try:
        _statsmodels()
    except MissingDependencyError:
        return False
    return True


class _PerCategory(Forecaster):
    """Forecast every category's share series separately with `_one_step`."""

    min_length = 3

    def __init__(self) -> None:
        self.fallbacks = 0
        self.fits = 0

    def _one_step(self, series: np.ndarray) -> float:
        raise NotImplementedError

    def predict_arrays(self, shares: np.ndarray, vectors: np.ndarray | None,
                       counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = np.zeros(shares.shape[1])
        for c in np.flatnonzero(shares.sum(axis=0) > 0):
            series = shares[:, c]
            if len(series) < self.min_length or np.ptp(series) == 0.0:
                out[c] = series[-1]  # too short to fit, or constant: its forecast is its value
                continue
            self.fits += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings on 3-6 points are expected
                try:
                    value = self._one_step(series)
                except (ValueError, np.linalg.LinAlgError):
                    value = float("nan")
            if not np.isfinite(value):
                self.fallbacks += 1
                value = float(series[-1])
            out[c] = value
        out = np.clip(out, 0.0, None)
        return (out / out.sum() if out.sum() > 0 else shares[-1]), None


class ETSForecaster(_PerCategory):
    """Holt's linear trend, damped, additive errors, per category (statsmodels `ExponentialSmoothing`)."""

    name = "ets"

    def _one_step(self, series: np.ndarray) -> float:
        _, hw = _statsmodels()
        model = hw.ExponentialSmoothing(series, trend="add", damped_trend=True)
        return float(model.fit(use_brute=False).forecast(1)[0])


class ARIMAForecaster(_PerCategory):
    """ARIMA(1,0,0) with a constant per category (statsmodels `ARIMA`, Yule-Walker estimates)."""

    name = "arima"

    def _one_step(self, series: np.ndarray) -> float:
        arima, _ = _statsmodels()
        # Yule-Walker: 10x faster than the default MLE here, with the same AR(1)+constant model.
        return float(arima.ARIMA(series, order=(1, 0, 0), trend="c").fit(method="yule_walker").forecast(1)[0])
