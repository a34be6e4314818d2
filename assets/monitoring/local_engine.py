"""Anomaly detection on the embedded default (DuckDB): a robust weekly-seasonal forecast per series.

A small, deterministic stand-in for BigQuery ML's ARIMA_PLUS. For each series it fits, on the
weeks before the detection window, a robust (Huber) regression on day-of-week dummies plus a
linear trend, with public holidays given the Sunday dummy. Each detection day gets
`expected ± z·sigma`, z being the two-sided normal quantile of the metric's probability threshold
exactly as `ML.DETECT_ANOMALIES` derives its bounds, and the same `anomaly_probability`.
Non-negative series are modelled on a log scale, so their bounds are multiplicative. The output
has the columns the BigQuery engine returns, so the asset stores either without caring.

Why a regression rather than STL: STL's smoothers absorb part of the noise, so its in-sample
residuals understate the forecast error and a 0.999 threshold flagged several percent of clean
points. The regression's scale is honest, holidays fit in as a dummy, missing days are simply
absent rows (nothing interpolated into the fit), and the prediction variance includes the
uncertainty of the fitted weekday pattern and trend.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from statistics import NormalDist

import holidays
import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS
from statsmodels.robust.norms import HuberT
from statsmodels.robust.robust_linear_model import RLM
from statsmodels.robust.scale import HuberScale

from assets.monitoring.metrics import RESULT_COLUMNS, MetricSpec

_WEEK = 7
_SUNDAY = 6
# Eight weeks describe the current normal; a straight trend over much longer history would not.
_TRAINING_DAYS = 56
# A perfectly regular series has no residual spread; without a floor, rounding noise would be
# "anomalous". On the log scale this is a relative 0.1 %.
_SIGMA_FLOOR = 1e-3


def detect_anomalies(
    history: pd.DataFrame, detection_start: dt.date, specs: Mapping[str, MetricSpec]
) -> pd.DataFrame:
    """Score every day on or after `detection_start` of every series of the metrics in `specs`.

    `history` has columns metric, series_id, metric_day, value (one row per series and day).
    A series is fitted on its last `max(56, min_history_days)` days before `detection_start` and
    left out of the result when fewer than `min_history_days` of them have a value; the caller
    reports series it did not get back. Rows of metrics not in `specs` are ignored.
    """
    data = history.loc[
        history["metric"].isin(list(specs)), ["metric", "series_id", "metric_day", "value"]
    ]
    data = data.assign(
        metric_day=pd.to_datetime(data["metric_day"]).dt.normalize(),
        value=data["value"].astype(float),
    ).dropna(subset=["value"])
    start = pd.Timestamp(detection_start)
    calendars = _holiday_calendars({s.holiday_region for s in specs.values()}, data["metric_day"])
    frames = []
    for (metric, series_id), series in data.groupby(["metric", "series_id"], sort=True):
        spec = specs[metric]
        values = series.set_index("metric_day")["value"].sort_index()
        scored = _score_series(values, start, spec, calendars[spec.holiday_region])
        if scored is not None:
            frames.append(scored.assign(metric=metric, series_id=series_id))
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(frames, ignore_index=True).loc[:, list(RESULT_COLUMNS)]


def _holiday_calendars(regions: Iterable[str], days: pd.Series) -> dict[str, pd.DatetimeIndex]:
    years = range(days.min().year, days.max().year + 1) if not days.empty else range(0)
    return {
        region: pd.DatetimeIndex(sorted(holidays.country_holidays(region, years=years)))
        for region in regions
    }


def _day_type(days: pd.DatetimeIndex, holiday_days: pd.DatetimeIndex) -> np.ndarray:
    """Monday=0 … Sunday=6, public holidays counted as Sundays: shops and offices close."""
    day_type = days.weekday.to_numpy().copy()
    day_type[days.isin(holiday_days)] = _SUNDAY
    return day_type


def _design(
    days: pd.DatetimeIndex, origin: pd.Timestamp, holiday_days: pd.DatetimeIndex
) -> np.ndarray:
    """One dummy per day type (no intercept: the dummies span it) and the trend in weeks."""
    design = np.zeros((len(days), _WEEK + 1))
    design[np.arange(len(days)), _day_type(days, holiday_days)] = 1.0
    design[:, _WEEK] = (days - origin).days.to_numpy() / _WEEK
    return design


def _score_series(
    values: pd.Series,
    start: pd.Timestamp,
    spec: MetricSpec,
    holiday_days: pd.DatetimeIndex,
) -> pd.DataFrame | None:
    """Detection-window rows of one series; None if its history is too short or nothing to score."""
    window_start = start - pd.Timedelta(days=max(_TRAINING_DAYS, spec.min_history_days))
    train = values[(values.index >= window_start) & (values.index < start)]
    detection = values[values.index >= start]
    if len(train) < spec.min_history_days or detection.empty:
        return None

    # Business metrics vary multiplicatively (a Saturday swings more than a Tuesday); on a log
    # scale the spread is the same every day. Net amounts that go negative stay linear.
    log_scale = bool((train >= 0).all() and (detection >= 0).all())
    forward, inverse = (np.log1p, np.expm1) if log_scale else (np.asarray, np.asarray)

    x_train = _design(train.index, train.index[0], holiday_days)
    x_detect = _design(detection.index, train.index[0], holiday_days)
    # A day type never seen in training (say, no Sunday rows at all) cannot be forecast.
    seen = x_train[:, :_WEEK].any(axis=0)
    forecastable = x_detect[:, :_WEEK] @ seen > 0
    if not forecastable.any():
        return None
    detection, x_detect = detection[forecastable], x_detect[forecastable]

    y_train = forward(train.to_numpy())
    params, sigma = _robust_fit(x_train, y_train)
    floor = _SIGMA_FLOOR * (1.0 if log_scale else max(float(np.median(np.abs(y_train))), 1.0))
    sigma = max(sigma, floor)
    # Prediction variance: noise plus the uncertainty of the fitted weekday levels and trend.
    leverage = np.einsum("ij,jk,ik->i", x_detect, np.linalg.pinv(x_train.T @ x_train), x_detect)
    spread = sigma * np.sqrt(1.0 + leverage)
    expected = x_detect @ params

    z = NormalDist().inv_cdf(0.5 + spec.anomaly_prob_threshold / 2)
    actual = detection.to_numpy()
    lower = inverse(expected - z * spread)
    upper = inverse(expected + z * spread)
    # Two-sided normal mass within |residual|, as BigQuery ML reports anomaly_probability.
    scaled = np.abs(forward(actual) - expected) / spread
    probability = np.array([math.erf(s / math.sqrt(2)) for s in scaled])
    above = actual > upper
    below = actual < lower
    outside = {"spike": above, "drop": below, "both": above | below}[spec.direction]
    return pd.DataFrame(
        {
            "metric_day": detection.index.date,
            "value": actual,
            "is_anomaly": outside,
            "lower_bound": lower,
            "upper_bound": upper,
            "anomaly_probability": probability,
        }
    )


def _robust_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Huber regression with Huber's proposal-2 scale: past incidents get down-weighted.

    The scale is a robust standard deviation that, unlike a bare MAD of ~56 residuals, is
    stable enough for a 0.999 threshold to mean roughly one false alarm per thousand points.
    """
    try:
        # An exact fit divides zero by zero on the way to the ValueError handled below.
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = RLM(y, x, M=HuberT()).fit(scale_est=HuberScale())
    except ValueError:
        # IRLS is infeasible when the fit is exact (e.g. a series that is always 0); then least
        # squares is exact too, and the sigma floor decides.
        fit = OLS(y, x).fit()
        return np.asarray(fit.params), 0.0
    return np.asarray(fit.params), float(fit.scale)
