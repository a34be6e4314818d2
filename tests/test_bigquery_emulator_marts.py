"""The reverse-ETL sync diff and the anomaly SQL on a real BigQuery emulator
(tests/bigquery_emulator.py), against the same marts seeded in DuckDB: the same diffs and
deliveries, the same metric series, the labels every job carries.

Only the marts these read are seeded (`service_crm.service_crm_contacts`,
`monitoring.monitoring_daily_metrics`), through the product's warehouse on both engines.
"""

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from google.api_core.exceptions import BadRequest

from assets.monitoring.anomalies import ANOMALIES_TABLE, build_anomalies_asset
from assets.monitoring.bigquery_ml import (
    detect_anomalies_sql,
    detection_query_sql,
    history_sql,
    latest_day_sql,
    metric_model_sql,
    trained_series_sql,
    training_query_sql,
    window_series_sql,
)
from assets.monitoring.feedback import ensure_feedback_table, record_feedback
from assets.monitoring.metrics import metric_specs, series_sql
from resources.warehouse import DuckDBWarehouse, Warehouse
from tests.bigquery_emulator import (
    Emulator,
    EmulatorWarehouse,
    SentJob,
    emulator_warehouse,
    record_jobs,
)
from tests.tables import replace_table
from tests.test_sync import (
    CRM_SPEC,
    Env,
    RecordingNotifier,
    contact,
    metadata,
)

# -- the CRM contacts sync ----------------------------------------------------------------

# Two rows a batch: the first cycle's plan numbers its rows into three batches.
SPEC = CRM_SPEC.model_copy(update={"batch_size": 2})
CONTACTS = [
    contact("c01"),
    contact("c02", lifecycle_stage="lead", lifetime_orders=0, last_ordered_at=None),
    contact("c03", lifetime_gmv_jpy=30_000.25, customer_segment="vip"),
    contact("c04", customer_segment=None),
    contact("c05", last_ordered_at=dt.datetime(2026, 11, 19, 23, 59, 59)),
]
MART_CHANGES = [
    "UPDATE {mart} SET lifetime_orders = lifetime_orders + 1, customer_segment = 'active' "
    "WHERE contact_id = 'c02'",
    "DELETE FROM {mart} WHERE contact_id = 'c03'",
]
REPORTED = ("rows_added", "rows_changed", "rows_removed", "rows_sent", "rows_failed", "batches")


def _sync_cycles(env: Env) -> list[dict[str, Any]]:
    """All rows, then no change, then one row changed and one deleted in the mart: per cycle
    the report, the destination calls (operation, keys) and the destination's rows."""
    env.set_source(CONTACTS)
    cycles = []
    for cycle in range(3):
        if cycle == 2:
            mart = env.warehouse.qualified(SPEC.source_schema, SPEC.source_model)
            for statement in MART_CHANGES:
                env.warehouse.execute(statement.format(mart=mart))
        calls_before = len(env.calls())
        result = env.sync(SPEC)
        assert result.success
        cycles.append(
            {
                "report": {key: metadata(result)[key] for key in REPORTED},
                "calls": env.calls()[calls_before:],
                "crm": env.crm_rows(),
                "run_id": result.run_id,
            }
        )
    return cycles


def test_crm_sync_on_bigquery_equals_duckdb(
    bigquery_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync asset, warehouse = the emulator, destination = SQLite (the embedded default),
    three cycles: the diff counts, the batches delivered and the destination's rows equal the
    DuckDB run's. Every job of a sync step carries its labels; the sync asset is not
    partitioned, so `minato_partition` is left out (unset labels are)."""
    monkeypatch.setenv("MINATO_ENV", "staging")
    jobs = record_jobs(monkeypatch)
    duck = Env(tmp_path / "duckdb")
    bigquery = Env(tmp_path / "bigquery")
    bigquery.warehouse = emulator_warehouse(bigquery_emulator, dataset_prefix="marts_sync_")
    for env in (duck, bigquery):
        env.tmp_path.mkdir()

    on_duckdb = _sync_cycles(duck)
    on_bigquery = _sync_cycles(bigquery)

    def without_run(cycles: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in cycle.items() if k != "run_id"} for cycle in cycles]

    assert without_run(on_bigquery) == without_run(on_duckdb)
    first, unchanged, changed = on_bigquery
    assert first["report"] == dict(zip(REPORTED, (5, 0, 0, 5, 0, 3), strict=True))
    assert first["calls"] == [
        {"op": "upsert", "keys": ["c01", "c02"], "ok": True},
        {"op": "upsert", "keys": ["c03", "c04"], "ok": True},
        {"op": "upsert", "keys": ["c05"], "ok": True},
    ]
    assert first["crm"]["c05"] == ("customer", 3, 12_000.5, "2026-11-19 23:59:59", "loyal")
    assert first["crm"]["c02"] == ("lead", 0, 12_000.5, None, "loyal")
    assert unchanged["report"] == dict.fromkeys(REPORTED, 0)
    assert unchanged["calls"] == []
    assert changed["report"] == dict(zip(REPORTED, (0, 1, 1, 2, 0, 2), strict=True))
    assert changed["calls"] == [
        {"op": "upsert", "keys": ["c02"], "ok": True},
        {"op": "delete", "keys": ["c03"], "ok": True},
    ]
    assert sorted(changed["crm"]) == ["c01", "c02", "c04", "c05"]
    assert changed["crm"]["c02"] == ("lead", 1, 12_000.5, None, "active")

    # The jobs of each sync step (key check, plan, reads, journal loads and scripts, fold)
    # carry the step's labels; the seeding and the mart changes, outside a step, only the env.
    by_run: dict[str, list[SentJob]] = {cycle["run_id"]: [] for cycle in on_bigquery}
    outside = []
    for job in jobs.jobs:
        run_id = job.labels.get("dagster_run_id")
        (by_run[run_id] if run_id else outside).append(job)
    for run_id, sent in by_run.items():
        assert len(sent) >= 5
        assert all(
            job.labels
            == {
                "minato_env": "staging",
                "minato_asset": "sync_crm_contacts",
                "dagster_run_id": run_id,
            }
            for job in sent
        )
    assert outside and all(job.labels == {"minato_env": "staging"} for job in outside)
    # The emulator keeps a load job's labels: the journal's loads read back as they were sent.
    loads = [
        job.labels
        for job in bigquery_emulator.client().list_jobs()
        if job.job_type == "load" and job.labels.get("dagster_run_id") in by_run
    ]
    assert len(loads) == sum(1 for run in by_run.values() for job in run if not job.sql)
    assert loads and all(labels["minato_asset"] == "sync_crm_contacts" for labels in loads)


# -- the anomaly SQL ------------------------------------------------------------------------

LATEST = dt.date(2026, 11, 20)
DAYS = [LATEST - dt.timedelta(days=n) for n in range(59, -1, -1)]
DETECTION_DAYS = 7
START = LATEST - dt.timedelta(days=DETECTION_DAYS - 1)
INCIDENT = ("orders_by_shard", "shard_01", LATEST - dt.timedelta(days=20))
FALSE_POSITIVE = ("page_clicks", "/", LATEST - dt.timedelta(days=2))
METRIC_SCHEMA = pa.schema(
    [
        ("metric_day", pa.date32()),
        ("metric", pa.string()),
        ("series_id", pa.string()),
        ("value", pa.float64()),
    ]
)


def _daily_metrics() -> pa.Table:
    """Every metric of metric_definitions/ with two full series; besides: a series too short to
    train (`shard_03`), a NULL series key (`(null)`), two rows of one day to add up, a NULL
    value. Values are exact in binary, so sums agree to the bit on both engines."""
    rows = []
    for n, day in enumerate(DAYS):
        weekly = (0.0, 1.0, 2.5, 1.0, 3.0, -4.0, -5.5)[day.weekday()]
        for metric, series, base in (
            ("orders_by_shard", "shard_01", 120.0),
            ("orders_by_shard", "shard_02", 80.0),
            ("gmv_by_category", "food", 5_000.0),
            ("gmv_by_category", None, 700.0),
            ("page_clicks", "/", 300.0),
            ("page_clicks", "/help", 40.0),
        ):
            value = None if (series, n) == ("shard_02", 30) else base + weekly + (n * 7 % 11)
            rows.append((day, metric, series, value))
        rows.append((day, "gmv_by_category", "food", 250.5))
        if n >= len(DAYS) - 10:
            rows.append((day, "orders_by_shard", "shard_03", 10.0 + n % 3))
    names = METRIC_SCHEMA.names
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows], METRIC_SCHEMA)


@pytest.fixture(scope="module")
def metric_marts(
    bigquery_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DuckDBWarehouse, EmulatorWarehouse]]:
    """The daily metrics mart and on-call's feedback, the same in DuckDB and on the emulator."""
    duck = DuckDBWarehouse(path=str(tmp_path_factory.mktemp("metrics") / "warehouse.duckdb"))
    bigquery = emulator_warehouse(bigquery_emulator, dataset_prefix="marts_anomaly_")
    for warehouse in (duck, bigquery):
        replace_table(warehouse, "monitoring", "monitoring_daily_metrics", _daily_metrics())
        ensure_feedback_table(warehouse)
        record_feedback(warehouse, *INCIDENT, "incident")
        record_feedback(warehouse, *FALSE_POSITIVE, "false_positive")
    yield duck, bigquery


def test_feedback_is_recorded_on_bigquery(bigquery_emulator: Emulator) -> None:
    """On-call's verdicts (`minato anomaly feedback`) after the anomalies asset has run once
    (it creates the feedback table), for a shard and for a page path: one plain table, not
    split per series (a page path cannot name a table), and a repeated verdict replaces the
    earlier one."""
    warehouse = emulator_warehouse(bigquery_emulator, dataset_prefix="marts_feedback_")
    ensure_feedback_table(warehouse)
    record_feedback(warehouse, *INCIDENT, "incident")
    record_feedback(warehouse, *FALSE_POSITIVE, "false_positive")
    record_feedback(warehouse, *FALSE_POSITIVE, "false_positive")
    assert _rows(
        warehouse, f"SELECT metric, series_id FROM {ensure_feedback_table(warehouse)}"
    ) == [
        ("orders_by_shard", "shard_01"),
        ("page_clicks", "/"),
    ]


def _rows(warehouse: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(row.values()) for row in warehouse.query_arrow(sql).to_pylist())


def test_anomaly_inputs_on_bigquery_equal_duckdb(
    metric_marts: tuple[DuckDBWarehouse, EmulatorWarehouse],
) -> None:
    """Every statement of the BigQuery ML path the emulator runs, run there: the latest day,
    the history, the window's series, the training query (incidents left out, short series
    dropped), the trained-series count, the detection query and `CREATE MODEL` (the emulator
    registers the model and plans its training query without training). Their rows equal the
    same SQL on DuckDB and the local engine's own input (its history without incidents, short
    series dropped).

    Gap: `ML.DETECT_ANOMALIES` does not parse on the emulator (a syntax error at the function's
    arguments, whose form is BigQuery's documented one). Its exact text is checked in the
    anomalies asset test below and in tests/test_anomaly_bigquery_sql.py."""
    duck, bigquery = metric_marts
    feedback = {engine: ensure_feedback_table(engine) for engine in (duck, bigquery)}
    for spec in metric_specs().values():
        series = {w: series_sql(spec, w.qualified(spec.schema, spec.model)) for w in feedback}
        first = START - dt.timedelta(days=spec.training_days)
        same = {}
        for build, args in (
            (latest_day_sql, ()),
            (history_sql, (first,)),
            (window_series_sql, (START,)),
        ):
            rows = {w: _rows(w, build(series[w], *args)) for w in feedback}
            assert rows[bigquery] == rows[duck], (spec.name, build.__name__)
            same[build] = rows[bigquery]
        assert same[latest_day_sql] == [(LATEST,)]
        history, window = same[history_sql], same[window_series_sql]
        assert len(history) >= 2 * len(DAYS) - 1  # one NULL value
        trainings = {w: training_query_sql(series[w], spec, START, feedback[w]) for w in feedback}
        training = {w: _rows(w, trainings[w]) for w in feedback}
        assert training[bigquery] == training[duck], spec.name
        # The local engine's training input: the history before the window, no incidents,
        # series with min_history_days points.
        incidents = {INCIDENT[1:]} if spec.name == INCIDENT[0] else set()
        before = [r for r in history if r[1] < START and (r[0], r[1]) not in incidents]
        counts = {s: sum(1 for r in before if r[0] == s) for s, _, _ in before}
        expected = [r for r in before if counts[r[0]] >= spec.min_history_days]
        assert training[bigquery] == expected, spec.name
        trained = {s for s, _, _ in expected}
        # shard_03, in the window with 10 days of history, is not trained: reported as skipped.
        assert len(trained) == 2 and trained == {s for (s,) in window} - {"shard_03"}
        [(count,)] = _rows(bigquery, trained_series_sql(trainings[bigquery]))
        assert count == len(trained)
        detection = {w: detection_query_sql(series[w], START, trainings[w]) for w in feedback}
        assert _rows(bigquery, detection[bigquery]) == _rows(duck, detection[duck])
        assert _rows(bigquery, detection[bigquery]) == [
            r for r in history if r[1] >= START and r[0] in trained
        ]

        model = bigquery.qualified("monitoring", f"anomaly_model_{spec.name}")
        bigquery.execute(metric_model_sql(model, trainings[bigquery], spec))
        registered = bigquery.client().get_model(model.strip("`"))
        assert registered.model_type == "ARIMA_PLUS"
        assert [f.name for f in registered.feature_columns] == ["series_id", "metric_day", "value"]
        detect = detect_anomalies_sql(
            model, spec.anomaly_prob_threshold, detection[bigquery], metric=spec.name
        )
        with pytest.raises(BadRequest, match="Syntax error"):
            bigquery.query_arrow(detect)  # the emulator's gap; BigQuery runs it


def _detected(sql: str) -> pa.Table:
    """What `ML.DETECT_ANOMALIES` answers in the asset test: orders_by_shard's shard_01 is
    anomalous on the latest day, page_clicks' `/` was flagged on the false-positive day; the
    rest scored normal. The rows are the metric's trained series in the window."""
    metric = next(name for name in metric_specs() if f"'{name}' AS metric" in sql)
    flagged = {("orders_by_shard", "shard_01", LATEST), ("page_clicks", "/", FALSE_POSITIVE[2])}
    series = {"orders_by_shard": ["shard_01", "shard_02"], "gmv_by_category": ["(null)", "food"]}
    rows = [
        {
            "metric": metric,
            "series_id": s,
            "metric_day": day,
            "value": 100.0,
            "is_anomaly": (metric, s, day) in flagged,
            "lower_bound": 90.0,
            "upper_bound": 95.0 if (metric, s, day) in flagged else 110.0,
            "anomaly_probability": 0.9999 if (metric, s, day) in flagged else 0.5,
        }
        for s in series.get(metric, ["/", "/help"])
        for day in DAYS[-DETECTION_DAYS:]
    ]
    return pa.Table.from_pylist(rows)


def test_anomalies_asset_on_bigquery(
    metric_marts: tuple[DuckDBWarehouse, EmulatorWarehouse],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The `monitoring/anomalies` asset with the emulator as its warehouse: every statement but
    `ML.DETECT_ANOMALIES` runs there (latest day, feedback, trained-series count, CREATE MODEL,
    the window's series, the append to monitoring.anomalies, the earlier-alerts lookup).
    `ML.DETECT_ANOMALIES`, which the emulator cannot parse, is answered by the test: its exact
    text is asserted, and the answer goes through the asset like BigQuery's would."""
    monkeypatch.setenv("MINATO_ENV", "staging")
    _, bigquery = metric_marts
    jobs = record_jobs(monkeypatch, {"ML.DETECT_ANOMALIES(": _detected})
    alerts = tmp_path / "alerts.txt"
    specs = metric_specs()

    result = dg.materialize(
        [build_anomalies_asset(specs)],
        resources={"warehouse": bigquery, "notifier": RecordingNotifier(record_path=str(alerts))},
    )

    assert result.success
    feedback = bigquery.qualified("monitoring", "anomaly_feedback")
    expected_ml = []
    for spec in specs.values():
        series = series_sql(spec, bigquery.qualified(spec.schema, spec.model))
        training = training_query_sql(series, spec, START, feedback)
        model = bigquery.qualified("monitoring", f"anomaly_model_{spec.name}")
        expected_ml.append(metric_model_sql(model, training, spec))
        expected_ml.append(
            detect_anomalies_sql(
                model,
                spec.anomaly_prob_threshold,
                detection_query_sql(series, START, training),
                metric=spec.name,
                direction=spec.direction,
            )
        )
    sent_ml = [job.sql for job in jobs.jobs if "MODEL `" in job.sql]
    assert sent_ml == expected_ml
    labels = {
        "minato_env": "staging",
        "minato_asset": "monitoring_anomalies",
        "dagster_run_id": result.run_id,
    }
    assert len(jobs.jobs) > 3 * len(specs)
    assert all(job.labels == labels for job in jobs.jobs)
    # The metric's cost guard on each job that reads its model.
    assert {job.maximum_bytes_billed for job in jobs.jobs if "MODEL `" in job.sql} == {
        spec.maximum_bytes_billed for spec in specs.values()
    }

    (materialization,) = result.asset_materializations_for_node("monitoring__anomalies")
    meta = {key: value.value for key, value in materialization.metadata.items()}
    assert meta["engine"] == "bigquery"
    assert meta["skipped_series"] == ["orders_by_shard/shard_03"]
    assert meta["anomalies_found"] == meta["anomalies_alerted"] == 1
    assert meta["bigquery_bytes_billed"] == 0  # the emulator bills nothing
    stored = bigquery.query_arrow(
        "SELECT metric, series_id, metric_day, is_anomaly, feedback, engine, run_id "
        f"FROM {bigquery.qualified('monitoring', ANOMALIES_TABLE)} "
        f"WHERE run_id = '{result.run_id}'"
    ).to_pylist()
    assert len(stored) == 6 * DETECTION_DAYS
    assert {(r["engine"], r["run_id"]) for r in stored} == {("bigquery", result.run_id)}
    assert sorted(
        (r["metric"], r["series_id"], r["metric_day"], r["is_anomaly"], r["feedback"])
        for r in stored
        if r["is_anomaly"] or r["feedback"]
    ) == [
        ("orders_by_shard", "shard_01", LATEST, True, None),
        # Flagged by the model, dismissed by on-call: kept with its verdict, no anomaly.
        ("page_clicks", "/", FALSE_POSITIVE[2], False, "false_positive"),
    ]
    (alert,) = alerts.read_text().split(":warning:")[1:]
    assert "orders_by_shard [shard_01] on 2026-11-20" in alert
