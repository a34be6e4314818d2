"""`make bench-anomaly`: Minato's local anomaly engine against honest baselines, leave-family-out.

On the labelled families of `bench/anomaly_data.py`, every method scores exactly the same
points: the observed days of each series' last 7 days (minus the later days of a level shift and
the early days of a drift, which no method is asked about). Methods: Minato's engine, called as
the `monitoring/anomalies` asset calls it (threshold 0.999, direction both, the family's
holidays), and the peers of `bench/anomaly_baselines.py`.

Protocol: the tuning families are scored first; each baseline's threshold is the one of its
grid (which includes its documented default) with the best F1 there, as the engine's constants
were chosen there. Then the test families, never used for any choice, are scored and reported:
precision, recall and F1 per method, per family, per kind, per history length; false alarms per
100 clean series-days; the share of drifts caught. Last, Minato scores 1,000 series x 730 days
in one call, timed, with the load average beside it. Writes `bench/results/anomaly.json`.

    .venv/bin/python bench/anomaly.py                              # as reported
    .venv/bin/python bench/anomaly.py --split tune --methods minato  # while tuning the engine
    .venv/bin/python bench/anomaly.py --scale 0.3 --timing-series 100 # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for path in (BENCH_DIR, REPO_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import anomaly_baselines as base  # noqa: E402
import anomaly_data as data  # noqa: E402

from assets.monitoring.local_engine import detect_anomalies  # noqa: E402
from assets.monitoring.metrics import MetricSpec  # noqa: E402

DEFAULT_RESULT = BENCH_DIR / "results" / "anomaly.json"
BASELINES = ("zscore_14", "zscore_28", "zscore_weekday", "stl", "mstl", "autoets", "prophet")
METHODS = ("minato", *BASELINES)
# Thresholds in sigmas a baseline may be given; 3 is the z-scores' default, Z99 the intervals'.
THRESHOLD_GRID = (1.5, 2.0, 2.5, round(base.Z99, 3), 3.0, 3.5, 4.0, 5.0, 6.0)
HISTORY_BUCKETS = {60: "60", 90: "90", 180: "180", 365: "365+", 730: "365+"}
GOALS = {
    "f1": 0.8,
    "margin": 0.1,
    "false_alarms_per_100": 1.0,
    "drift_recall": 0.7,
    "scoring_s": 30.0,
}


def spec(region: str) -> MetricSpec:
    """The metric as the asset would read it: shipped defaults, daily, the family's holidays."""
    return MetricSpec(
        name="bench",
        description="benchmark series",
        direction="both",
        # The engine scores the series handed to it; the model is never read here.
        schema="bench",
        model="series",
        timestamp_column="metric_day",
        value="SUM(value)",
        holiday_region=region,
    )


def _frame(series: list[data.LabelledSeries]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_id": np.repeat([s.series_id for s in series], [len(s.days) for s in series]),
            "metric_day": np.concatenate([s.days for s in series]),
            "value": np.concatenate([s.values for s in series]),
        }
    )


def minato_scores(series: list[data.LabelledSeries]) -> dict[str, dict[np.datetime64, float]]:
    """1.0 on flagged days, 0.0 on scored ones, per series (one call per start and region)."""
    out: dict[str, dict[np.datetime64, float]] = {s.series_id: {} for s in series}
    groups: dict[tuple[dt.date, str], list[data.LabelledSeries]] = {}
    for s in series:
        groups.setdefault((s.detection_start, s.region), []).append(s)
    for (start, region), group in sorted(groups.items()):
        result = detect_anomalies(_frame(group), start, spec(region))
        for row in result.itertuples():
            out[row.series_id][np.datetime64(row.metric_day, "D")] = float(row.is_anomaly)
    return out


def baseline_scores(
    series: list[data.LabelledSeries], methods: tuple[str, ...]
) -> dict[str, dict[str, dict[np.datetime64, float]]]:
    """Per method and series, the score of every scored day."""
    out = {m: {s.series_id: {} for s in series} for m in methods}
    panels = []
    for s in series:
        days, values = base.daily_grid(s.days, s.values)
        n_train = int(np.searchsorted(days, np.datetime64(s.detection_start, "D")))
        positions = np.flatnonzero(np.isin(days, s.scored))
        if "zscore_14" in methods:
            out["zscore_14"][s.series_id] = _by_day(
                days, positions, base.rolling_zscore(values, positions, 14)
            )
        if "zscore_28" in methods:
            out["zscore_28"][s.series_id] = _by_day(
                days, positions, base.rolling_zscore(values, positions, 28)
            )
        if "zscore_weekday" in methods:
            out["zscore_weekday"][s.series_id] = _by_day(
                days, positions, base.weekday_zscore(values, positions)
            )
        if "stl" in methods:
            out["stl"][s.series_id] = _by_day(
                days, positions, base.stl_scores(values, n_train, positions)
            )
        if "prophet" in methods:
            forecast = base.prophet_forecast(
                days[:n_train], values[:n_train], days[n_train:], s.region
            )
            out["prophet"][s.series_id] = _interval(forecast, days, values, positions, n_train)
        panels.append((s.series_id, days[:n_train], values[:n_train], days, values, positions))
    wanted = [m for m in ("mstl", "autoets") if m in methods]
    if wanted:
        forecasts = base.statsforecast_scores(
            [(p[0], p[1], p[2]) for p in panels], data.DETECTION_DAYS
        )
        for series_id, history_days, _, days, values, positions in panels:
            for m in wanted:
                out[m][series_id] = _interval(
                    forecasts[m][series_id], days, values, positions, len(history_days)
                )
    return out


def _by_day(
    days: np.ndarray, positions: np.ndarray, scores: np.ndarray
) -> dict[np.datetime64, float]:
    return dict(zip(days[positions], scores, strict=True))


def _interval(
    forecast: pd.DataFrame,
    days: np.ndarray,
    values: np.ndarray,
    positions: np.ndarray,
    n_train: int,
) -> dict[np.datetime64, float]:
    ahead = forecast.set_index(pd.to_datetime(forecast["ds"]).to_numpy(dtype="datetime64[D]"))
    picked = ahead.loc[days[positions]]
    scores = base.interval_scores(
        values[positions],
        picked["expected"].to_numpy(float),
        picked["lower"].to_numpy(float),
        picked["upper"].to_numpy(float),
    )
    return _by_day(days, positions, scores)


def score_split(split: str, scale: float, methods: tuple[str, ...]) -> pd.DataFrame:
    """One row per scored point: series facts, label, and each method's score."""
    series = data.make_dataset(split, scale)
    timings = {}
    started = time.perf_counter()
    scores = {"minato": minato_scores(series)} if "minato" in methods else {}
    timings["minato"] = time.perf_counter() - started
    for method in (m for m in methods if m != "minato"):
        started = time.perf_counter()
        scores.update(baseline_scores(series, (method,)))
        timings[method] = time.perf_counter() - started
        print(f"  {split}: {method} scored in {timings[method]:.0f} s", flush=True)
    rows = []
    for s in series:
        for day in s.scored:
            rows.append(
                {
                    "series_id": s.series_id,
                    "family": s.family,
                    "kind": s.kind,
                    "history": HISTORY_BUCKETS[s.history_days],
                    "label": day in s.labels,
                    # A day the engine did not return (too little history) is not flagged.
                    **{m: scores[m][s.series_id].get(day, 0.0) for m in methods},
                }
            )
    frame = pd.DataFrame(rows)
    frame.attrs["timings"] = timings
    frame.attrs["series"] = len(series)
    return frame


def prf(label: pd.Series, flag: pd.Series) -> dict[str, float]:
    tp = int((label & flag).sum())
    fp = int((~label & flag).sum())
    fn = int((label & ~flag).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def flags(points: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """Boolean flags per method: Minato's own decision, each baseline above its threshold."""
    return pd.DataFrame(
        {m: points[m] > thresholds.get(m, 0.5) for m in thresholds}, index=points.index
    )


def choose_thresholds(points: pd.DataFrame, methods: tuple[str, ...]) -> dict[str, float]:
    """Per baseline, the grid threshold with the best F1 on these (tuning) points."""
    chosen = {"minato": 0.5} if "minato" in methods else {}
    for m in methods:
        if m != "minato":
            chosen[m] = max(THRESHOLD_GRID, key=lambda t: prf(points["label"], points[m] > t)["f1"])
    return chosen


def summarise(points: pd.DataFrame, thresholds: dict[str, float]) -> dict:
    flagged = flags(points, thresholds)
    label = points["label"]
    clean = points["kind"] == "none"
    drift_series = points[points["kind"] == "drift"].assign(**{m: flagged[m] for m in flagged})
    drift_caught = drift_series[drift_series["label"]].groupby("series_id")[list(flagged)].any()

    def grouped(column: str) -> dict:
        return {
            str(key): {m: prf(label[idx], flagged.loc[idx, m]) for m in flagged}
            for key, idx in points.groupby(column).groups.items()
        }

    return {
        "overall": {m: prf(label, flagged[m]) for m in flagged},
        "false_alarms_per_100": {
            m: round(100 * float(flagged.loc[clean, m].mean()), 2) for m in flagged
        },
        "drift_recall": {m: round(float(drift_caught[m].mean()), 4) for m in flagged},
        "by_family": grouped("family"),
        "by_kind": grouped("kind"),
        "by_history": grouped("history"),
        "points": len(points),
        "labelled_points": int(label.sum()),
        "clean_series_days": int(clean.sum()),
    }


def _print(title: str, table: dict, methods: list[str]) -> None:
    print(f"\n{title} (F1)")
    print(f"  {'':<18}" + "".join(f"{m[:13]:>14}" for m in methods))
    for key, cells in table.items():
        print(f"  {key:<18}" + "".join(f"{cells[m]['f1']:>14.3f}" for m in methods))


def timing(n_series: int) -> tuple[float, float, float]:
    """Wall and CPU seconds of one `detect_anomalies` call on n series x 730 days, and the
    load average before it (the machine is shared: CPU seconds are the stable figure)."""
    rng = np.random.default_rng(7)
    frames, made = [], 0
    while made < n_series:
        for b in data.FAMILIES["ec_synth"].load(rng)[: n_series - made]:
            keep = b.days > b.days[-1] - 730
            frames.append(
                pd.DataFrame(
                    {"series_id": f"t{made}", "metric_day": b.days[keep], "value": b.values[keep]}
                )
            )
            made += 1
    frame = pd.concat(frames, ignore_index=True)
    start = (frame["metric_day"].max() - np.timedelta64(6, "D")).date()
    load = os.getloadavg()[0]
    began, began_cpu = time.perf_counter(), time.process_time()
    detect_anomalies(frame, start, spec("JP"))
    return time.perf_counter() - began, time.process_time() - began_cpu, load


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--split",
        choices=("tune", "test"),
        default="test",
        help="test: choose thresholds on tune, report test; tune: tune only",
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--scale", type=float, default=1.0, help="share of series per family")
    parser.add_argument("--timing-series", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=DEFAULT_RESULT)
    args = parser.parse_args(argv)
    methods = tuple(m for m in args.methods.split(",") if m)

    tune = score_split("tune", args.scale, methods)
    thresholds = choose_thresholds(tune, methods)
    print(
        "thresholds chosen on the tuning families: "
        + ", ".join(f"{m} {t}" for m, t in thresholds.items() if m != "minato")
    )
    reported = tune if args.split == "tune" else score_split("test", args.scale, methods)
    summary = summarise(reported, thresholds)
    shown = list(thresholds)
    families = sorted(reported["family"].unique())
    print(
        f"\n{args.split} split: {reported.attrs['series']} series, {summary['points']:,} points, "
        f"{summary['labelled_points']:,} labelled, families {families}"
    )
    _print("overall", {"all": summary["overall"]}, shown)
    _print("by family", summary["by_family"], shown)
    _print("by kind", summary["by_kind"], shown)
    _print("by history (days)", summary["by_history"], shown)
    print(
        "\n  false alarms / 100 clean series-days: "
        + ", ".join(f"{m} {v}" for m, v in summary["false_alarms_per_100"].items())
    )
    caught = summary["drift_recall"].items()
    print("  drifts caught: " + ", ".join(f"{m} {v:.2f}" for m, v in caught))

    baselines = {m: summary["overall"][m]["f1"] for m in shown if m != "minato"}
    best = max(baselines, key=baselines.get) if baselines else None
    result: dict = {
        "split": args.split,
        "families": families,
        "tuning_families": list(data.TUNE_FAMILIES),
        "series": reported.attrs["series"],
        "thresholds": thresholds,
        **{f"{m}_f1": f1 for m, f1 in baselines.items()},
        "best_baseline_name": best,
        "best_baseline_f1": baselines.get(best) if best else None,
        "method_seconds": {m: round(s, 1) for m, s in reported.attrs["timings"].items()},
    }
    if "minato" in methods:
        result |= {
            "minato_f1": summary["overall"]["minato"]["f1"],
            "false_alarms_per_100": summary["false_alarms_per_100"]["minato"],
            "drift_recall": summary["drift_recall"]["minato"],
        }
    if args.timing_series:
        seconds, cpu, load = timing(args.timing_series)
        print(
            f"\nminato: {args.timing_series} series x 730 days in {seconds:.1f} s wall, "
            f"{cpu:.1f} s CPU, load average {load:.1f} before"
        )
        result |= {
            "scoring_1000x730_s": round(seconds, 2) if args.timing_series == 1000 else None,
            "timing_series": args.timing_series,
            "timing_cpu_s": round(cpu, 2),
            "timing_load_average": round(load, 2),
        }
    if "minato" in methods and best:
        goals = {
            "f1": result["minato_f1"] >= GOALS["f1"],
            "margin": result["minato_f1"] - result["best_baseline_f1"] >= GOALS["margin"],
            "false_alarms": result["false_alarms_per_100"] <= GOALS["false_alarms_per_100"],
            "drift_recall": result["drift_recall"] >= GOALS["drift_recall"],
        }
        if result.get("scoring_1000x730_s") is not None:
            goals["speed"] = result["scoring_1000x730_s"] < GOALS["scoring_s"]
        print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in goals.items()))
        result["goals_met"] = goals
    result |= {
        "summary": summary,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "make bench-anomaly " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
