"""Anomaly detection in production: BigQuery ML ARIMA_PLUS, one model per metric.

The SQL builders are pure functions so the exact statements can be tested without BigQuery;
`detect_anomalies_bigquery` runs them as query jobs that carry the metric's cost guard
(`maximum_bytes_billed`) and add up the bytes billed. Every name that reaches the SQL is
validated, every value is a literal we render ourselves.

The model learns from the metric's series (metrics.series_sql, the same query the local engine
reads) over `training_days` before the detection window, without the days confirmed as incidents
in `monitoring.anomaly_feedback`: a learned incident would widen every later interval.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from assets.monitoring.metrics import RESULT_COLUMNS, MetricSpec
from resources.identifiers import InvalidIdentifierError, validate_identifier
from resources.warehouse import BigQueryWarehouse
from resources.warehouse.bigquery_labels import job_labels, record_job

DATA_FREQUENCIES = (
    "AUTO_FREQUENCY",
    "PER_MINUTE",
    "HOURLY",
    "DAILY",
    "WEEKLY",
    "MONTHLY",
    "QUARTERLY",
    "YEARLY",
)
# BigQuery ML holiday regions: country codes plus a few multi-country regions.
_HOLIDAY_REGION = re.compile(r"^[A-Z]{2,6}$")
# `project.dataset.model` (project ids may contain hyphens), optionally backquoted as a whole.
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


def model_reference(model: str) -> str:
    """Validate `[project.]dataset.model` and return it backquoted for BigQuery."""
    parts = model.strip("`").split(".")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not _PROJECT.fullmatch(parts[0])):
        raise InvalidIdentifierError(
            f"invalid model name {model!r}: expected project.dataset.model"
        )
    for part in parts[-2:]:
        validate_identifier(part, what="model name part")
    return f"`{'.'.join(parts)}`"


def create_model_sql(
    model: str,
    training_query: str,
    *,
    timestamp_col: str,
    data_col: str,
    id_cols: Sequence[str],
    holiday_region: str = "JP",
    data_frequency: str = "DAILY",
    auto_arima_max_order: int | None = None,
) -> str:
    """`CREATE OR REPLACE MODEL`: ARIMA_PLUS with one time series per value of `id_cols`."""
    if not id_cols:
        raise ValueError("id_cols must name at least one column")
    ids = ", ".join(f"'{validate_identifier(c, what='id column')}'" for c in id_cols)
    if not _HOLIDAY_REGION.fullmatch(holiday_region):
        raise ValueError(f"invalid holiday_region {holiday_region!r}")
    if data_frequency not in DATA_FREQUENCIES:
        raise ValueError(f"invalid data_frequency {data_frequency!r}: one of {DATA_FREQUENCIES}")
    options = [
        "model_type = 'ARIMA_PLUS'",
        f"time_series_timestamp_col = '{validate_identifier(timestamp_col, what='column')}'",
        f"time_series_data_col = '{validate_identifier(data_col, what='column')}'",
        f"time_series_id_col = [{ids}]",
        f"data_frequency = '{data_frequency}'",
        f"holiday_region = '{holiday_region}'",
    ]
    if auto_arima_max_order is not None:
        # BigQuery ML accepts 1 to 5.
        if isinstance(auto_arima_max_order, bool) or auto_arima_max_order not in range(1, 6):
            raise ValueError(f"auto_arima_max_order must be 1..5, got {auto_arima_max_order!r}")
        options.append(f"auto_arima_max_order = {auto_arima_max_order}")
    return (
        f"CREATE OR REPLACE MODEL {model_reference(model)}\n"
        "OPTIONS (\n" + ",\n".join(f"  {option}" for option in options) + "\n)\n"
        f"AS\n{training_query.strip()}"
    )


def metric_model_sql(model: str, training_query: str, spec: MetricSpec) -> str:
    """`create_model_sql` for a metric: one series per `series_id` of its daily values."""
    return create_model_sql(
        model,
        training_query,
        timestamp_col="metric_day",
        data_col="value",
        id_cols=["series_id"],
        holiday_region=spec.holiday_region,
        data_frequency=spec.frequency,
        auto_arima_max_order=spec.auto_arima_max_order,
    )


def detect_anomalies_sql(
    model: str,
    threshold: float,
    detection_query: str,
    *,
    metric: str,
    direction: str = "both",
    timestamp_col: str = "metric_day",
    data_col: str = "value",
    id_col: str = "series_id",
) -> str:
    """`ML.DETECT_ANOMALIES` on new rows, normalised to the local engine's output columns.

    BigQuery ML flags both sides of the interval; `direction` keeps only spikes or drops.
    Rows the model cannot score (a series it was not trained on) come back with NULLs and are
    dropped, like series the local engine skips.
    """
    if isinstance(threshold, bool) or not (0 < threshold < 1 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold!r}")
    ts = validate_identifier(timestamp_col, what="column")
    data = validate_identifier(data_col, what="column")
    series = validate_identifier(id_col, what="column")
    flagged = {
        "both": "is_anomaly",
        "spike": f"is_anomaly AND {data} > upper_bound",
        "drop": f"is_anomaly AND {data} < lower_bound",
    }
    if direction not in flagged:
        raise ValueError(f"invalid direction {direction!r}: one of {tuple(flagged)}")
    return (
        "SELECT\n"
        f"  '{validate_identifier(metric, what='metric name')}' AS metric,\n"
        f"  CAST({series} AS STRING) AS series_id,\n"
        # ARIMA_PLUS returns the timestamp column as a UTC TIMESTAMP; its date is the input day.
        f"  CAST({ts} AS DATE) AS metric_day,\n"
        f"  CAST({data} AS FLOAT64) AS value,\n"
        f"  {flagged[direction]} AS is_anomaly,\n"
        "  lower_bound,\n"
        "  upper_bound,\n"
        "  anomaly_probability\n"
        "FROM ML.DETECT_ANOMALIES(\n"
        f"  MODEL {model_reference(model)},\n"
        f"  STRUCT({threshold!r} AS anomaly_prob_threshold),\n"
        "  (\n"
        f"{textwrap.indent(detection_query.strip(), '    ')}\n"
        "  )\n"
        ")\n"
        "WHERE is_anomaly IS NOT NULL"
    )


def date_literal(day: dt.date) -> str:
    """`DATE 'YYYY-MM-DD'`, the same in BigQuery and DuckDB."""
    return f"DATE '{day.isoformat()}'"


def _from_series(series_query: str) -> str:
    return f"FROM (\n{textwrap.indent(series_query.strip(), '  ')}\n) AS metric_series\n"


def latest_day_sql(series_query: str) -> str:
    """The metric's latest day: the detection window ends there (DuckDB and BigQuery)."""
    return "SELECT MAX(metric_day) AS latest_day\n" + _from_series(series_query).rstrip()


def history_sql(series_query: str, first_day: dt.date) -> str:
    """The metric's rows from `first_day` on, for the local engine (DuckDB and BigQuery)."""
    return (
        "SELECT series_id, metric_day, value\n"
        + _from_series(series_query)
        + f"WHERE metric_day >= {date_literal(first_day)}\n"
        "  AND value IS NOT NULL"
    )


def window_series_sql(series_query: str, detection_start: dt.date) -> str:
    """Series with a value in the detection window: those not scored are reported as skipped."""
    return (
        "SELECT DISTINCT series_id\n"
        + _from_series(series_query)
        + f"WHERE metric_day >= {date_literal(detection_start)}\n"
        "  AND value IS NOT NULL"
    )


def training_query_sql(
    series_query: str, spec: MetricSpec, detection_start: dt.date, feedback_table: str
) -> str:
    """`training_days` before the detection window, minus confirmed incidents, of the series
    with at least `min_history_days` such points."""
    first = detection_start - dt.timedelta(days=spec.training_days)
    metric = validate_identifier(spec.name, what="metric name")
    return (
        "SELECT series_id, metric_day, value\n"
        + _from_series(series_query)
        + f"WHERE metric_day >= {date_literal(first)}\n"
        f"  AND metric_day < {date_literal(detection_start)}\n"
        "  AND value IS NOT NULL\n"
        "  AND NOT EXISTS (\n"
        "    SELECT 1\n"
        f"    FROM {feedback_table} AS feedback\n"
        f"    WHERE feedback.metric = '{metric}'\n"
        "      AND feedback.series_id = metric_series.series_id\n"
        "      AND feedback.metric_day = metric_series.metric_day\n"
        "      AND feedback.verdict = 'incident'\n"
        "  )\n"
        f"QUALIFY COUNT(*) OVER (PARTITION BY series_id) >= {int(spec.min_history_days)}"
    )


def trained_series_sql(training_query: str) -> str:
    """How many series the model would learn: zero means no model can be created."""
    return (
        "SELECT COUNT(DISTINCT series_id) AS series\n"
        f"FROM (\n{textwrap.indent(training_query.strip(), '  ')}\n)"
    )


def detection_query_sql(series_query: str, detection_start: dt.date, training_query: str) -> str:
    """The detection window of the series the model was trained on."""
    return (
        "SELECT series_id, metric_day, value\n"
        + _from_series(series_query)
        + f"WHERE metric_day >= {date_literal(detection_start)}\n"
        "  AND value IS NOT NULL\n"
        "  AND series_id IN (\n"
        "    SELECT DISTINCT series_id\n"
        f"    FROM (\n{textwrap.indent(training_query.strip(), '      ')}\n    )\n"
        "  )"
    )


class BigQueryJobs:
    """Runs the anomaly statements as query jobs with a cost guard, counting bytes billed."""

    def __init__(self, client: Any, warehouse_limit: int | None = None) -> None:
        self.client = client
        self.warehouse_limit = warehouse_limit
        self.bytes_billed = 0

    @classmethod
    def for_warehouse(cls, warehouse: BigQueryWarehouse) -> BigQueryJobs:
        # The warehouse's client: its row-returning methods hide the job statistics (bytes
        # billed) and take no per-statement limit.
        return cls(warehouse.client(), warehouse.bytes_billed_limit)

    def run(self, sql: str, maximum_bytes_billed: int) -> pa.Table:
        from google.cloud import bigquery

        limits = [maximum_bytes_billed, self.warehouse_limit]
        config = bigquery.QueryJobConfig(
            maximum_bytes_billed=min(limit for limit in limits if limit is not None),
            labels=job_labels(),
        )
        job = self.client.query(sql, job_config=config)
        table = job.to_arrow()
        record_job(job)
        self.bytes_billed += int(job.total_bytes_billed or 0)
        return table


def detect_anomalies_bigquery(
    jobs: BigQueryJobs,
    spec: MetricSpec,
    *,
    series_query: str,
    model: str,
    feedback_table: str,
    detection_start: dt.date,
) -> pd.DataFrame:
    """Train the metric's ARIMA_PLUS model on the days before `detection_start`, score the rest.

    A metric without a single series of `min_history_days` is not trained (BigQuery ML cannot
    fit an empty query); like the local engine, short series are simply absent from the result.
    """
    training = training_query_sql(series_query, spec, detection_start, feedback_table)
    limit = spec.maximum_bytes_billed
    trained = jobs.run(trained_series_sql(training), limit).column("series")[0].as_py()
    if not trained:
        return _to_frame([])
    jobs.run(metric_model_sql(model, training, spec), limit)
    detected = jobs.run(
        detect_anomalies_sql(
            model,
            spec.anomaly_prob_threshold,
            detection_query_sql(series_query, detection_start, training),
            metric=spec.name,
            direction=spec.direction,
        ),
        limit,
    )
    return _to_frame([detected])


def _to_frame(results: Sequence[pa.Table]) -> pd.DataFrame:
    frames = [table.select(list(RESULT_COLUMNS)).to_pandas() for table in results]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(frames, ignore_index=True)
