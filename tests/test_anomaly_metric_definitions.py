"""One metric definition file, no Python: the same YAML drives the local and the BigQuery engine."""

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import sqlglot

from assets.monitoring import anomalies, bigquery_ml
from assets.monitoring.metrics import load_metric_specs, series_sql
from resources.warehouse import BigQueryWarehouse, DuckDBWarehouse
from tests.tables import replace_table
from tests.test_anomaly_bigquery_sql import DETECTED, FakeClient

MIB = 1_048_576

LAST_DAY = dt.date(2025, 5, 10)
DAYS = [LAST_DAY - dt.timedelta(days=n) for n in range(89, -1, -1)]

# A metric on a model the demo metrics do not use, with two series columns and a filter.
DEFINITION = """\
name: orders_per_shop
description: Daily order value per shop and channel, cancelled orders excluded.
model: widetable.widetable_orders
timestamp_column: order_day
value: SUM(amount_jpy)
series: [shop, channel]
where: status <> 'cancelled'
direction: drop
auto_arima_max_order: 3
maximum_bytes_billed: 5000000000
"""


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "metric_definitions"
    folder.mkdir()
    (folder / "orders_per_shop.yaml").write_text(DEFINITION, encoding="utf-8")
    return folder


def _orders() -> pa.Table:
    """Two orders per shop, channel and day (one cancelled); shop b's web orders halve last."""
    rng = np.random.default_rng(0)
    rows = []
    for day in DAYS:
        for shop, channel in [("a", "web"), ("a", "store"), ("b", "web")]:
            amount = (
                10_000 * (0.6 if day.weekday() >= 5 else 1.0) * (1 + 0.02 * rng.standard_normal())
            )
            if (shop, channel, day) == ("b", "web", LAST_DAY):
                amount *= 0.5
            rows += [
                {
                    "order_day": day,
                    "shop": shop,
                    "channel": channel,
                    "status": "paid",
                    "amount_jpy": round(amount),
                },
                {
                    "order_day": day,
                    "shop": shop,
                    "channel": channel,
                    "status": "cancelled",
                    "amount_jpy": 99_999_999,
                },
            ]
    return pa.Table.from_pylist(rows)


def test_the_definition_scores_on_duckdb(metrics_dir: Path, tmp_path: Path) -> None:
    specs = load_metric_specs(metrics_dir)
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    replace_table(warehouse, "widetable", "widetable_orders", _orders())

    scored = anomalies._score_metrics(warehouse, specs, 7, logging.getLogger("test"))

    results = scored.results
    assert set(results["series_id"]) == {"a / web", "a / store", "b / web"}
    flagged = results[results["is_anomaly"]]
    assert list(zip(flagged["series_id"], flagged["metric_day"], strict=True)) == [
        ("b / web", LAST_DAY)
    ]
    # The cancelled orders never reached the series: values are daily sums of paid orders.
    assert results["value"].max() < 20_000
    assert set(results["engine"]) == {"duckdb"}
    assert scored.windows == {"orders_per_shop": "2025-05-04 .. 2025-05-10"}


class FakeBigQueryWarehouse(BigQueryWarehouse):
    """BigQuery names of the resource; only the feedback table is read through it."""

    def query_arrow(self, sql: str) -> pa.Table:
        assert "anomaly_feedback" in sql
        return pa.table({"series_id": [], "metric_day": [], "verdict": []})

    def table_exists(self, schema: str, table: str) -> bool:
        return True


def test_the_same_definition_trains_bigquery_ml(
    metrics_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (spec,) = load_metric_specs(metrics_dir).values()
    warehouse = FakeBigQueryWarehouse(project="acme-data", dataset_prefix="prod_")
    empty = DETECTED.slice(0, 0)
    client = FakeClient(
        [
            (pa.table({"latest_day": [LAST_DAY]}), MIB),
            (pa.table({"series": [1]}), MIB),
            (empty, MIB),
            (empty, MIB),
            (pa.table({"series_id": ["a / web"]}), MIB),
        ]
    )
    monkeypatch.setattr(
        bigquery_ml.BigQueryJobs, "for_warehouse", classmethod(lambda cls, w: cls(client, None))
    )

    scored = anomalies._score_metrics(warehouse, {spec.name: spec}, 7, logging.getLogger("t"))

    series = series_sql(spec, "`acme-data.prod_widetable.widetable_orders`")
    assert series == (
        "SELECT\n"
        "  COALESCE(CAST(shop AS STRING), '(null)') || ' / ' || "
        "COALESCE(CAST(channel AS STRING), '(null)') AS series_id,\n"
        "  CAST(order_day AS DATE) AS metric_day,\n"
        "  SUM(amount_jpy) AS value\n"
        "FROM `acme-data.prod_widetable.widetable_orders`\n"
        "WHERE status <> 'cancelled'\n"
        "GROUP BY 1, 2"
    )
    sqlglot.parse_one(series, read="bigquery")
    training = bigquery_ml.training_query_sql(
        series, spec, dt.date(2025, 5, 4), "`acme-data.prod_monitoring.anomaly_feedback`"
    )
    create = bigquery_ml.create_model_sql(
        "`acme-data.prod_monitoring.anomaly_model_orders_per_shop`",
        training,
        timestamp_col="metric_day",
        data_col="value",
        id_cols=["series_id"],
        auto_arima_max_order=3,
    )
    sent = [sql for sql, _ in client.sent]
    assert sent[:3] == [
        bigquery_ml.latest_day_sql(series),
        bigquery_ml.trained_series_sql(training),
        create,
    ]
    assert "STRUCT(0.999 AS anomaly_prob_threshold)" in sent[3]
    assert "is_anomaly AND value < lower_bound AS is_anomaly" in sent[3]
    assert sent[4] == bigquery_ml.window_series_sql(series, dt.date(2025, 5, 4))
    # Every job reading the model carries the metric's cost guard and is billed to the run.
    assert {limit for _, limit in client.sent} == {5_000_000_000}
    assert scored.bytes_billed == 5 * MIB
    assert scored.skipped == ["orders_per_shop/a / web"]  # the fake model scored nothing
