"""The peers of `make bench-anomaly`, each in its strongest fair form.

Every method returns, for each scored day of a series, a score: how many of its own sigmas the
value lies from what the method expected. A day is flagged when the score exceeds the method's
threshold, which `bench/anomaly.py` chooses on the tuning families (the same families the
engine's constants were chosen on) from a grid that contains the method's documented default.

- zscore_14 / zscore_28: Elementary's z-score over the 14 or 28 calendar days *before* the
  tested day (never the tested day itself: with it inside a window of n points, |z| cannot
  exceed (n - 1) / sqrt(n), so a threshold of 3 on 14 points almost never fires);
- zscore_weekday: the same over the last 8 same weekdays (Elementary's `day_of_week`
  seasonality);
- stl: statsmodels' robust STL (period 7) of the history, forecast as the last trend value plus
  the weekday's last seasonal value; sigma from the same rule's one-day-ahead errors over the
  history and the trend's daily moves;
- mstl, autoets: statsforecast's MSTL (weekly, plus yearly with two years of history; AutoETS
  trend) and AutoETS (weekly season), their 99 % prediction intervals;
- prophet: Prophet with the family's public holidays and its 99 % interval.

Model-based methods fit once on the history before the detection window and forecast its
7 days, as the engine does; rolling methods see every day before the tested one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

Z99 = NormalDist().inv_cdf(0.995)
WEEKDAY_WEEKS = 8
_MAD_TO_SIGMA = 1.4826


def daily_grid(days: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every calendar day from the first to the last, NaN where nothing was observed."""
    grid = np.arange(days[0], days[-1] + 1, dtype="datetime64[D]")
    filled = np.full(len(grid), np.nan)
    filled[(days - days[0]).astype(int)] = values
    return grid, filled


def rolling_zscore(values: np.ndarray, positions: Sequence[int], window: int) -> np.ndarray:
    """|z| of each position against the observed values of the `window` days before it."""
    scores = np.zeros(len(positions))
    for i, p in enumerate(positions):
        past = values[max(p - window, 0) : p]
        scores[i] = _z(values[p], past[~np.isnan(past)])
    return scores


def weekday_zscore(
    values: np.ndarray, positions: Sequence[int], weeks: int = WEEKDAY_WEEKS
) -> np.ndarray:
    """|z| of each position against the same weekday of the `weeks` weeks before it."""
    scores = np.zeros(len(positions))
    for i, p in enumerate(positions):
        lags = p - 7 * np.arange(1, weeks + 1)
        past = values[lags[lags >= 0]]
        scores[i] = _z(values[p], past[~np.isnan(past)])
    return scores


def _z(value: float, past: np.ndarray) -> float:
    # Three points are the least from which a standard deviation means anything.
    if len(past) < 3:
        return 0.0
    std = float(past.std(ddof=1))
    if std == 0:
        return 0.0 if value == past[0] else np.inf
    return abs(value - float(past.mean())) / std


def stl_scores(values: np.ndarray, n_train: int, positions: Sequence[int]) -> np.ndarray:
    """Robust STL (period 7) of the history, forecast ahead; |error| / forecast sigma."""
    from statsmodels.tsa.seasonal import STL

    history = _interpolated(values[:n_train])
    fit = STL(history, period=7, robust=True).fit()
    trend, seasonal = np.asarray(fit.trend), np.asarray(fit.seasonal)
    # The same rule one day ahead, over the history: STL's own remainder is smoothed and
    # understates what a forecast misses by (a third too small on white noise).
    one_step = history[8:] - trend[7:-1] - seasonal[1:-7]
    sigma_noise = _mad(one_step)
    # The trend walks on: its daily moves widen the interval with the horizon.
    sigma_walk = _mad(np.diff(trend))
    scores = np.zeros(len(positions))
    for i, p in enumerate(positions):
        h = p - n_train + 1
        expected = trend[-1] + seasonal[n_train - 7 + (p - n_train) % 7]
        sigma = np.sqrt(sigma_noise**2 + (h - 1) * sigma_walk**2)
        scores[i] = abs(values[p] - expected) / max(sigma, 1e-9)
    return scores


def _interpolated(values: np.ndarray) -> np.ndarray:
    known = ~np.isnan(values)
    positions = np.arange(len(values))
    return np.interp(positions, positions[known], values[known])


def _mad(x: np.ndarray) -> float:
    return _MAD_TO_SIGMA * float(np.median(np.abs(x - np.median(x))))


def interval_scores(
    actual: np.ndarray, expected: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """|error| in sigmas of a 99 % interval (its half-width is Z99 sigmas on either side)."""
    sigma = np.where(actual >= expected, upper - expected, expected - lower) / Z99
    return np.abs(actual - expected) / np.maximum(sigma, 1e-9)


def statsforecast_scores(
    panels: list[tuple[str, np.ndarray, np.ndarray]], horizon: int
) -> dict[str, dict[str, pd.DataFrame]]:
    """MSTL and AutoETS forecasts with 99 % intervals for many histories at once.

    `panels` holds (series id, daily grid days, values with NaN); returns, per model and series,
    a frame of day, expected, lower, upper for the `horizon` days after each history.
    """
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    out: dict[str, dict[str, pd.DataFrame]] = {"mstl": {}, "autoets": {}}
    by_years: dict[bool, list[pd.DataFrame]] = {False: [], True: []}
    for series_id, days, values in panels:
        frame = pd.DataFrame({"unique_id": series_id, "ds": days, "y": _interpolated(values)})
        by_years[len(days) >= 730].append(frame)
    for two_years, frames in by_years.items():
        if not frames:
            continue
        seasons = [7, 365] if two_years else [7]
        models = [
            MSTL(season_length=seasons, alias="mstl"),
            AutoETS(season_length=7, alias="autoets"),
        ]
        forecast = StatsForecast(models=models, freq="D").forecast(
            df=pd.concat(frames, ignore_index=True), h=horizon, level=[99]
        )
        for model in ("mstl", "autoets"):
            renamed = forecast.rename(
                columns={model: "expected", f"{model}-lo-99": "lower", f"{model}-hi-99": "upper"}
            )
            for series_id, part in renamed.groupby("unique_id"):
                out[model][str(series_id)] = part[["ds", "expected", "lower", "upper"]]
    return out


def prophet_forecast(
    days: np.ndarray, values: np.ndarray, ahead: np.ndarray, region: str
) -> pd.DataFrame:
    """Prophet with the region's holidays, 99 % interval: ds, expected, lower, upper."""
    from prophet import Prophet

    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    known = ~np.isnan(values)
    model = Prophet(interval_width=0.99)
    model.add_country_holidays(region)
    model.fit(pd.DataFrame({"ds": days[known], "y": values[known]}))
    forecast = model.predict(pd.DataFrame({"ds": ahead}))
    return forecast.rename(
        columns={"yhat": "expected", "yhat_lower": "lower", "yhat_upper": "upper"}
    )[["ds", "expected", "lower", "upper"]]
