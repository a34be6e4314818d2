"""The monitoring/anomalies asset and its checks on a DuckDB warehouse, and metrics.yaml."""

import datetime as dt
from pathlib import Path

import dagster as dg
import holidays
import numpy as np
import pyarrow as pa
import pytest

from assets.monitoring.anomalies import (
    ANOMALIES_KEY,
    MART_KEY,
    METRIC_SPECS,
    anomaly_assets,
    anomaly_checks,
)
from assets.monitoring.metrics import MetricsConfigError, MetricSpec, load_metric_specs
from resources.warehouse import DuckDBWarehouse

LAST_DAY = dt.date(2025, 5, 10)
DAYS = [LAST_DAY - dt.timedelta(days=n) for n in range(62, -1, -1)]
# Monday..Sunday; public holidays (Golden Week falls in the detection window) look like Sundays.
WEEKLY = [1.0, 1.0, 1.05, 1.0, 1.1, 0.6, 0.5]
JP_HOLIDAYS = holidays.country_holidays("JP", years=[2025])
SPIKE_PAGE = "/help/delivery-delay"


def _values(seed: int, base: float, days: list[dt.date]) -> list[float]:
    rng = np.random.default_rng(seed)
    # Clipped noise: the clean series have no point that is unusual by chance.
    shocks = np.clip(rng.standard_normal(len(days)), -2.0, 2.0)
    return [
        base * WEEKLY[6 if d in JP_HOLIDAYS else d.weekday()] * (1 + 0.04 * s)
        for d, s in zip(days, shocks, strict=True)
    ]


def _mart() -> pa.Table:
    rows: list[tuple[dt.date, str, str, float]] = []
    series = [
        ("gmv_by_category", "食品", 500_000.0),
        ("gmv_by_category", "アウトドア", 300_000.0),
        ("orders_by_shard", "shard_01", 400.0),
        ("orders_by_shard", "shard_02", 350.0),
        ("page_clicks", "/", 900.0),
        ("page_clicks", SPIKE_PAGE, 200.0),
    ]
    for seed, (metric, series_id, base) in enumerate(series):
        for day, value in zip(DAYS, _values(seed, base, DAYS), strict=True):
            spiked = metric == "page_clicks" and series_id == SPIKE_PAGE and day == LAST_DAY
            rows.append((day, metric, series_id, value * 6 if spiked else value))
    # A shard that started two weeks ago: scored later, reported as skipped now.
    young = DAYS[-14:]
    rows += [
        (d, "orders_by_shard", "shard_05", v)
        for d, v in zip(young, _values(99, 100.0, young), strict=True)
    ]
    day, metric, series_id, value = zip(*rows, strict=True)
    return pa.table(
        {
            "metric_day": pa.array(day, pa.date32()),
            "metric": list(metric),
            "series_id": list(series_id),
            "value": pa.array(value, pa.float64()),
        }
    )


# The mart is dbt's: here an external spec, so its checks run only when selected explicitly.
ANOMALIES_AND_CHECKS = dg.AssetSelection.assets(ANOMALIES_KEY) | dg.AssetSelection.checks(
    *anomaly_checks
)


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.overwrite_table("monitoring", "monitoring_daily_metrics", _mart())
    return warehouse


def _materialize(warehouse: DuckDBWarehouse, detection_days: int = 7) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [dg.AssetSpec(MART_KEY), *anomaly_assets, *anomaly_checks],
        resources={"warehouse": warehouse},
        selection=ANOMALIES_AND_CHECKS,
        run_config=dg.RunConfig(
            {"monitoring__anomalies": {"config": {"detection_days": detection_days}}}
        ),
    )


def _stored(warehouse: DuckDBWarehouse) -> list[dict]:
    return warehouse.query_arrow(
        "SELECT * FROM monitoring.anomalies ORDER BY metric, series_id, metric_day"
    ).to_pylist()


def test_spike_is_found_and_clean_series_stay_quiet(warehouse: DuckDBWarehouse) -> None:
    result = _materialize(warehouse)

    assert result.success
    rows = _stored(warehouse)
    # 6 series with enough history × 7 days; the young shard is skipped.
    assert len(rows) == 6 * 7
    assert {r["metric_day"] for r in rows} == set(DAYS[-7:])
    flagged = [(r["metric"], r["series_id"], r["metric_day"]) for r in rows if r["is_anomaly"]]
    assert flagged == [("page_clicks", SPIKE_PAGE, LAST_DAY)]
    assert {r["engine"] for r in rows} == {"duckdb"}
    assert all(r["detected_at"].tzinfo is not None for r in rows)

    metadata = result.asset_materializations_for_node("monitoring__anomalies")[0].metadata
    assert metadata["series_scored"].value == 6
    assert metadata["series_skipped"].value == 1
    assert metadata["skipped_series"].value == ["orders_by_shard/shard_05"]
    assert metadata["anomalies_found"].value == 1
    table = metadata["anomalous_points"].value
    assert f"| page_clicks | {SPIKE_PAGE} | {LAST_DAY} |" in table
    assert "–" in table  # the expected range


def test_rerun_replaces_the_detected_days(warehouse: DuckDBWarehouse) -> None:
    _materialize(warehouse)
    first = _stored(warehouse)

    _materialize(warehouse)
    _materialize(warehouse, detection_days=3)
    again = _stored(warehouse)

    assert len(again) == len(first)
    key = ("metric", "series_id", "metric_day")
    assert sorted(tuple(r[k] for k in key) for r in again) == sorted(
        tuple(r[k] for k in key) for r in first
    )
    # The three-day run rewrote only its own days.
    rewritten = {r["metric_day"] for r in again if r["detected_at"] > first[0]["detected_at"]}
    assert rewritten == set(DAYS[-7:])
    latest_run = max(r["detected_at"] for r in again)
    assert {r["metric_day"] for r in again if r["detected_at"] == latest_run} == set(DAYS[-3:])


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_warn_for_the_anomalous_metric_only(warehouse: DuckDBWarehouse) -> None:
    checks = _check_results(_materialize(warehouse))

    assert set(checks) == {f"{name}_latest_day_not_anomalous" for name in METRIC_SPECS}
    clicks = checks["page_clicks_latest_day_not_anomalous"]
    assert clicks.asset_key == MART_KEY
    assert not clicks.passed
    assert clicks.severity == dg.AssetCheckSeverity.WARN
    assert SPIKE_PAGE in (clicks.description or "")
    assert "expected" in (clicks.description or "")
    assert clicks.metadata["latest_day"].value == LAST_DAY.isoformat()
    assert clicks.metadata["anomalous_series"].value == 1
    assert checks["gmv_by_category_latest_day_not_anomalous"].passed
    assert checks["orders_by_shard_latest_day_not_anomalous"].passed


def test_checks_run_after_the_anomalies_asset() -> None:
    for check in anomaly_checks:
        (spec,) = check.check_specs
        assert ANOMALIES_KEY in {dep.asset_key for dep in spec.additional_deps}
        assert not spec.blocking


def test_check_fails_when_the_latest_day_was_not_scored(warehouse: DuckDBWarehouse) -> None:
    result = dg.materialize(
        [dg.AssetSpec(MART_KEY), *anomaly_assets, *anomaly_checks],
        resources={"warehouse": warehouse},
        selection=dg.AssetSelection.checks(*anomaly_checks),
    )

    checks = _check_results(result)
    assert len(checks) == len(METRIC_SPECS)
    for check in checks.values():
        assert not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert "has not been scored" in (check.description or "")


def test_metrics_yaml_defines_the_demo_metrics() -> None:
    assert list(METRIC_SPECS) == ["gmv_by_category", "orders_by_shard", "page_clicks"]
    clicks = METRIC_SPECS["page_clicks"]
    assert clicks == MetricSpec(
        name="page_clicks",
        description=clicks.description,
        direction="spike",
        anomaly_prob_threshold=0.999,
        min_history_days=28,
        holiday_region="JP",
        check_severity="WARN",
    )
    assert METRIC_SPECS["gmv_by_category"].direction == "drop"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("- name: x\n  description: d\n  direction: up\n", "metric 'x': direction:"),
        ("- name: x-y\n  description: d\n  direction: both\n", "metric 'x-y': name:"),
        ("- name: x\n  direction: both\n", "metric 'x': description: missing"),
        (
            "- name: x\n  description: d\n  direction: both\n  anomaly_prob_threshold: 1\n",
            "metric 'x': anomaly_prob_threshold:",
        ),
        (
            "- name: x\n  description: d\n  direction: both\n  min_history_days: 7\n",
            "metric 'x': min_history_days:",
        ),
        (
            "- name: x\n  description: d\n  direction: both\n  holiday_region: Japan\n",
            "metric 'x': holiday_region:",
        ),
        (
            "- name: x\n  description: d\n  direction: both\n  check_severity: INFO\n",
            "metric 'x': check_severity:",
        ),
        ("- name: x\n  description: d\n  direction: both\n  model: m\n", "metric 'x': model:"),
        (
            "- name: x\n  description: d\n  direction: both\n"
            "- name: x\n  description: d\n  direction: both\n",
            "metric 'x': name: defined twice",
        ),
        ("- just a string\n", "metric #1:"),
        ("{}\n", "expected a non-empty list"),
    ],
)
def test_metrics_yaml_errors_name_file_metric_and_key(
    tmp_path: Path, entry: str, message: str
) -> None:
    path = tmp_path / "metrics.yaml"
    path.write_text(entry, encoding="utf-8")

    with pytest.raises(MetricsConfigError) as error:
        load_metric_specs(path)

    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
