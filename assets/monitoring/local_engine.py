"""Anomaly detection on the embedded default (DuckDB): robust STL plus a MAD interval.

A small, deterministic stand-in for BigQuery ML's ARIMA_PLUS: per series it learns a weekly
pattern and a trend from the days before the detection window, forecasts each detection day and
flags values outside `expected ± z·sigma`, where z comes from the metric's probability threshold
the way `ML.DETECT_ANOMALIES` derives its bounds. The output has exactly the columns the BigQuery
engine returns, so the asset stores either without caring which ran.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from statistics import NormalDist

import holidays
import numpy as np
import pandas as pd
from statsmodels.tsa.seasonal import STL

from assets.monitoring.metrics import MetricSpec

OUTPUT_COLUMNS = (
    "metric",
    "series_id",
    "metric_day",
    "value",
    "is_anomaly",
    "lower_bound",
    "upper_bound",
    "anomaly_probability",
)

_WEEK = 7
_SUNDAY = 6
# Trailing days of the STL trend whose median daily change is extrapolated.
_SLOPE_DAYS = 14
# MAD -> standard deviation for normally distributed residuals.
_MAD_TO_SIGMA = 1.4826
# A flat series has a MAD of zero; without a floor, rounding noise would be "anomalous".
_RELATIVE_SIGMA_FLOOR = 1e-3


def detect_anomalies(
    history: pd.DataFrame, detection_start: dt.date, specs: Mapping[str, MetricSpec]
) -> pd.DataFrame:
    """Score every day on or after `detection_start` of every series of the metrics in `specs`.

    `history` has columns metric, series_id, metric_day, value. Series with fewer than the
    metric's `min_history_days` observed days before `detection_start` are left out of the result
    (the caller reports them); rows of metrics not in `specs` are ignored.
    """
    data = history.loc[
        history["metric"].isin(list(specs)), ["metric", "series_id", "metric_day", "value"]
    ]
    data = data.assign(
        metric_day=pd.to_datetime(data["metric_day"]).dt.normalize(),
        value=data["value"].astype(float),
    )
    start = pd.Timestamp(detection_start)
    calendars = _holiday_calendars({s.holiday_region for s in specs.values()}, data["metric_day"])
    frames = []
    for (metric, series_id), series in data.groupby(["metric", "series_id"], sort=True):
        spec = specs[metric]
        values = series.set_index("metric_day")["value"].sort_index()
        scored = _score_series(values, start, spec, calendars[spec.holiday_region])
        if scored is not None:
            frames.append(scored.assign(metric=metric, series_id=series_id))
    return _assemble(frames)


def _holiday_calendars(
    regions: Iterable[str], days: pd.Series
) -> dict[str, frozenset[pd.Timestamp]]:
    if days.empty:
        return {region: frozenset() for region in regions}
    years = range(days.min().year, days.max().year + 1)
    return {
        region: frozenset(
            pd.Timestamp(day) for day in holidays.country_holidays(region, years=years)
        )
        for region in regions
    }


def _effective_weekday(days: pd.DatetimeIndex, holiday_days: frozenset[pd.Timestamp]) -> np.ndarray:
    """Monday=0 … Sunday=6, with public holidays counted as Sundays: shops and offices close."""
    weekday = days.weekday.to_numpy().copy()
    weekday[days.isin(list(holiday_days))] = _SUNDAY
    return weekday


def _score_series(
    values: pd.Series,
    start: pd.Timestamp,
    spec: MetricSpec,
    holiday_days: frozenset[pd.Timestamp],
) -> pd.DataFrame | None:
    """Detection-window rows of one series; None if its history is too short or nothing to score."""
    observed = values[values.index < start].dropna()
    detection = values[values.index >= start].dropna()
    if len(observed) < spec.min_history_days or detection.empty:
        return None

    # STL needs an unbroken daily grid: missing days (late loads, outages) are interpolated
    # for fitting only, and never count towards the residual scale.
    grid = pd.date_range(observed.index.min(), start - pd.Timedelta(days=1), freq="D")
    train = observed.reindex(grid).interpolate(method="linear", limit_direction="both")
    # robust=True down-weights past incidents and holidays instead of learning them as normal.
    fit = STL(train.to_numpy(), period=_WEEK, robust=True).fit()
    trend = np.asarray(fit.trend)
    seasonal = np.asarray(fit.seasonal)

    # The latest seasonal estimate per weekday; holidays take Sunday's.
    weekday_effect = np.empty(_WEEK)
    for offset in range(1, _WEEK + 1):
        weekday_effect[grid[-offset].weekday()] = seasonal[-offset]

    is_holiday = grid.isin(list(holiday_days))
    usable = grid.isin(observed.index) & ~is_holiday
    residuals = np.asarray(fit.resid)[usable]
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(residuals - np.median(residuals))))
    sigma = max(sigma, _RELATIVE_SIGMA_FLOOR * float(np.median(np.abs(observed))), 1e-12)

    slope = float(np.median(np.diff(trend[-(_SLOPE_DAYS + 1) :])))
    horizon = ((detection.index - grid[-1]).days).to_numpy()
    expected = (
        trend[-1]
        + slope * horizon
        + weekday_effect[_effective_weekday(detection.index, holiday_days)]
    )
    # Forecasts further ahead are less certain; widen like a random-walk trend would.
    spread = sigma * np.sqrt(1.0 + horizon / len(grid))

    z = NormalDist().inv_cdf(0.5 + spec.anomaly_prob_threshold / 2)
    lower = expected - z * spread
    upper = expected + z * spread
    actual = detection.to_numpy()
    # Two-sided normal mass inside |residual|, as BigQuery ML reports anomaly_probability.
    probability = np.array([math.erf(abs(r) / math.sqrt(2)) for r in (actual - expected) / spread])
    above = actual > upper
    below = actual < lower
    direction = {"spike": above, "drop": below, "both": above | below}[spec.direction]
    return pd.DataFrame(
        {
            "metric_day": detection.index.date,
            "value": actual,
            "is_anomaly": direction,
            "lower_bound": lower,
            "upper_bound": upper,
            "anomaly_probability": probability,
        }
    )


def _assemble(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        empty = {
            "metric": pd.Series(dtype=object),
            "series_id": pd.Series(dtype=object),
            "metric_day": pd.Series(dtype=object),
            "value": pd.Series(dtype=float),
            "is_anomaly": pd.Series(dtype=bool),
            "lower_bound": pd.Series(dtype=float),
            "upper_bound": pd.Series(dtype=float),
            "anomaly_probability": pd.Series(dtype=float),
        }
        return pd.DataFrame(empty, columns=list(OUTPUT_COLUMNS))
    result = pd.concat(frames, ignore_index=True)
    return result.loc[:, list(OUTPUT_COLUMNS)]
