"""The labelled data of `make bench-anomaly`: every anomaly is labelled by construction.

Two kinds of series, all ending with a detection window whose points are the only ones scored:

- synthetic daily business series (730 days): level, trend (with a change of slope), weekly
  profile, yearly seasonality, Japanese public holidays, a month cycle in some, multiplicative
  log-normal or Poisson (small counts) noise; history polluted like real history is (past
  spikes and dips, a past level shift in some, missing days);
- real series shipped with statsmodels (weekly Mauna Loa CO2, monthly El Niño sea temperatures,
  monthly euro-area electrical equipment orders), cut into windows.

Into the detection window (14 days; 8 weeks; 6 months) go, by construction, one kind each:
nothing (a clean series), a spike, a dip (1–2 points), or a level shift (from a random point to
the end of the window; every shifted point is labelled). Magnitudes are drawn in units of the
series' own noise (synthetic: the known noise sigma; real: a robust sigma of first differences),
4–9 sigmas for spikes and dips, 4–8 for shifts; missing points inside the window are simply not
scored. Seeds make every run identical; `split` picks disjoint seeds (tuning vs test).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import holidays
import numpy as np

END_DAY = dt.date(2026, 10, 31)
DAILY_HISTORY = 730
DETECTION_POINTS = {"DAILY": 14, "WEEKLY": 8, "MONTHLY": 6}
KINDS = ("none", "spike", "dip", "level_shift")
# Seeds per split: the engine's constants were chosen on `tune`; results are reported on `test`.
SPLIT_SEED = {"tune": 1_000, "test": 2_000}


@dataclass
class LabelledSeries:
    series_id: str
    source: str  # synthetic | co2 | elnino | elec_equip
    frequency: str  # DAILY | WEEKLY | MONTHLY
    days: np.ndarray  # datetime64[D], ascending, only observed points
    values: np.ndarray
    detection_start: dt.date
    kind: str  # what was injected into the detection window
    sigma: float  # the noise unit of injected magnitudes (log units for synthetic series)
    labels: set[np.datetime64] = field(default_factory=set)  # anomalous scored days

    @property
    def scored(self) -> np.ndarray:
        """Days scored by every method: observed points in the detection window."""
        return self.days[self.days >= np.datetime64(self.detection_start, "D")]


def make_dataset(n_synthetic: int, real_repeats: int, split: str) -> list[LabelledSeries]:
    rng = np.random.default_rng(SPLIT_SEED[split])
    series = [synthetic_series(f"syn_{i:04d}", rng) for i in range(n_synthetic)]
    for repeat in range(real_repeats):
        for source, frequency, days, values in _real_windows():
            kind = KINDS[(len(series) + repeat) % len(KINDS)]
            series.append(
                _inject_real(
                    f"{source}_{repeat}_{len(series)}", source, frequency, days, values, kind, rng
                )
            )
    return series


def synthetic_series(
    series_id: str, rng: np.random.Generator, *, n_days: int = DAILY_HISTORY
) -> LabelledSeries:
    days = np.datetime64(END_DAY, "D") - np.arange(n_days)[::-1]
    t = np.arange(n_days, dtype=float)
    jp = holidays.country_holidays("JP", years=range(END_DAY.year - 3, END_DAY.year + 1))
    holiday = np.array([d.astype(object) in jp for d in days])
    weekday = (days.astype(int) + 3) % 7

    small_counts = rng.random() < 0.2
    level = np.log(rng.uniform(20, 300) if small_counts else np.exp(rng.uniform(5, 14)))
    # Trend: a slope in log units per year that changes once.
    slope = rng.uniform(-0.3, 0.6) / 365
    bend = int(rng.integers(200, n_days - 100))
    slope_after = slope + rng.uniform(-0.4, 0.4) / 365
    trend = np.where(t < bend, slope * t, slope * bend + slope_after * (t - bend))
    weekly_strength = rng.choice([0.0, 0.15, 0.4])
    weekly = weekly_strength * rng.normal(0, 1, 7)
    weekly -= weekly.mean()
    yearly = rng.uniform(0, 0.3) * np.sin(2 * np.pi * t / 365.25 + rng.uniform(0, 2 * np.pi))
    holiday_effect = rng.choice([-0.6, -0.3, 0.0, 0.25])
    month_cycle = 0.0
    if rng.random() < 0.3:
        day_of_month = (days - days.astype("datetime64[M]")).astype(int)
        month_cycle = 0.12 * np.cos(2 * np.pi * day_of_month / 30.4)
    log_mean = level + trend + weekly[weekday] + yearly + holiday_effect * holiday + month_cycle

    # A level shift long ago, and past incidents in the history: they must not be learned.
    detection = n_days - DETECTION_POINTS["DAILY"]
    if rng.random() < 0.3:
        at = int(rng.integers(60, detection - 60))
        log_mean[at:] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.6)
    noise_sigma = rng.uniform(0.02, 0.1)
    if small_counts:
        mean = np.exp(log_mean)
        values = rng.poisson(mean).astype(float)
        # The noise of a count in log units, for the magnitude of injected anomalies.
        sigma_at = 1 / np.sqrt(np.maximum(mean, 1.0))
    else:
        values = np.exp(log_mean + rng.normal(0, noise_sigma, n_days))
        sigma_at = np.full(n_days, noise_sigma)
    for at in rng.choice(detection - 30, size=int(rng.integers(0, 5)), replace=False):
        values[at] *= np.exp(rng.choice([-1, 1]) * rng.uniform(5, 10) * sigma_at[at])

    kind = KINDS[int(rng.integers(0, len(KINDS)))]
    labels = _inject(values, detection, kind, sigma_at, rng, multiplicative=True)
    observed = np.ones(n_days, bool)
    observed[rng.choice(n_days, size=int(rng.integers(0, 12)), replace=False)] = False
    return LabelledSeries(
        series_id=series_id,
        source="synthetic",
        frequency="DAILY",
        days=days[observed],
        values=values[observed],
        detection_start=days[detection].astype(object),
        kind=kind,
        sigma=float(sigma_at[-1]),
        labels={days[i] for i in labels if observed[i]},
    )


def _inject(
    values: np.ndarray,
    detection: int,
    kind: str,
    sigma: np.ndarray,
    rng: np.random.Generator,
    *,
    multiplicative: bool,
) -> list[int]:
    """Change `values` in place from position `detection` on; return the anomalous positions."""
    n = len(values)
    if kind == "none":
        return []
    if kind in ("spike", "dip"):
        positions = sorted(
            rng.choice(np.arange(detection, n), size=int(rng.integers(1, 3)), replace=False)
        )
        sign = 1.0 if kind == "spike" else -1.0
        magnitudes = rng.uniform(4, 9, len(positions))
    else:
        start = int(rng.integers(detection + 1, n - 1))
        positions = list(range(start, n))
        sign = float(rng.choice([-1, 1]))
        magnitudes = np.full(len(positions), rng.uniform(4, 8))
    for position, magnitude in zip(positions, magnitudes, strict=True):
        change = sign * magnitude * sigma[position]
        if multiplicative:
            values[position] *= np.exp(change)
        else:
            values[position] += change
    return [int(p) for p in positions]


def _real_windows() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(source, frequency, days, values) windows of the statsmodels datasets, NaN dropped."""
    from statsmodels.datasets import co2, elec_equip, elnino

    windows = []
    carbon = co2.load_pandas().data["co2"]
    for first in range(0, len(carbon) - 260, 250):
        part = carbon.iloc[first : first + 260].dropna()
        windows.append(("co2", "WEEKLY", _days(part.index), part.to_numpy()))
    nino = elnino.load_pandas().data.set_index("YEAR").stack()
    months = np.array(
        [
            np.datetime64(f"{int(year)}-{m + 1:02d}-01")
            for year in nino.index.levels[0]
            for m in range(12)
        ][: len(nino)]
    )
    for first in range(0, len(nino) - 180, 180):
        windows.append(
            ("elnino", "MONTHLY", months[first : first + 180], nino.to_numpy()[first : first + 180])
        )
    orders = elec_equip.load_pandas().data.iloc[:, 0]
    windows.append(("elec_equip", "MONTHLY", _days(orders.index), orders.to_numpy()))
    return windows


def _days(index: object) -> np.ndarray:
    return np.asarray(index, dtype="datetime64[D]")


def _inject_real(
    series_id: str,
    source: str,
    frequency: str,
    days: np.ndarray,
    values: np.ndarray,
    kind: str,
    rng: np.random.Generator,
) -> LabelledSeries:
    values = values.astype(float).copy()
    detection = len(values) - DETECTION_POINTS[frequency]
    history = values[:detection]
    # One-step noise: a robust sigma of first differences, divided by sqrt(2).
    sigma = 1.4826 * float(np.median(np.abs(np.diff(history)))) / np.sqrt(2)
    labels = _inject(
        values, detection, kind, np.full(len(values), sigma), rng, multiplicative=False
    )
    return LabelledSeries(
        series_id=series_id,
        source=source,
        frequency=frequency,
        days=days,
        values=values,
        detection_start=days[detection].astype(object),
        kind=kind,
        sigma=sigma,
        labels={days[i] for i in labels},
    )
