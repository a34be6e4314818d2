"""Anomaly detection on the embedded default (DuckDB), in the spirit of BigQuery ML's ARIMA_PLUS.

ARIMA_PLUS prepares each series before fitting it: it infers the data frequency, interpolates
missing points, cleans spikes and dips out of the training data, adjusts step changes, removes
weekly and yearly seasonality and holiday effects, and forecasts with an interval; a point is
anomalous when it falls outside the interval at the requested probability. This engine does the
same steps with robust least squares, deterministically and in milliseconds per series:

1. Frequency: DAILY/WEEKLY/MONTHLY from the metric, or inferred from the median spacing.
2. The series is put on a regular grid; missing points are interpolated for change detection
   and carry no weight in fits.
3. Feedback incidents (`monitoring.anomaly_feedback`) are removed from the training data.
4. A robust (Huber) regression on the training window: day type (weekday, or public holiday of
   the metric's region), yearly and monthly Fourier terms and a piecewise-linear level. Points
   far outside it are spikes/dips and get no weight in any later fit.
5. Step changes: a sudden, lasting move of the level is found by comparing medians before and
   after each day and added as a step, so the model learns the new level instead of averaging
   two regimes (or, like a z-score, calling every day after the step an anomaly forever).
6. Forecast: seasonality plus a local robust linear level fitted on the weeks since the last
   step; the interval width comes from the residual scale, the uncertainty of the local level
   and a backtest of the same forecast on the last weeks of training.
7. Reference view (slow drifts): seasonality plus the median level of three weeks before the
   end of training, with an interval read off the series' own history of the same statistic.
   A point is normal only inside both intervals; the reported range is their intersection.

Output columns equal `ML.DETECT_ANOMALIES`' (see metrics.RESULT_COLUMNS): `anomaly_probability`
is the two-sided normal mass within the residual, bounds are `expected ± z·sigma` for the
metric's threshold. Non-negative series are modelled on a log scale (multiplicative effects).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from statistics import NormalDist

import holidays
import numpy as np
import pandas as pd

from assets.monitoring.metrics import RESULT_COLUMNS, MetricSpec

# Grid step in days per frequency; MONTHLY positions count calendar months.
_STEP_DAYS = {"DAILY": 1, "WEEKLY": 7, "MONTHLY": 30}
_YEAR_DAYS = 365.25
# Per frequency, in grid points: spacing of the level's hinges, and the local level window.
_KNOT_SPACING = {"DAILY": 28, "WEEKLY": 8, "MONTHLY": 6}
_LOCAL_WINDOW = {"DAILY": 84, "WEEKLY": 16, "MONTHLY": 12}
# Step changes: half-window of the before/after medians, and the least jump (in sigmas).
_STEP_HALF_WINDOW = {"DAILY": 14, "WEEKLY": 6, "MONTHLY": 4}
_STEP_MIN_SIGMAS = 3.0
_MAX_STEPS = 4
_HUBER_C = 1.345
# Ridge on the level's changes of slope; dimensionless (residuals and slopes share units).
_HINGE_PENALTY = 1.0
# Training points further out than this (in robust sigmas) are spikes or dips: no weight.
_OUTLIER_SIGMAS = 4.0
_FOURIER_YEARLY = 3
_FOURIER_MONTHLY = 2
# A perfectly regular series has no residual spread; without a floor, rounding noise would be
# "anomalous". On the log scale this is a relative 0.1 %.
_SIGMA_FLOOR = 1e-3
_MAD_TO_SIGMA = 1.4826
_BACKTEST_OVERRIDE = 1.5
# The reference view (slow drifts): its level is the median of `window` points ending `gap`
# points before training ends; it needs this many past errors to know its own scale, and its
# interval is this much wider than that scale (a few weeks of errors are a rough sample).
_REFERENCE_GAP = {"DAILY": 21, "WEEKLY": 4, "MONTHLY": 3}
_REFERENCE_WINDOW = {"DAILY": 21, "WEEKLY": 6, "MONTHLY": 6}
_REFERENCE_MIN_ERRORS = 14
_REFERENCE_WIDEN = 1.0
# datetime64[D] counts days from 1970-01-01; `holidays` and feedback use proleptic ordinals.
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def detect_anomalies(
    history: pd.DataFrame,
    detection_start: dt.date,
    spec: MetricSpec,
    incidents: Collection[tuple[str, dt.date]] = (),
) -> pd.DataFrame:
    """Score every point on or after `detection_start` of every series of one metric.

    `history` has columns series_id, metric_day, value (one row per series and day, as
    metrics.series_sql returns them). `incidents` are (series_id, day) pairs confirmed as
    incidents: they are left out of training. A series with fewer than `min_history_days`
    training points is left out of the result; the caller reports it.
    """
    data = history.loc[:, ["series_id", "metric_day", "value"]].assign(
        metric_day=pd.to_datetime(history["metric_day"]).dt.normalize(),
        value=pd.to_numeric(history["value"], errors="coerce").astype(float),
    )
    data = data.dropna(subset=["value"])
    start = pd.Timestamp(detection_start)
    holiday_days = holiday_ordinals(spec.holiday_region, data["metric_day"])
    excluded: dict[str, set[int]] = {}
    for series_id, day in incidents:
        excluded.setdefault(str(series_id), set()).add(pd.Timestamp(day).toordinal())
    frames = []
    for series_id, series in data.groupby("series_id", sort=True):
        ordered = series.sort_values("metric_day")
        scored = score_series(
            ordered["metric_day"].to_numpy(dtype="datetime64[D]"),
            ordered["value"].to_numpy(),
            start,
            spec,
            holiday_days,
            excluded.get(str(series_id), set()),
        )
        if scored is not None:
            frames.append(scored.assign(metric=spec.name, series_id=series_id))
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(frames, ignore_index=True).loc[:, list(RESULT_COLUMNS)]


def holiday_ordinals(region: str, days: Iterable[pd.Timestamp] | pd.Series) -> frozenset[int]:
    """Proleptic ordinals of the region's public holidays over the years of `days`."""
    days = pd.Series(days)
    if days.empty:
        return frozenset()
    years = range(days.min().year - 1, days.max().year + 2)
    return frozenset(d.toordinal() for d in holidays.country_holidays(region, years=years))


@dataclass(frozen=True)
class _Grid:
    """A series on a regular grid: position p has date `dates[p]` and value `values[p]`."""

    frequency: str
    dates: np.ndarray  # datetime64[D]
    values: np.ndarray  # NaN where missing


def infer_frequency(days: np.ndarray) -> str:
    """DAILY, WEEKLY or MONTHLY from the median spacing of the observed days."""
    if len(days) < 2:
        return "DAILY"
    spacing = float(np.median(np.diff(days).astype("timedelta64[D]").astype(float)))
    if spacing < 4:
        return "DAILY"
    return "WEEKLY" if spacing < 20 else "MONTHLY"


def _grid(days: np.ndarray, values: np.ndarray, frequency: str) -> _Grid:
    if frequency == "MONTHLY":
        months = days.astype("datetime64[M]")
        position = (months - months[0]).astype(int)
        dates = (months[0] + np.arange(position[-1] + 1)).astype("datetime64[D]")
    else:
        step = _STEP_DAYS[frequency]
        offset = (days - days[0]).astype(int)
        position = np.rint(offset / step).astype(int)
        dates = days[0] + np.arange(position[-1] + 1) * step
    grid = np.full(len(dates), np.nan)
    grid[position] = values  # two observations in one slot: the later one wins
    # Observed points keep their own day (a month-end, a Tuesday week): results join on it.
    dates[position] = days
    return _Grid(frequency, dates, grid)


def score_series(
    days: np.ndarray,
    values: np.ndarray,
    start: pd.Timestamp,
    spec: MetricSpec,
    holiday_days: frozenset[int],
    excluded: Collection[int] = (),
) -> pd.DataFrame | None:
    """Detection rows of one series (days ascending, no NaN); None if it cannot be scored."""
    start_day = np.datetime64(start.date(), "D")
    earliest = start_day - np.timedelta64(spec.training_days, "D")
    keep = days >= earliest
    days, values = days[keep], values[keep]
    is_training = days < start_day
    if is_training.sum() < spec.min_history_days or is_training.all():
        return None
    frequency = spec.frequency
    if frequency == "AUTO_FREQUENCY":
        frequency = infer_frequency(days[is_training])
    grid = _grid(days, values, frequency)
    n_train = int(np.searchsorted(grid.dates, start_day))
    observed = ~np.isnan(grid.values)

    log_scale = bool(np.nanmin(grid.values) >= 0)
    y = np.log1p(grid.values) if log_scale else grid.values.copy()
    weights = observed[:n_train].astype(float)
    if excluded:
        ordinals = grid.dates[:n_train].astype(int) + _EPOCH_ORDINAL
        weights[np.isin(ordinals, list(excluded))] = 0.0
    if weights.sum() < spec.min_history_days:
        return None

    seasonal, level_columns = _seasonal_design(grid, holiday_days, n_train)
    model = _fit_training(y[:n_train], weights, seasonal[:n_train], level_columns, frequency)
    views = _forecast(y[:n_train], model, seasonal, frequency, n_train)

    detect = np.flatnonzero(observed[n_train:]) + n_train
    z = NormalDist().inv_cdf(0.5 + spec.anomaly_prob_threshold / 2)
    forward, inverse = (np.log1p, np.expm1) if log_scale else (_identity, _identity)
    actual = grid.values[detect]
    # A point is normal only inside every view's interval: the expected range is their
    # intersection, and the probability is that of the view the point is furthest out of.
    centres = np.stack([centre[detect - n_train] for centre, _ in views])
    widths = np.stack([spread[detect - n_train] for _, spread in views])
    low = np.max(centres - z * widths, axis=0)
    high = np.min(centres + z * widths, axis=0)
    # Views that disagree completely leave no normal value: the range shrinks to their middle.
    low, high = (
        np.where(low > high, (low + high) / 2, low),
        np.where(low > high, (low + high) / 2, high),
    )
    lower, upper = inverse(low), inverse(high)
    scaled = np.max(np.abs(forward(actual) - centres) / widths, axis=0)
    probability = np.array([math.erf(s / math.sqrt(2)) for s in scaled])
    outside = {
        "spike": actual > upper,
        "drop": actual < lower,
        "both": (actual > upper) | (actual < lower),
    }[spec.direction]
    return pd.DataFrame(
        {
            "metric_day": grid.dates[detect].astype(object),
            "value": actual,
            "is_anomaly": outside,
            "lower_bound": lower,
            "upper_bound": upper,
            "anomaly_probability": probability,
        }
    )


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _seasonal_design(
    grid: _Grid, holiday_days: frozenset[int], n_train: int
) -> tuple[np.ndarray, int]:
    """Columns of the repeating part of a series, over training and detection positions.

    Daily: one dummy per day type (they span the intercept): the weekdays, and a public
    holiday falling Monday to Friday, once training saw three of those (before that, such
    holidays count as Sundays: shops and offices close). A holiday on a weekend is just a
    weekend. Other frequencies: an intercept. Yearly Fourier terms once training
    covers more than a year, monthly ones (paydays, month ends) for daily series of three
    months or more. Also returns how many leading columns carry the level (dummies or
    intercept).
    """
    dates = grid.dates
    n = len(dates)
    span_days = float((dates[n_train - 1] - dates[0]).astype(int)) if n_train else 0.0
    columns: list[np.ndarray] = []
    if grid.frequency == "DAILY":
        weekday = (dates.astype(int) + 3) % 7  # 1970-01-01 was a Thursday
        ordinals = dates.astype(int) + _EPOCH_ORDINAL
        holiday = np.isin(ordinals, list(holiday_days)) if holiday_days else np.zeros(n, bool)
        closed = holiday & (weekday < 5)
        own_type = closed[:n_train].sum() >= 3
        day_type = np.where(closed, 7 if own_type else 6, weekday)
        columns += [(day_type == k).astype(float) for k in range(8 if own_type else 7)]
    else:
        columns.append(np.ones(n))
    level_columns = len(columns)
    if span_days > _YEAR_DAYS + 60:
        year_phase = 2 * np.pi * dates.astype(float) / _YEAR_DAYS
        for k in range(1, _FOURIER_YEARLY + 1):
            columns += [np.sin(k * year_phase), np.cos(k * year_phase)]
    if grid.frequency == "DAILY" and span_days >= 90:
        day_of_month = (dates - dates.astype("datetime64[M]")).astype(int)
        month_days = (
            (dates.astype("datetime64[M]") + 1).astype("datetime64[D]")
            - dates.astype("datetime64[M]").astype("datetime64[D]")
        ).astype(int)
        month_phase = 2 * np.pi * day_of_month / month_days
        for k in range(1, _FOURIER_MONTHLY + 1):
            columns += [np.sin(k * month_phase), np.cos(k * month_phase)]
    return np.column_stack(columns), level_columns


@dataclass(frozen=True)
class _TrainingFit:
    beta_seasonal: np.ndarray  # coefficients of the seasonal design (level removed)
    weights: np.ndarray  # 0 for missing, excluded and spike/dip points
    steps: tuple[int, ...]  # training positions where the level jumps
    sigma: float  # robust residual scale
    level_columns: int  # leading seasonal columns that are day-type dummies (or intercept)


def _fit_training(
    y: np.ndarray,
    weights: np.ndarray,
    seasonal: np.ndarray,
    level_columns: int,
    frequency: str,
) -> _TrainingFit:
    n = len(y)
    t = np.arange(n, dtype=float)
    filled = _interpolate(y, weights)
    spacing = _KNOT_SPACING[frequency]
    hinges = [np.maximum(t - k, 0.0) / spacing for k in range(spacing, n - spacing // 2, spacing)]
    trend = t / max(n, 1)
    # First pass: seasonality and a straight trend; its residuals show where the level jumps.
    base = np.column_stack([seasonal, trend])
    _, residual, sigma, _ = _robust_fit(base, filled, weights)
    # Every observed point counts here, outliers included: weeks of points all far off on
    # the same side are not spikes but a new level.
    steps = _find_steps(residual, weights, sigma, _STEP_HALF_WINDOW[frequency])
    step_columns = [(t >= s).astype(float) for s in steps]
    # Second pass: plus the steps and a piecewise-linear level between hinges. The hinges are
    # penalised (a smoothing spline, in effect): a bend of the level costs, so the repeating
    # pattern is left to the free seasonal terms, and the level cannot mimic a season.
    design = np.column_stack([seasonal, trend, *step_columns, *hinges])
    penalty = np.zeros(design.shape[1])
    penalty[design.shape[1] - len(hinges) :] = _HINGE_PENALTY
    beta, _, sigma, clean = _robust_fit(design, filled, weights, penalty)
    beta_seasonal = beta[: seasonal.shape[1]].copy()
    # The leading dummies (or intercept) carry the level: keep only their deviations from it.
    beta_seasonal[:level_columns] -= beta_seasonal[:level_columns].mean()
    return _TrainingFit(beta_seasonal, clean, tuple(steps), sigma, level_columns)


def _interpolate(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Gaps (and excluded points) filled linearly, so medians and windows see a regular series."""
    known = weights > 0
    if known.all():
        return y.copy()
    positions = np.arange(len(y))
    return np.interp(positions, positions[known], y[known])


def _robust_fit(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    penalty: np.ndarray | None = None,
    iterations: int = 6,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Huber IRLS; then points beyond `_OUTLIER_SIGMAS` lose their weight and it is refitted.

    Returns coefficients, residuals (all rows), robust sigma and the cleaned prior weights.
    """
    prior = weights.copy()
    beta, residual, sigma = _huber(x, y, prior, iterations, penalty)
    outliers = np.abs(residual) > _OUTLIER_SIGMAS * sigma
    if (outliers & (prior > 0)).any():
        prior = np.where(outliers, 0.0, prior)
        beta, residual, sigma = _huber(x, y, prior, iterations, penalty)
    return beta, residual, sigma, prior


def _huber(
    x: np.ndarray,
    y: np.ndarray,
    prior: np.ndarray,
    iterations: int,
    penalty: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Huber IRLS through the normal equations; `penalty` is a ridge per column (or none)."""
    fitted = prior > 0
    w = prior.copy()
    ridge = np.diag(penalty) if penalty is not None else 0.0
    beta = np.zeros(x.shape[1])
    sigma = _SIGMA_FLOOR
    for _ in range(iterations):
        xw = x * w[:, None]
        # einsum, not `@`: a multithreaded BLAS spends more time waking threads than working
        # on matrices this small, and on a busy machine ten times more (measured).
        normal = np.einsum("ij,ik->jk", xw, x) + ridge
        # A whisper of ridge keeps a column without data (a weekday never observed) from
        # making the system singular; its coefficient stays ~0.
        diagonal = np.diag_indices_from(normal)
        normal[diagonal] += 1e-10 * normal[diagonal] + 1e-12
        previous, beta = beta, np.linalg.solve(normal, np.einsum("ij,i->j", xw, y))
        residual = y - x @ beta
        sigma = max(_MAD_TO_SIGMA * float(np.median(np.abs(residual[fitted]))), _SIGMA_FLOOR)
        if np.max(np.abs(beta - previous)) < 1e-4 * sigma:
            break  # converged: the weights would not change
        u = np.abs(residual) / (_HUBER_C * sigma)
        w = prior * np.minimum(1.0, 1.0 / np.maximum(u, 1e-12))
    residual = y - x @ beta
    # The MAD steers the weights, but on a few dozen points it is too noisy (and too low as
    # often as not) for a 0.999 interval: the scale is the RMS of the points within the outlier
    # cut, corrected for the parameters fitted. Gross outliers are gone before the final fit.
    inside = fitted & (np.abs(residual) <= _OUTLIER_SIGMAS * sigma)
    dof = max(int(inside.sum()) - x.shape[1], 1)
    rms = math.sqrt(float(np.sum(residual[inside] ** 2)) / dof)
    return beta, residual, max(rms, _SIGMA_FLOOR)


def _find_steps(residual: np.ndarray, clean: np.ndarray, sigma: float, half: int) -> list[int]:
    """Positions where the median of the next `half` points leaves that of the previous ones.

    Greedy: the largest jump first, then the largest one at least `half` points away, and so
    on. A jump must exceed `_STEP_MIN_SIGMAS` sigmas, far more than two medians of `half`
    points differ by chance (about 0.5 sigma for 14 points).
    """
    n = len(residual)
    if n < 2 * half + 1:
        return []
    series = pd.Series(np.where(clean > 0, residual, np.nan))
    before = series.rolling(half, min_periods=half // 2).median().shift(1).to_numpy()
    after = series[::-1].rolling(half, min_periods=half // 2).median()[::-1].to_numpy()
    jump = np.abs(after - before)
    jump[:half] = np.nan
    jump[n - max(half // 2, 3) :] = np.nan  # too few points after to tell a step from a spike
    steps: list[int] = []
    candidates = np.where(np.isnan(jump), 0.0, jump)
    while len(steps) < _MAX_STEPS:
        position = int(np.argmax(candidates))
        if candidates[position] <= _STEP_MIN_SIGMAS * sigma:
            break
        steps.append(position)
        candidates[max(position - half, 0) : position + half] = 0.0
    return sorted(steps)


def _forecast(
    y: np.ndarray, fit: _TrainingFit, seasonal: np.ndarray, frequency: str, n_train: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views of every position after training: (expected value, one-sigma spread) each.

    The model's own forecast, and where history allows the reference view, which catches
    a slow drift that the recent level has already partly followed.
    """
    n_all = seasonal.shape[0]
    season = seasonal @ fit.beta_seasonal
    # Missing, excluded and spike/dip points carry no weight; zero keeps NaN out of the algebra.
    level = np.where(fit.weights > 0, y[:n_train] - season[:n_train], 0.0)
    horizon = n_all - n_train
    window = _LOCAL_WINDOW[frequency]
    since = max([0, n_train - window, *fit.steps])
    centre, spread = _local_level(level, fit.weights, since, n_train, horizon, fit.sigma)
    # Backtest: the same forecast made `horizon` points earlier, scored on the held-out tail.
    origin = n_train - max(horizon, window // 4)
    if origin - since >= window // 2:
        past, _ = _local_level(level, fit.weights, since, origin, n_train - origin, fit.sigma)
        held = fit.weights[origin:n_train] > 0
        errors = (level[origin:n_train] - past)[held]
        if len(errors) >= 5:
            # Fourteen errors give a rough scale: only a clearly larger one (a level that
            # wanders, as in autocorrelated series) overrides the model's own spread.
            backtest = _MAD_TO_SIGMA * float(np.median(np.abs(errors)))
            if backtest > _BACKTEST_OVERRIDE * float(spread.max()):
                spread = np.maximum(spread, backtest)
    # A day type's effect is a mean of its training points: a holiday seen three times is
    # known far less well than a Tuesday seen a hundred times, and the interval says so.
    dummies = seasonal[:, : fit.level_columns]
    seen = np.maximum(dummies[:n_train].T @ (fit.weights > 0), 1.0)
    spread = np.sqrt(spread**2 + fit.sigma**2 * (dummies[n_train:] @ (1.0 / seen)))
    views = [(season[n_train:] + centre, spread)]
    reference = _reference_view(level, fit, frequency, n_train, horizon)
    if reference is not None:
        offset, scale = reference
        views.append((season[n_train:] + offset, np.full(horizon, scale)))
    return views


def _reference_view(
    level: np.ndarray, fit: _TrainingFit, frequency: str, n_train: int, horizon: int
) -> tuple[float, float] | None:
    """The level of a few weeks ago, carried forward, with its empirical error; or None.

    A slow drift bends the recent level, and a forecast from the recent weeks follows it
    (its backtest even widens the interval). Measured from the median level of a window that
    ends `gap` points before training ends, the drift stands out. How far the level normally
    moves over such a gap is read off the series' own history: the same statistic (a point
    minus the median of the window `gap` points before it) at every earlier point gives the
    typical offset (a trend) and the scale, so a series whose level wanders gets a wide view.
    """
    gap, width = _REFERENCE_GAP[frequency], _REFERENCE_WINDOW[frequency]
    if n_train < gap + width + _REFERENCE_MIN_ERRORS:
        return None
    # After a step inside the reference span, the model's view already holds the new level.
    if any(step >= n_train - gap - width for step in fit.steps):
        return None
    known = fit.weights > 0
    medians = (
        pd.Series(np.where(known, level, np.nan))
        .rolling(width, min_periods=width // 2)
        .median()
        .to_numpy()
    )
    # Point t against the window ending at t - gap - horizon // 2: the window's middle day.
    lag = gap + horizon // 2
    t = np.arange(width + lag, n_train)
    errors = (level[t] - medians[t - lag])[known[t] & ~np.isnan(medians[t - lag])]
    if len(errors) < _REFERENCE_MIN_ERRORS or np.isnan(medians[n_train - 1 - gap]):
        return None
    typical = float(np.median(errors))
    scale = _MAD_TO_SIGMA * float(np.median(np.abs(errors - typical)))
    return medians[n_train - 1 - gap] + typical, _REFERENCE_WIDEN * max(scale, fit.sigma)


def _local_level(
    level: np.ndarray,
    weights: np.ndarray,
    since: int,
    until: int,
    horizon: int,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A robust line through the deseasonalised level on [since, until), projected ahead.

    Few points since a step: a constant (a slope from a handful of points would be noise).
    The spread adds the parameter uncertainty (leverage) to the residual noise.
    """
    t = np.arange(since, until, dtype=float)
    w = weights[since:until]
    ahead = np.arange(until, until + horizon, dtype=float)
    usable = int((w > 0).sum())
    if usable < 3:
        # Not enough since the step to learn anything: the last clean values, wide interval.
        known = np.flatnonzero(weights[:until] > 0)
        value = float(np.median(level[known[-3:]]))
        return np.full(horizon, value), np.full(horizon, 3 * sigma)
    centre_t = t.mean()
    if usable >= 14:
        x = np.column_stack([np.ones_like(t), t - centre_t])
        x_ahead = np.column_stack([np.ones_like(ahead), ahead - centre_t])
    else:
        x = np.ones((len(t), 1))
        x_ahead = np.ones((horizon, 1))
    beta, _, _ = _huber(x, level[since:until], w, iterations=6)
    used = x[w > 0]
    leverage = np.einsum("ij,jk,ik->i", x_ahead, np.linalg.pinv(used.T @ used), x_ahead)
    return x_ahead @ beta, sigma * np.sqrt(1.0 + leverage)
