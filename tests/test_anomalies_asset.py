"""The monitoring/anomalies asset and its checks on a DuckDB warehouse, and the metric YAML."""

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import dagster as dg
import holidays
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from assets.monitoring import anomalies as anomalies_module
from assets.monitoring.anomalies import (
    ANOMALIES_KEY,
    anomaly_assets,
    anomaly_checks,
    build_anomaly_checks,
    current_anomalies_sql,
)
from assets.monitoring.feedback import record_feedback
from assets.monitoring.metrics import (
    MetricsConfigError,
    MetricSpec,
    load_metric_specs,
    metric_specs,
)
from pipelines import cli
from resources.notifications import Notifier
from resources.warehouse import DuckDBWarehouse
from tests.tables import replace_table

# The mart of the demo metrics (every metric names its own model; these three share one).
MART_KEY = dg.AssetKey(["monitoring", "monitoring_daily_metrics"])
METRIC_SPECS = metric_specs()
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
    *anomaly_checks()
)
UI = "https://dagster.example.com"


class RecordingNotifier(Notifier):
    """The real resource with Slack swapped for a file (Dagster copies resources, so a list on
    the instance would stay empty): alert text is asserted exactly."""

    record_path: str

    def send(self, text: str) -> None:
        with open(self.record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(text) + "\n")

    @property
    def sent(self) -> list[str]:
        path = Path(self.record_path)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    replace_table(warehouse, "monitoring", "monitoring_daily_metrics", _mart())
    return warehouse


@pytest.fixture
def notifier(tmp_path: Path) -> RecordingNotifier:
    return RecordingNotifier(dagster_ui_url=UI, record_path=str(tmp_path / "alerts.jsonl"))


def _materialize(
    warehouse: DuckDBWarehouse, notifier: Notifier, detection_days: int = 7
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [dg.AssetSpec(MART_KEY), *anomaly_assets(), *anomaly_checks()],
        resources={"warehouse": warehouse, "notifier": notifier},
        selection=ANOMALIES_AND_CHECKS,
        run_config=dg.RunConfig(
            {"monitoring__anomalies": {"config": {"detection_days": detection_days}}}
        ),
    )


def _stored(warehouse: DuckDBWarehouse) -> list[dict]:
    return warehouse.query_arrow(
        "SELECT * FROM monitoring.anomalies ORDER BY detected_at, metric, series_id, metric_day"
    ).to_pylist()


def test_spike_is_found_and_clean_series_stay_quiet(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    result = _materialize(warehouse, notifier)

    assert result.success
    rows = _stored(warehouse)
    # 6 series with enough history × 7 days; the young shard is skipped.
    assert len(rows) == 6 * 7
    assert {r["metric_day"] for r in rows} == set(DAYS[-7:])
    flagged = [(r["metric"], r["series_id"], r["metric_day"]) for r in rows if r["is_anomaly"]]
    assert flagged == [("page_clicks", SPIKE_PAGE, LAST_DAY)]
    assert {r["engine"] for r in rows} == {"duckdb"}
    assert {r["run_id"] for r in rows} == {result.run_id}
    assert all(r["detected_at"].tzinfo is not None for r in rows)
    clicks = [r for r in rows if r["metric"] == "page_clicks"]
    assert {(r["direction"], r["anomaly_prob_threshold"]) for r in clicks} == {("spike", 0.999)}
    assert json.loads(clicks[0]["model_options"]) == {
        "auto_arima_max_order": 2,
        "frequency": "DAILY",
        "holiday_region": "JP",
        "min_history_days": 28,
        "training_days": 730,
    }

    metadata = result.asset_materializations_for_node("monitoring__anomalies")[0].metadata
    assert metadata["series_scored"].value == 6
    assert metadata["series_skipped"].value == 1
    assert metadata["skipped_series"].value == ["orders_by_shard/shard_05"]
    assert metadata["anomalies_found"].value == 1
    assert metadata["anomalies_alerted"].value == 1
    table = metadata["anomalous_points"].value
    assert f"| page_clicks | {SPIKE_PAGE} | {LAST_DAY} |" in table
    assert "–" in table  # the expected range


def test_alert_names_metric_series_day_value_range_and_run(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    result = _materialize(warehouse, notifier)

    (point,) = [r for r in _stored(warehouse) if r["is_anomaly"]]
    assert notifier.sent == [
        ":warning: 1 new anomaly:\n"
        f"• page_clicks [{SPIKE_PAGE}] on {LAST_DAY}: {point['value']:,.0f} "
        f"(expected {point['lower_bound']:,.0f} – {point['upper_bound']:,.0f}, "
        f"probability {point['anomaly_probability']:.4f})\n"
        f"Run: {UI}/runs/{result.run_id}\n"
        "Confirm or dismiss in monitoring.anomaly_feedback (verdict incident | false_positive)."
    ]


def test_history_is_appended_per_run_and_an_anomaly_is_alerted_once(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    first = _materialize(warehouse, notifier)
    second = _materialize(warehouse, notifier, detection_days=3)

    rows = _stored(warehouse)
    by_run = {run: [r for r in rows if r["run_id"] == run] for run in {r["run_id"] for r in rows}}
    assert set(by_run) == {first.run_id, second.run_id}
    assert {r["metric_day"] for r in by_run[second.run_id]} == set(DAYS[-3:])
    assert len(by_run[first.run_id]) == 6 * 7
    # The second run found the same spike again; on-call heard about it once.
    assert sum(r["is_anomaly"] for r in by_run[second.run_id]) == 1
    assert len(notifier.sent) == 1
    # What is anomalous now: each point once, by its latest verdict.
    current = warehouse.query_arrow(current_anomalies_sql("monitoring.anomalies")).to_pylist()
    assert [(r["metric"], r["series_id"], r["metric_day"]) for r in current] == [
        ("page_clicks", SPIKE_PAGE, LAST_DAY)
    ]


def test_re_executing_a_run_replaces_its_own_rows(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    table = anomalies_module._to_arrow(
        anomalies_module._Scored().results, run_id="r1", detected_at=dt.datetime.now(dt.UTC)
    )
    assert table.schema == anomalies_module.ANOMALIES_ARROW_SCHEMA
    _materialize(warehouse, notifier)
    before = _stored(warehouse)
    run_id = before[0]["run_id"]
    again = pa.Table.from_pylist(before, schema=anomalies_module.ANOMALIES_ARROW_SCHEMA)

    warehouse.replace_partitions("monitoring", "anomalies", again, ["run_id"], [(run_id,)])

    assert len(_stored(warehouse)) == len(before)


def test_confirmed_false_positive_is_not_alerted_again_and_passes_the_check(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    record_feedback(warehouse, "page_clicks", SPIKE_PAGE, LAST_DAY, "false_positive", "a promo")
    record_feedback(warehouse, "page_clicks", SPIKE_PAGE, LAST_DAY, "false_positive", "promo")

    result = _materialize(warehouse, notifier)

    assert warehouse.query_arrow("SELECT count(*) AS n FROM monitoring.anomaly_feedback")[
        "n"
    ].to_pylist() == [1]
    (point,) = [
        r
        for r in _stored(warehouse)
        if r["series_id"] == SPIKE_PAGE and r["metric_day"] == LAST_DAY
    ]
    assert point["feedback"] == "false_positive"
    assert not point["is_anomaly"]
    assert point["value"] > point["upper_bound"]  # still outside: the verdict is what changed
    assert notifier.sent == []
    assert _check_results(result)["page_clicks_latest_day_not_anomalous"].passed


def test_confirmed_incident_is_left_out_of_training(
    tmp_path: Path, notifier: RecordingNotifier
) -> None:
    # Two weeks of inflated 食品 GMV before the detection window (double-counted orders, say):
    # learned as the new level, the return to normal looks like a drop.
    incident = DAYS[-21:-7]
    mart = _mart().to_pandas()
    hit = (mart["series_id"] == "食品") & mart["metric_day"].isin(incident)
    mart.loc[hit, "value"] *= 1.6
    warehouse = DuckDBWarehouse(path=str(tmp_path / "incident.duckdb"))
    replace_table(
        warehouse,
        "monitoring",
        "monitoring_daily_metrics",
        pa.Table.from_pandas(mart, preserve_index=False),
    )

    def flagged_days(run_id: str) -> set[dt.date]:
        rows = _stored(warehouse)
        return {
            r["metric_day"]
            for r in rows
            if r["run_id"] == run_id and r["series_id"] == "食品" and r["is_anomaly"]
        }

    learned = _materialize(warehouse, notifier)
    for day in incident:
        record_feedback(warehouse, "gmv_by_category", "食品", day, "incident")
    excluded = _materialize(warehouse, notifier)

    assert flagged_days(learned.run_id)
    assert flagged_days(excluded.run_id) == set()


def test_feedback_rejects_unknown_verdicts(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(ValueError, match="verdict"):
        record_feedback(warehouse, "page_clicks", SPIKE_PAGE, LAST_DAY, "maybe")  # type: ignore[arg-type]


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_warn_for_the_anomalous_metric_only(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    result = _materialize(warehouse, notifier)
    checks = _check_results(result)

    assert set(checks) == {f"{name}_latest_day_not_anomalous" for name in METRIC_SPECS}
    clicks = checks["page_clicks_latest_day_not_anomalous"]
    assert clicks.asset_key == MART_KEY
    assert not clicks.passed
    assert clicks.severity == dg.AssetCheckSeverity.WARN
    assert SPIKE_PAGE in (clicks.description or "")
    assert "expected" in (clicks.description or "")
    assert f"{UI}/runs/{result.run_id}" in (clicks.description or "")
    assert clicks.metadata["latest_day"].value == LAST_DAY.isoformat()
    assert clicks.metadata["anomalous_series"].value == 1
    assert checks["gmv_by_category_latest_day_not_anomalous"].passed
    assert checks["orders_by_shard_latest_day_not_anomalous"].passed


def test_check_severity_comes_from_the_metric_definition(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    strict = {"page_clicks": replace(METRIC_SPECS["page_clicks"], check_severity="ERROR")}
    _materialize(warehouse, notifier)

    result = dg.materialize(
        [dg.AssetSpec(MART_KEY), dg.AssetSpec(ANOMALIES_KEY), *build_anomaly_checks(strict)],
        resources={"warehouse": warehouse, "notifier": notifier},
        selection=dg.AssetSelection.checks(*build_anomaly_checks(strict)),
    )

    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR


def test_checks_run_after_the_anomalies_asset() -> None:
    for check in anomaly_checks():
        (spec,) = check.check_specs
        assert ANOMALIES_KEY in {dep.asset_key for dep in spec.additional_deps}
        assert not spec.blocking


def test_check_fails_when_the_latest_day_was_not_scored(
    warehouse: DuckDBWarehouse, notifier: RecordingNotifier
) -> None:
    result = dg.materialize(
        [dg.AssetSpec(MART_KEY), *anomaly_assets(), *anomaly_checks()],
        resources={"warehouse": warehouse, "notifier": notifier},
        selection=dg.AssetSelection.checks(*anomaly_checks()),
    )

    checks = _check_results(result)
    assert len(checks) == len(METRIC_SPECS)
    for check in checks.values():
        assert not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert "has not been scored" in (check.description or "")


def test_metric_definitions_define_the_demo_metrics() -> None:
    assert list(METRIC_SPECS) == ["gmv_by_category", "orders_by_shard", "page_clicks"]
    clicks = METRIC_SPECS["page_clicks"]
    assert clicks == MetricSpec(
        name="page_clicks",
        description=clicks.description,
        direction="spike",
        schema="monitoring",
        model="monitoring_daily_metrics",
        timestamp_column="metric_day",
        value="SUM(value)",
        series=("series_id",),
        where="metric = 'page_clicks'",
        frequency="DAILY",
        anomaly_prob_threshold=0.999,
        holiday_region="JP",
        min_history_days=28,
        training_days=730,
        check_severity="WARN",
        auto_arima_max_order=2,
        maximum_bytes_billed=10 * 1024**3,
    )
    assert METRIC_SPECS["gmv_by_category"].direction == "drop"


VALID = (
    "name: x\ndescription: d\nmodel: widetable.orders\ntimestamp_column: order_day\n"
    "value: SUM(amount)\ndirection: both\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID.replace("both", "up"), "metric 'x': key 'direction':"),
        (VALID.replace("name: x", "name: x-y"), "metric 'x-y': key 'name':"),
        (VALID.replace("description: d\n", ""), "metric 'x': key 'description': missing"),
        (VALID.replace("widetable.orders", "orders"), "metric 'x': key 'model':"),
        (VALID.replace("order_day", "order day"), "metric 'x': key 'timestamp_column':"),
        (VALID.replace("SUM(amount)", "SUM(amount); DROP TABLE t"), "metric 'x': key 'value':"),
        (VALID.replace("SUM(amount)", "(SELECT 1)"), "metric 'x': key 'value':"),
        (VALID.replace("SUM(amount)", "SUM(amount"), "metric 'x': key 'value':"),
        (VALID + "where: a = 'b -- c'\n", "metric 'x': key 'where':"),
        (VALID + "series: [shop, 'a b']\n", "metric 'x': key 'series':"),
        (VALID + "series: shop\n", "metric 'x': key 'series':"),
        (VALID + "frequency: HOURLY\n", "metric 'x': key 'frequency':"),
        (VALID + "anomaly_prob_threshold: 1\n", "metric 'x': key 'anomaly_prob_threshold':"),
        (VALID + "min_history_days: 7\n", "metric 'x': key 'min_history_days':"),
        (VALID + "training_days: 20\n", "metric 'x': key 'training_days':"),
        (VALID + "holiday_region: Japan\n", "metric 'x': key 'holiday_region':"),
        (VALID + "check_severity: INFO\n", "metric 'x': key 'check_severity':"),
        (VALID + "auto_arima_max_order: 6\n", "metric 'x': key 'auto_arima_max_order':"),
        (VALID + "maximum_bytes_billed: 0\n", "metric 'x': key 'maximum_bytes_billed':"),
        (VALID + "model_type: ARIMA\n", "metric 'x': key 'model_type': unknown key"),
        ("- just a list\n", "expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_metric_definition_errors_name_file_metric_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(MetricsConfigError) as error:
        load_metric_specs(tmp_path)

    assert str(error.value).startswith(f"{path}:")
    assert message in str(error.value)


def test_a_metric_defined_twice_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(VALID, encoding="utf-8")

    with pytest.raises(
        MetricsConfigError, match=r"b\.yaml:1: metric 'x': key 'name': already defined"
    ):
        load_metric_specs(tmp_path)


def test_an_empty_definitions_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MetricsConfigError, match="no metric definitions"):
        load_metric_specs(tmp_path)


def test_cli_records_a_verdict(warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINATO_DUCKDB_PATH", warehouse.path)
    arguments = ["anomaly", "feedback", "--metric", "page_clicks", "--series", SPIKE_PAGE]
    arguments += ["--day", LAST_DAY.isoformat(), "--verdict", "incident", "--note", "cold wave"]

    result = CliRunner().invoke(cli.main, arguments)
    unknown = CliRunner().invoke(cli.main, [*arguments[:3], "clicks", *arguments[4:]])

    assert result.exit_code == 0, result.output
    assert warehouse.query_arrow(
        "SELECT metric, series_id, metric_day, verdict, note FROM monitoring.anomaly_feedback"
    ).to_pylist() == [
        {
            "metric": "page_clicks",
            "series_id": SPIKE_PAGE,
            "metric_day": LAST_DAY,
            "verdict": "incident",
            "note": "cold wave",
        }
    ]
    assert unknown.exit_code != 0
    assert "unknown metric" in unknown.output
