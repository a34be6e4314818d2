"""`make bench-anomaly`: Minato's local anomaly engine against Elementary- and re_data-style checks.

On the labelled series of `bench/anomaly_data.py` (anomalies labelled by construction), three
methods score exactly the same points (the observed points of each series' detection window):

- minato: `assets.monitoring.local_engine.detect_anomalies`, as the `monitoring/anomalies`
  asset calls it (threshold 0.999, direction both, frequency inferred, JP holidays);
- zscore: Elementary's default volume/column anomaly test: z = (x - mean) / stddev over a
  14-point training window that includes the tested point, anomalous when |z| > 3
  (`anomaly_sensitivity: 3`, `training_period: 14 days`);
- modified_z: re_data's `modified_z_score` detector: 0.6745 (x - median) / MAD over the 30
  points before the tested one, anomalous when |score| > 3.

Prints precision, recall and F1 per method and per injected kind (each kind over the series
that received it; `none` shows false alarms on clean series), then times Minato on 1,000 daily
series × 730 days, and writes `bench/results/anomaly.json`.

    .venv/bin/python bench/anomaly.py                       # test split, as reported
    .venv/bin/python bench/anomaly.py --split tune          # the split constants were tuned on
    .venv/bin/python bench/anomaly.py --synthetic 100 --timing-series 200   # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for path in (BENCH_DIR, REPO_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import anomaly_data as data  # noqa: E402

from assets.monitoring.local_engine import detect_anomalies  # noqa: E402
from assets.monitoring.metrics import MetricSpec  # noqa: E402

DEFAULT_RESULT = BENCH_DIR / "results" / "anomaly.json"
GOAL_F1 = 0.9
GOAL_MARGIN = 0.2
GOAL_SCORING_S = 60.0
METHODS = ("minato", "zscore", "modified_z")

SPEC = MetricSpec(
    name="bench",
    description="benchmark series",
    direction="both",
    # The engines score series handed to them; the model is never read here.
    schema="bench",
    model="series",
    timestamp_column="metric_day",
    value="SUM(value)",
    frequency="AUTO_FREQUENCY",
    # Real series are weekly and monthly over decades: learn from all their history.
    training_days=40_000,
    min_history_days=28,
)


def zscore_flags(values: np.ndarray, scored: np.ndarray, window: int = 14, limit: float = 3.0):
    """Elementary: the training window ends with (and includes) the tested point."""
    flags = np.zeros(len(scored), bool)
    for i, position in enumerate(scored):
        training = values[max(position - window + 1, 0) : position + 1]
        std = training.std(ddof=1) if len(training) > 1 else 0.0
        flags[i] = std > 0 and abs(values[position] - training.mean()) / std > limit
    return flags


def modified_z_flags(
    values: np.ndarray, scored: np.ndarray, window: int = 30, limit: float = 3.0
) -> np.ndarray:
    """re_data: median and MAD of the `window` points before the tested one."""
    flags = np.zeros(len(scored), bool)
    for i, position in enumerate(scored):
        training = values[max(position - window, 0) : position]
        if len(training) < 2:
            continue
        median = np.median(training)
        mad = np.median(np.abs(training - median))
        flags[i] = mad > 0 and abs(0.6745 * (values[position] - median) / mad) > limit
    return flags


def _frame(series: list[data.LabelledSeries]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_id": np.repeat([s.series_id for s in series], [len(s.days) for s in series]),
            "metric_day": np.concatenate([s.days for s in series]),
            "value": np.concatenate([s.values for s in series]),
        }
    )


def minato_flags(series: list[data.LabelledSeries]) -> dict[str, set[np.datetime64]]:
    """Flagged days per series, scoring each group of series with the same detection start."""
    flagged: dict[str, set[np.datetime64]] = {s.series_id: set() for s in series}
    starts = sorted({s.detection_start for s in series})
    for start in starts:
        group = [s for s in series if s.detection_start == start]
        result = detect_anomalies(_frame(group), start, SPEC)
        for row in result[result["is_anomaly"]].itertuples():
            flagged[row.series_id].add(np.datetime64(row.metric_day, "D"))
    return flagged


def score_all(series: list[data.LabelledSeries]) -> pd.DataFrame:
    """One row per scored point: series, kind, source, label and each method's flag."""
    started = time.perf_counter()
    minato = minato_flags(series)
    minato_s = time.perf_counter() - started
    rows = []
    for s in series:
        start = np.datetime64(s.detection_start, "D")
        scored = np.flatnonzero(s.days >= start)
        z = zscore_flags(s.values, scored)
        mz = modified_z_flags(s.values, scored)
        for i, position in enumerate(scored):
            day = s.days[position]
            rows.append(
                (
                    s.series_id,
                    s.source,
                    s.kind,
                    day in s.labels,
                    day in minato[s.series_id],
                    bool(z[i]),
                    bool(mz[i]),
                )
            )
    frame = pd.DataFrame(rows, columns=["series_id", "source", "kind", "label", *METHODS])
    frame.attrs["minato_s"] = minato_s
    return frame


def prf(label: pd.Series, flag: pd.Series) -> dict[str, float | int]:
    tp = int((label & flag).sum())
    fp = int((~label & flag).sum())
    fn = int((label & ~flag).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def timing(n_series: int, seed: int = 7) -> tuple[float, float]:
    """Wall and CPU seconds of `detect_anomalies` on n daily series × 730 days (one call).

    CPU time is reported too: on a shared 2-core machine the wall time depends on the load.
    """
    rng = np.random.default_rng(seed)
    series = [data.synthetic_series(f"t{i}", rng) for i in range(n_series)]
    frame = _frame(series)
    start = series[0].detection_start
    began, began_cpu = time.perf_counter(), time.process_time()
    detect_anomalies(frame, start, SPEC)
    return time.perf_counter() - began, time.process_time() - began_cpu


def _table(title: str, groups: dict[str, pd.DataFrame], show: Callable[[dict], str]) -> None:
    print(f"\n{title}")
    print(f"  {'':<14}" + "".join(f"{m:>24}" for m in METHODS))
    for name, frame in groups.items():
        cells = "".join(f"{show(prf(frame['label'], frame[m])):>24}" for m in METHODS)
        print(f"  {name:<14}{cells}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=sorted(data.SPLIT_SEED), default="test")
    parser.add_argument("--synthetic", type=int, default=240)
    parser.add_argument("--real-repeats", type=int, default=4)
    parser.add_argument("--timing-series", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=DEFAULT_RESULT)
    args = parser.parse_args(argv)

    series = data.make_dataset(args.synthetic, args.real_repeats, args.split)
    points = score_all(series)
    total = {m: prf(points["label"], points[m]) for m in METHODS}
    by_kind = {k: points[points["kind"] == k] for k in data.KINDS}
    by_source = {k: g for k, g in points.groupby("source")}
    print(
        f"{len(series)} series ({points['series_id'].nunique()} scored), {len(points):,} scored "
        f"points, {int(points['label'].sum())} labelled anomalous; split {args.split}"
    )

    def fmt(r: dict) -> str:
        return f"{r['precision']:.2f}/{r['recall']:.2f}/{r['f1']:.2f}"

    _table("precision / recall / F1", {"all": points, **by_kind}, fmt)
    _table("by source (P/R/F1)", by_source, fmt)
    for kind, frame in by_kind.items():
        if kind == "none":
            print(
                "  false alarms on clean series: "
                + ", ".join(f"{m} {int(frame[m].sum())}/{len(frame)}" for m in METHODS)
            )

    load_before = os.getloadavg()[0]
    seconds, cpu_seconds = timing(args.timing_series)
    print(
        f"\nminato scoring {args.timing_series} daily series x 730 days: {seconds:.1f} s wall, "
        f"{cpu_seconds:.1f} s CPU, load average {load_before:.1f} "
        f"(benchmark set: {points.attrs['minato_s']:.1f} s)"
    )
    f1 = {m: total[m]["f1"] for m in METHODS}
    print(
        f"F1 minato {f1['minato']:.3f} | zscore {f1['zscore']:.3f} "
        f"(x{f1['minato'] / max(f1['zscore'], 1e-9):.1f}) | modified_z {f1['modified_z']:.3f} "
        f"(x{f1['minato'] / max(f1['modified_z'], 1e-9):.1f})"
    )
    goals = {
        "f1": f1["minato"] >= GOAL_F1,
        "margin": f1["minato"] - max(f1["zscore"], f1["modified_z"]) >= GOAL_MARGIN,
        "speed": seconds < GOAL_SCORING_S,
    }
    print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in goals.items()))

    result = {
        "minato_f1": round(f1["minato"], 4),
        "zscore_f1": round(f1["zscore"], 4),
        "modified_z_f1": round(f1["modified_z"], 4),
        "series": len(series),
        "scoring_1000x730_s": round(seconds, 2) if args.timing_series == 1000 else None,
        "timing_series": args.timing_series,
        "timing_s": round(seconds, 2),
        "timing_cpu_s": round(cpu_seconds, 2),
        "split": args.split,
        "scored_points": len(points),
        "labelled_points": int(points["label"].sum()),
        "methods": {m: total[m] for m in METHODS},
        "by_kind": {k: {m: prf(g["label"], g[m]) for m in METHODS} for k, g in by_kind.items()},
        "by_source": {k: {m: prf(g["label"], g[m]) for m in METHODS} for k, g in by_source.items()},
        "goals_met": goals,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "make bench-anomaly",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
