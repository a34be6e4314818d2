"""Anomaly detection in production: BigQuery ML ARIMA_PLUS, one model per metric.

The SQL builders are pure functions so the exact statements can be tested without BigQuery;
`detect_anomalies_bigquery` runs them through the warehouse resource. Every name that reaches the
SQL is validated, every value is a literal we render ourselves.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import textwrap
from collections.abc import Mapping, Sequence

import pandas as pd
import pyarrow as pa

from assets.monitoring.metrics import MART_SCHEMA, MART_TABLE, RESULT_COLUMNS, MetricSpec
from resources.identifiers import InvalidIdentifierError, validate_identifier
from resources.warehouse import Warehouse

MODEL_SCHEMA = "monitoring"

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


def history_days_sql(source: str, metrics: Sequence[str], detection_start: dt.date) -> str:
    """Days with a value before the detection window, per metric and series."""
    names = ", ".join(f"'{validate_identifier(m, what='metric name')}'" for m in metrics)
    return (
        "SELECT metric, series_id, COUNT(*) AS history_days\n"
        f"FROM {source}\n"
        f"WHERE metric IN ({names})\n"
        f"  AND metric_day < {date_literal(detection_start)}\n"
        "  AND value IS NOT NULL\n"
        "GROUP BY metric, series_id"
    )


def _trainable_series_sql(source: str, spec: MetricSpec, detection_start: dt.date) -> str:
    return (
        "SELECT series_id\n"
        f"FROM {source}\n"
        f"WHERE metric = '{validate_identifier(spec.name, what='metric name')}'\n"
        f"  AND metric_day < {date_literal(detection_start)}\n"
        "  AND value IS NOT NULL\n"
        "GROUP BY series_id\n"
        f"HAVING COUNT(*) >= {int(spec.min_history_days)}"
    )


def training_query_sql(source: str, spec: MetricSpec, detection_start: dt.date) -> str:
    """History before the detection window, of the series with enough of it."""
    return _series_rows_sql(source, spec, detection_start, "<")


def detection_query_sql(source: str, spec: MetricSpec, detection_start: dt.date) -> str:
    """The detection window, restricted to series the model was trained on."""
    return _series_rows_sql(source, spec, detection_start, ">=")


def _series_rows_sql(
    source: str, spec: MetricSpec, detection_start: dt.date, comparison: str
) -> str:
    trainable = textwrap.indent(_trainable_series_sql(source, spec, detection_start), "    ")
    return (
        "SELECT series_id, metric_day, value\n"
        f"FROM {source}\n"
        f"WHERE metric = '{validate_identifier(spec.name, what='metric name')}'\n"
        f"  AND metric_day {comparison} {date_literal(detection_start)}\n"
        "  AND value IS NOT NULL\n"
        f"  AND series_id IN (\n{trainable}\n  )"
    )


def detect_anomalies_bigquery(
    warehouse: Warehouse, detection_start: dt.date, specs: Mapping[str, MetricSpec]
) -> pd.DataFrame:
    """Train one ARIMA_PLUS model per metric on the days before `detection_start`, score the rest.

    Metrics without a single series of `min_history_days` are not trained (BigQuery ML cannot
    fit an empty query); like the local engine, short series are simply absent from the result.
    """
    source = warehouse.qualified(MART_SCHEMA, MART_TABLE)
    counts = warehouse.query_arrow(history_days_sql(source, list(specs), detection_start))
    trainable = {
        row["metric"]
        for row in counts.to_pylist()
        if row["history_days"] >= specs[row["metric"]].min_history_days
    }
    results = []
    for name, spec in specs.items():
        if name not in trainable:
            continue
        model = warehouse.qualified(MODEL_SCHEMA, f"anomaly_model_{name}")
        warehouse.execute(
            create_model_sql(
                model,
                training_query_sql(source, spec, detection_start),
                timestamp_col="metric_day",
                data_col="value",
                id_cols=["series_id"],
                holiday_region=spec.holiday_region,
            )
        )
        results.append(
            warehouse.query_arrow(
                detect_anomalies_sql(
                    model,
                    spec.anomaly_prob_threshold,
                    detection_query_sql(source, spec, detection_start),
                    metric=name,
                    direction=spec.direction,
                )
            )
        )
    return _to_frame(results)


def _to_frame(results: Sequence[pa.Table]) -> pd.DataFrame:
    frames = [table.select(list(RESULT_COLUMNS)).to_pandas() for table in results]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(frames, ignore_index=True)
