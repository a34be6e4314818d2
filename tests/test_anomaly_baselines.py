"""The benchmark's peers (bench/anomaly_baselines.py) on series whose answer is known by hand.

So that no baseline can silently be made weak: each one must find what a person computing it
on paper would find. Prophet and statsforecast are bench-only packages: their tests run where
the bench group is installed (`make bench-anomaly` installs it) and are skipped elsewhere.
"""

import math

import numpy as np
import pytest

from bench import anomaly_baselines as base


def test_rolling_zscore_excludes_the_tested_day() -> None:
    values = np.array([2.0, 4.0, 4.0, 6.0, 10.0])

    (score,) = base.rolling_zscore(values, [4], window=4)

    # Mean 4, sample std sqrt(8 / 3): z = 6 / 1.633.
    assert score == pytest.approx(6 / math.sqrt(8 / 3))


def test_rolling_zscore_can_exceed_the_bound_of_a_window_holding_the_point() -> None:
    # With the tested point inside 14 points, |z| <= 13 / sqrt(14) = 3.47 whatever the spike.
    values = np.array([99.0, 101.0] * 7 + [130.0])

    (score,) = base.rolling_zscore(values, [14], window=14)

    assert score == pytest.approx(30 / np.std([99.0, 101.0] * 7, ddof=1))
    assert score > 13 / math.sqrt(14)


def test_rolling_zscore_skips_missing_days_and_needs_three_points() -> None:
    values = np.array([np.nan, 10.0, np.nan, 12.0, 14.0, 20.0])

    first, last = base.rolling_zscore(values, [3, 5], window=5)

    assert first == 0.0  # one observed day before it: no standard deviation
    assert last == pytest.approx(8 / 2)  # mean 12, std 2 over 10, 12, 14


def test_weekday_zscore_reads_the_same_weekday_only() -> None:
    # Mondays alternate 98 / 102 for eight weeks; the other days are far away and must not
    # count. The ninth Monday is 110: z = 10 / std(98, 102, ...).
    days = np.full(7 * 9, 500.0)
    days[0::7] = [98.0, 102.0] * 4 + [110.0]

    (score,) = base.weekday_zscore(days, [56])

    assert score == pytest.approx(10 / np.std([98.0, 102.0] * 4, ddof=1))


def test_stl_forecasts_the_weekly_pattern_and_flags_a_jump() -> None:
    rng = np.random.default_rng(0)
    pattern = np.array([100.0, 120.0, 110.0, 105.0, 130.0, 60.0, 50.0])
    values = np.tile(pattern, 14) + rng.normal(0, 1, 98)
    n_train = 91
    values[n_train + 3] += 20  # twenty noise sigmas on the fourth forecast day

    scores = base.stl_scores(values, n_train, range(n_train, 98))

    assert scores[3] > 8
    assert np.all(np.delete(scores, 3) < 4)


def test_interval_scores_measure_errors_in_interval_sigmas() -> None:
    half_width = base.Z99 * 5.0

    scores = base.interval_scores(
        np.array([115.0, 90.0]),
        np.array([100.0, 100.0]),
        np.array([100.0 - half_width, 100.0 - half_width]),
        np.array([100.0 + half_width, 100.0 + half_width]),
    )

    assert scores == pytest.approx([3.0, 2.0])


def _weekly_panel(seed: int, weeks: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + 7 * weeks)
    pattern = np.array([100.0, 120.0, 110.0, 105.0, 130.0, 60.0, 50.0])
    return days, np.tile(pattern, weeks) + rng.normal(0, 1, 7 * weeks)


def test_prophet_interval_holds_the_pattern_and_not_a_jump() -> None:
    pytest.importorskip("prophet")
    days, values = _weekly_panel(1)
    history, ahead = days[:-7], days[-7:]

    forecast = base.prophet_forecast(history, values[:-7], ahead, "US")

    expected = forecast["expected"].to_numpy()
    assert np.abs(expected - values[-7:]).max() < 5
    jump = base.interval_scores(
        values[-7:] + 30, expected, forecast["lower"].to_numpy(), forecast["upper"].to_numpy()
    )
    assert (jump > base.Z99).all()


def test_statsforecast_intervals_hold_the_pattern_and_not_a_jump() -> None:
    pytest.importorskip("statsforecast")
    days, values = _weekly_panel(2)

    forecasts = base.statsforecast_scores([("s", days[:-7], values[:-7])], horizon=7)

    for model in ("mstl", "autoets"):
        frame = forecasts[model]["s"]
        expected = frame["expected"].to_numpy()
        assert np.abs(expected - values[-7:]).max() < 5, model
        honest = base.interval_scores(
            values[-7:], expected, frame["lower"].to_numpy(), frame["upper"].to_numpy()
        )
        jump = base.interval_scores(
            values[-7:] + 30, expected, frame["lower"].to_numpy(), frame["upper"].to_numpy()
        )
        assert (honest < base.Z99).all() and (jump > base.Z99).all(), model
