"""The DuckDB-default anomaly engine on small, fixed series."""

import datetime as dt

import holidays
import numpy as np
import pandas as pd
import pytest

from assets.monitoring.local_engine import detect_anomalies, infer_frequency
from assets.monitoring.metrics import RESULT_COLUMNS, MetricSpec

# 63 days ending on Saturday 2025-05-10: the detection week holds Golden Week's Monday and
# Tuesday holidays (5 and 6 May), which must look like Sundays, not like an outage.
LAST_DAY = dt.date(2025, 5, 10)
DETECTION_START = dt.date(2025, 5, 4)
JP_HOLIDAYS = holidays.country_holidays("JP", years=[2025])
# Weekday profile Monday..Sunday; holidays take Sunday's.
WEEKLY = np.array([1.0, 1.0, 1.05, 1.0, 1.1, 0.6, 0.5])


def _series(
    series_id: str,
    *,
    seed: int,
    metric: str = "gmv",
    days: int = 63,
    base: float = 10_000.0,
    noise: float = 0.04,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    metric_days = [LAST_DAY - dt.timedelta(days=days - 1 - i) for i in range(days)]
    day_type = [6 if d in JP_HOLIDAYS else d.weekday() for d in metric_days]
    trend = 1 + 0.002 * np.arange(days)
    # Clipped noise: a clean series has no point a 0.999 threshold should call unusual, so any
    # flag on it is the model's fault, not the random draw's.
    shocks = np.clip(rng.standard_normal(days), -2.0, 2.0)
    values = base * trend * WEEKLY[day_type] * (1 + noise * shocks)
    return pd.DataFrame(
        {"metric": metric, "series_id": series_id, "metric_day": metric_days, "value": values}
    )


def _spec(direction: str = "both", **overrides: object) -> MetricSpec:
    return MetricSpec(
        name="gmv",
        description="test metric",
        direction=direction,
        schema="monitoring",
        model="monitoring_daily_metrics",
        timestamp_column="metric_day",
        value="SUM(value)",
        **overrides,
    )


def _scale(frame: pd.DataFrame, days: list[dt.date], factor: float) -> pd.DataFrame:
    frame = frame.copy()
    hit = frame["metric_day"].isin(days)
    frame.loc[hit, "value"] *= factor
    return frame


def _flagged(result: pd.DataFrame) -> set[tuple[str, dt.date]]:
    rows = result[result["is_anomaly"]]
    return set(zip(rows["series_id"], rows["metric_day"], strict=True))


def test_clean_weekly_series_with_holidays_stay_quiet() -> None:
    history = pd.concat([_series(f"s{seed}", seed=seed) for seed in range(8)])

    result = detect_anomalies(history, DETECTION_START, _spec())

    assert len(result) == 8 * 7
    assert not result["is_anomaly"].any()
    # The holiday Monday is forecast like a Sunday: its whole range lies below an ordinary
    # Wednesday's.
    s0 = result[result["series_id"] == "s0"].set_index("metric_day")
    assert s0.loc[dt.date(2025, 5, 5), "upper_bound"] < s0.loc[dt.date(2025, 5, 7), "lower_bound"]


def test_spike_on_last_day_is_found() -> None:
    history = pd.concat([_scale(_series("hit", seed=1), [LAST_DAY], 1.6), _series("clean", seed=2)])

    result = detect_anomalies(history, DETECTION_START, _spec("spike"))

    assert _flagged(result) == {("hit", LAST_DAY)}
    hit = result[(result["series_id"] == "hit") & (result["metric_day"] == LAST_DAY)].iloc[0]
    assert hit["value"] > hit["upper_bound"]
    assert hit["anomaly_probability"] > 0.999


def test_drop_on_last_day_is_found() -> None:
    history = pd.concat([_scale(_series("hit", seed=3), [LAST_DAY], 0.4), _series("ok", seed=4)])

    result = detect_anomalies(history, DETECTION_START, _spec("drop"))

    assert _flagged(result) == {("hit", LAST_DAY)}


def test_level_shift_is_found_on_every_shifted_day() -> None:
    shifted = [LAST_DAY - dt.timedelta(days=n) for n in range(3)]
    history = _scale(_series("shard", seed=5), shifted, 0.55)

    result = detect_anomalies(history, DETECTION_START, _spec())

    assert _flagged(result) == {("shard", day) for day in shifted}


@pytest.mark.parametrize(
    ("factor", "direction", "found"),
    [
        (1.6, "spike", True),
        (1.6, "drop", False),
        (1.6, "both", True),
        (0.4, "drop", True),
        (0.4, "spike", False),
        (0.4, "both", True),
    ],
)
def test_direction_decides_which_side_counts(factor: float, direction: str, found: bool) -> None:
    history = _scale(_series("s", seed=6), [LAST_DAY], factor)

    result = detect_anomalies(history, DETECTION_START, _spec(direction))

    assert _flagged(result) == ({("s", LAST_DAY)} if found else set())
    # The probability describes the point whatever the direction.
    last = result[result["metric_day"] == LAST_DAY].iloc[0]
    assert last["anomaly_probability"] > 0.999


def test_short_history_is_skipped() -> None:
    history = pd.concat([_series("young", seed=7, days=7 + 20), _series("old", seed=8)])

    result = detect_anomalies(history, DETECTION_START, _spec(min_history_days=28))

    assert set(result["series_id"]) == {"old"}


def test_missing_days_are_tolerated() -> None:
    history = _series("gappy", seed=9)
    missing = {dt.date(2025, 4, 1), dt.date(2025, 4, 2), dt.date(2025, 4, 20), dt.date(2025, 5, 8)}
    history = history[~history["metric_day"].isin(missing)]

    result = detect_anomalies(history, DETECTION_START, _spec())

    assert len(result) == 6  # the missing detection day is not invented
    assert dt.date(2025, 5, 8) not in set(result["metric_day"])
    assert not result["is_anomaly"].any()


def test_flat_series_does_not_fail_and_flags_any_change() -> None:
    days = [LAST_DAY - dt.timedelta(days=n) for n in range(63)]
    history = pd.DataFrame({"metric": "gmv", "series_id": "zero", "metric_day": days, "value": 0.0})
    history.loc[history["metric_day"] == LAST_DAY, "value"] = 5.0

    result = detect_anomalies(history, DETECTION_START, _spec())

    assert _flagged(result) == {("zero", LAST_DAY)}


def test_output_contract_and_determinism() -> None:
    history = pd.concat(
        [
            _scale(_series("a", seed=10), [LAST_DAY], 2.0),
            _series("b", seed=11),
        ]
    )

    first = detect_anomalies(history, DETECTION_START, _spec())
    second = detect_anomalies(history.sample(frac=1, random_state=0), DETECTION_START, _spec())

    assert tuple(first.columns) == RESULT_COLUMNS
    pd.testing.assert_frame_equal(first, second)
    assert set(first["metric"]) == {"gmv"}
    assert first["is_anomaly"].dtype == bool
    assert all(isinstance(day, dt.date) for day in first["metric_day"])
    assert first["anomaly_probability"].between(0, 1).all()
    assert (first["lower_bound"] < first["upper_bound"]).all()
    outside = (first["value"] < first["lower_bound"]) | (first["value"] > first["upper_bound"])
    assert (first["is_anomaly"] == outside).all()


def test_nothing_to_score_returns_the_empty_contract() -> None:
    history = _series("a", seed=13)

    result = detect_anomalies(history, LAST_DAY + dt.timedelta(days=1), _spec())

    assert result.empty
    assert tuple(result.columns) == RESULT_COLUMNS


def test_a_confirmed_incident_is_not_learned_as_the_new_normal() -> None:
    # Two weeks of inflated values right before the detection window: without feedback the
    # model takes them for a step change and calls the return to normal a drop on every day.
    incident = [DETECTION_START - dt.timedelta(days=n) for n in range(1, 15)]
    history = _scale(_series("s", seed=21, days=120), incident, 1.6)

    learned = detect_anomalies(history, DETECTION_START, _spec())
    excluded = detect_anomalies(
        history, DETECTION_START, _spec(), incidents=[("s", day) for day in incident]
    )

    assert learned["is_anomaly"].all()
    assert not excluded["is_anomaly"].any()


def test_a_lasting_step_change_in_training_becomes_the_new_level() -> None:
    # The same jump, but it lasts: the new level is normal, not a week of anomalies.
    shifted = [DETECTION_START + dt.timedelta(days=n) for n in range(-14, 7)]
    history = _scale(_series("s", seed=21, days=120), shifted, 1.6)

    result = detect_anomalies(history, DETECTION_START, _spec())

    assert not result["is_anomaly"].any()


def test_past_spikes_and_dips_are_cleaned_from_training() -> None:
    past = [dt.date(2025, 3, 12), dt.date(2025, 3, 27), dt.date(2025, 4, 15), dt.date(2025, 4, 23)]
    clean = _series("s", seed=22, days=120)
    polluted = _scale(_scale(clean, past[:2], 4.0), past[2:], 0.2)
    polluted = _scale(polluted, [LAST_DAY], 0.75)

    result = detect_anomalies(polluted, DETECTION_START, _spec())
    reference = detect_anomalies(clean, DETECTION_START, _spec())

    # A 25 % drop is still found: four wild days in history did not widen the interval.
    assert _flagged(result) == {("s", LAST_DAY)}
    widths = (result["upper_bound"] - result["lower_bound"]).iloc[:-1]
    reference_widths = (reference["upper_bound"] - reference["lower_bound"]).iloc[:-1]
    assert (widths < 1.1 * reference_widths).all()


def _daily_with_yearly_season(seed: int, days: int = 760) -> pd.DataFrame:
    """Two years of a seasonal business peaking in early May at 2.7 times its trough."""
    rng = np.random.default_rng(seed)
    metric_days = [LAST_DAY - dt.timedelta(days=days - 1 - i) for i in range(days)]
    day_of_year = np.array([d.timetuple().tm_yday for d in metric_days])
    weekday = np.array([d.weekday() for d in metric_days])
    season = np.exp(0.5 * np.sin(2 * np.pi * (day_of_year - 34) / 365.25))
    shocks = np.clip(rng.standard_normal(days), -2.0, 2.0)
    values = 5_000 * season * WEEKLY[weekday] * (1 + 0.03 * shocks)
    return pd.DataFrame({"series_id": "s", "metric_day": metric_days, "value": values})


def test_yearly_seasonality_is_forecast_not_flagged() -> None:
    # The detection week is the season's peak: a model without the yearly season would
    # extrapolate the spring's climb past it and call the turn a drop.
    history = _daily_with_yearly_season(seed=23)

    quiet = detect_anomalies(history, DETECTION_START, _spec(holiday_region="US"))
    dipped = detect_anomalies(
        _scale(history, [LAST_DAY], 0.8), DETECTION_START, _spec(holiday_region="US")
    )

    assert not quiet["is_anomaly"].any()
    assert _flagged(dipped) == {("s", LAST_DAY)}


def test_weekly_frequency_is_inferred_and_gaps_are_interpolated() -> None:
    rng = np.random.default_rng(24)
    weeks = [LAST_DAY - dt.timedelta(weeks=n) for n in range(103, -1, -1)]
    values = (
        1_000 * (1 + 0.002 * np.arange(104)) * (1 + 0.02 * np.clip(rng.standard_normal(104), -2, 2))
    )
    history = pd.DataFrame({"series_id": "w", "metric_day": weeks, "value": values})
    history = history.drop(index=[20, 21, 60])  # three missing weeks
    spec = _spec(frequency="AUTO_FREQUENCY", min_history_days=28)
    start = weeks[-4]

    quiet = detect_anomalies(history, start, spec)
    spiked = detect_anomalies(_scale(history, [weeks[-2]], 1.3), start, spec)

    assert infer_frequency(history["metric_day"].to_numpy(dtype="datetime64[D]")) == "WEEKLY"
    assert list(quiet["metric_day"]) == weeks[-4:]
    assert not quiet["is_anomaly"].any()
    assert _flagged(spiked) == {("w", weeks[-2])}


def test_monthly_series_keep_their_own_days() -> None:
    # Month-end reporting: the result must name the days the mart has, not month starts.
    month_ends = pd.date_range("2021-01-31", periods=52, freq="ME").date.tolist()
    rng = np.random.default_rng(25)
    season = 1 + 0.2 * np.sin(2 * np.pi * np.arange(52) / 12)
    values = 50_000 * season * (1 + 0.02 * np.clip(rng.standard_normal(52), -2, 2))
    history = pd.DataFrame({"series_id": "m", "metric_day": month_ends, "value": values})
    spec = _spec(frequency="AUTO_FREQUENCY", training_days=1500)

    result = detect_anomalies(_scale(history, [month_ends[-2]], 0.7), month_ends[-4], spec)

    assert list(result["metric_day"]) == month_ends[-4:]
    assert _flagged(result) == {("m", month_ends[-2])}


def test_outage_day_is_found() -> None:
    # A feed that broke for one day: 3 % of the usual value.
    history = _scale(_series("feed", seed=21), [LAST_DAY - dt.timedelta(days=2)], 0.03)

    result = detect_anomalies(history, DETECTION_START, _spec())

    assert _flagged(result) == {("feed", LAST_DAY - dt.timedelta(days=2))}


def _drifting(series_id: str, seed: int, drift: float, days: int = 120) -> pd.DataFrame:
    """A clean series whose last 21 days sink linearly, to `drift` (relative) on the last day."""
    frame = _series(series_id, seed=seed, days=days, noise=0.03)
    ramp = np.clip(np.arange(days) - (days - 21) + 1, 0, None) / 21
    frame["value"] *= 1 + drift * ramp
    return frame


def test_slow_drift_is_found_where_it_has_grown_and_a_clean_twin_stays_quiet() -> None:
    # The drift grows 1 % a day for three weeks: no single day jumps, but the last week lies
    # 15-21 % below the level of a month ago, five to seven noise sigmas.
    history = pd.concat([_drifting("sinking", 31, -0.21), _drifting("steady", 32, 0.0)])

    result = detect_anomalies(history, DETECTION_START, _spec())

    flagged = _flagged(result)
    assert ("sinking", LAST_DAY) in flagged
    assert not {day for series, day in flagged if series == "steady"}
    # The model's own recent level has followed the drift; the reference view is what flags
    # it, and the reported range says so: the value lies below it.
    last = result[(result["series_id"] == "sinking") & (result["metric_day"] == LAST_DAY)]
    assert (last["value"] < last["lower_bound"]).all()


def test_short_history_series_are_scored_quietly_and_find_a_spike() -> None:
    # 35 days: five weeks of history, enough for the default minimum (28) but not for the
    # reference view; the weekday model alone decides.
    clean = [_series(f"young{seed}", seed=seed, days=35) for seed in range(40, 46)]
    spiked = _scale(_series("young_hit", seed=46, days=35), [LAST_DAY - dt.timedelta(days=1)], 1.5)

    result = detect_anomalies(pd.concat([*clean, spiked]), DETECTION_START, _spec())

    assert set(result["series_id"]) == {f"young{seed}" for seed in range(40, 46)} | {"young_hit"}
    assert _flagged(result) == {("young_hit", LAST_DAY - dt.timedelta(days=1))}
