"""`monitoring.anomaly_feedback`: on-call's verdict on a flagged point, honoured by both engines.

One row per (metric, series_id, metric_day): `incident` (real; the day is left out of every
later training window, so the model does not learn the incident as normal) or `false_positive`
(the point is not alerted again; it stays in `monitoring.anomalies` with its verdict).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import pyarrow as pa

from assets.constants import MONITORING_SCHEMA
from assets.monitoring.bigquery_ml import date_literal
from resources.identifiers import validate_identifier
from resources.warehouse import Warehouse

FEEDBACK_TABLE = "anomaly_feedback"
Verdict = Literal["incident", "false_positive"]
VERDICTS: tuple[Verdict, ...] = ("incident", "false_positive")

FEEDBACK_ARROW_SCHEMA = pa.schema(
    [
        ("metric", pa.string()),
        ("series_id", pa.string()),
        ("metric_day", pa.date32()),
        ("verdict", pa.string()),
        ("note", pa.string()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def ensure_feedback_table(warehouse: Warehouse) -> str:
    """Create the (empty) table where missing, so queries may always read it; its name."""
    if not warehouse.table_exists(MONITORING_SCHEMA, FEEDBACK_TABLE):
        empty = FEEDBACK_ARROW_SCHEMA.empty_table()
        warehouse.replace_partitions(MONITORING_SCHEMA, FEEDBACK_TABLE, empty, ["metric"], [])
    return warehouse.qualified(MONITORING_SCHEMA, FEEDBACK_TABLE)


def record_feedback(
    warehouse: Warehouse,
    metric: str,
    series_id: str,
    day: dt.date,
    verdict: Verdict,
    note: str = "",
) -> None:
    """Store a verdict; recording another one for the same point replaces it (idempotent)."""
    validate_identifier(metric, what="metric name")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    row = pa.table(
        {
            "metric": [metric],
            "series_id": [series_id],
            "metric_day": [day],
            "verdict": [verdict],
            "note": [note],
            "recorded_at": [dt.datetime.now(dt.UTC)],
        },
        schema=FEEDBACK_ARROW_SCHEMA,
    )
    warehouse.replace_partitions(
        MONITORING_SCHEMA,
        FEEDBACK_TABLE,
        row,
        ["metric", "series_id", "metric_day"],
        [(metric, series_id, day)],
    )


def read_feedback(
    warehouse: Warehouse, metric: str, since: dt.date
) -> dict[tuple[str, dt.date], Verdict]:
    """Verdicts on the metric's points from `since` on, by (series_id, day)."""
    rows = warehouse.query_arrow(
        "SELECT series_id, metric_day, verdict\n"
        f"FROM {ensure_feedback_table(warehouse)}\n"
        f"WHERE metric = '{validate_identifier(metric, what='metric name')}'\n"
        f"  AND metric_day >= {date_literal(since)}"
    ).to_pylist()
    return {(row["series_id"], row["metric_day"]): row["verdict"] for row in rows}
