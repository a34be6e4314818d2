"""The `monitoring/anomalies` asset and one check per metric on the daily-metrics mart.

The asset scores the last `detection_days` days of every series in metrics.yaml and stores the
result in `monitoring.anomalies`; the checks read that table and warn when the latest day of a
metric is anomalous, so the alert shows up on the mart the business looks at.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from assets.monitoring import bigquery_ml
from assets.monitoring.bigquery_ml import date_literal
from assets.monitoring.metrics import (
    MART_SCHEMA,
    MART_TABLE,
    RESULT_COLUMNS,
    MetricSpec,
    load_metric_specs,
)
from resources.warehouse import Warehouse

MART_KEY = dg.AssetKey([MART_SCHEMA, MART_TABLE])
ANOMALIES_SCHEMA = "monitoring"
ANOMALIES_TABLE = "anomalies"
ANOMALIES_KEY = dg.AssetKey([ANOMALIES_SCHEMA, ANOMALIES_TABLE])

METRIC_SPECS = load_metric_specs()

ANOMALIES_ARROW_SCHEMA = pa.schema(
    [
        ("metric", pa.string()),
        ("series_id", pa.string()),
        ("metric_day", pa.date32()),
        ("value", pa.float64()),
        ("is_anomaly", pa.bool_()),
        ("lower_bound", pa.float64()),
        ("upper_bound", pa.float64()),
        ("anomaly_probability", pa.float64()),
        ("engine", pa.string()),
        # Timezone-aware so that BigQuery loads it as TIMESTAMP, not DATETIME.
        ("detected_at", pa.timestamp("us", tz="UTC")),
    ]
)

# Metadata and check descriptions beyond this many points are noise; the table has them all.
_MAX_LISTED_POINTS = 50
_MAX_SUMMARISED_SERIES = 5


class AnomalyDetectionConfig(dg.Config):
    detection_days: int = Field(
        default=7,
        ge=1,
        description="How many of the latest metric days to score; each run re-scores them all.",
    )


@dg.asset(
    key=ANOMALIES_KEY,
    group_name="monitoring",
    deps=[MART_KEY],
    pool="warehouse",
    description="Anomaly scores of the latest days of every metric in metrics.yaml: BigQuery ML "
    "ARIMA_PLUS in production, a robust weekly-seasonal forecast on DuckDB.",
)
def anomalies(
    context: dg.AssetExecutionContext, config: AnomalyDetectionConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    source = warehouse.qualified(MART_SCHEMA, MART_TABLE)
    metrics = list(METRIC_SPECS)
    days = warehouse.query_arrow(_window_days_sql(source, metrics, config.detection_days))
    window = sorted(days.column("metric_day").to_pylist())
    if not window:
        context.log.warning(f"{source} has no rows for {metrics}: nothing to score")
        return dg.MaterializeResult(
            metadata={"series_scored": 0, "series_skipped": 0, "anomalies_found": 0}
        )
    start = window[0]
    in_window = warehouse.query_arrow(_window_series_sql(source, metrics, start)).to_pylist()

    results = _score(warehouse, source, start, METRIC_SPECS)
    table = _to_arrow(results, engine=warehouse.kind, detected_at=dt.datetime.now(dt.UTC))
    # Every configured metric was re-scored for these days, so replacing them drops stale rows.
    warehouse.replace_partitions(
        ANOMALIES_SCHEMA, ANOMALIES_TABLE, table, ["metric_day"], [(day,) for day in window]
    )

    scored = set(zip(results["metric"], results["series_id"], strict=True))
    skipped = sorted({(r["metric"], r["series_id"]) for r in in_window} - scored)
    if skipped:
        context.log.info(f"not scored (less than min_history_days of history): {skipped}")
    flagged = results[results["is_anomaly"].astype(bool)]
    return dg.MaterializeResult(
        metadata={
            "engine": warehouse.kind,
            "detection_start": start.isoformat(),
            "detection_end": window[-1].isoformat(),
            "series_scored": len(scored),
            "series_skipped": len(skipped),
            "skipped_series": [f"{metric}/{series}" for metric, series in skipped],
            "anomalies_found": len(flagged),
            "anomalous_points": dg.MetadataValue.md(_points_markdown(flagged)),
            "dagster/row_count": len(results),
        }
    )


def _score(
    warehouse: Warehouse, source: str, start: dt.date, specs: Mapping[str, MetricSpec]
) -> pd.DataFrame:
    if warehouse.kind == "bigquery":
        return bigquery_ml.detect_anomalies_bigquery(warehouse, start, specs)
    if warehouse.kind == "duckdb":
        # statsmodels takes seconds to import; the code location should load without it.
        from assets.monitoring import local_engine

        history = warehouse.query_arrow(
            "SELECT metric, series_id, metric_day, value\n"
            f"FROM {source}\nWHERE metric IN ({_in_list(specs)})"
        ).to_pandas()
        return local_engine.detect_anomalies(history, start, specs)
    raise ValueError(f"no anomaly engine for warehouse kind {warehouse.kind!r}")


def _in_list(metrics: Sequence[str]) -> str:
    # Metric names passed validate_identifier when metrics.yaml was loaded: no quoting needed.
    return ", ".join(f"'{metric}'" for metric in metrics)


def _window_days_sql(source: str, metrics: Sequence[str], detection_days: int) -> str:
    return (
        f"SELECT DISTINCT metric_day\nFROM {source}\nWHERE metric IN ({_in_list(metrics)})\n"
        f"ORDER BY metric_day DESC\nLIMIT {int(detection_days)}"
    )


def _window_series_sql(source: str, metrics: Sequence[str], start: dt.date) -> str:
    return (
        f"SELECT DISTINCT metric, series_id\nFROM {source}\n"
        f"WHERE metric IN ({_in_list(metrics)})\n"
        f"  AND metric_day >= {date_literal(start)}\n  AND value IS NOT NULL"
    )


def _to_arrow(results: pd.DataFrame, *, engine: str, detected_at: dt.datetime) -> pa.Table:
    columns: dict[str, list[Any]] = {name: results[name].tolist() for name in RESULT_COLUMNS}
    columns["engine"] = [engine] * len(results)
    columns["detected_at"] = [detected_at] * len(results)
    return pa.table(columns, schema=ANOMALIES_ARROW_SCHEMA)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _points_markdown(points: pd.DataFrame) -> str:
    """Metric, series, day, value and expected range of anomalous points, most certain first."""
    if points.empty:
        return "No anomalies."
    ranked = points.sort_values(
        ["anomaly_probability", "metric", "series_id", "metric_day"],
        ascending=[False, True, True, True],
    )
    lines = [
        "| metric | series | day | value | expected range | probability |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in ranked.head(_MAX_LISTED_POINTS).itertuples():
        series = str(row.series_id).replace("|", "\\|")
        lines.append(
            f"| {row.metric} | {series} | {row.metric_day} | {_number(row.value)} | "
            f"{_number(row.lower_bound)} – {_number(row.upper_bound)} | "
            f"{row.anomaly_probability:.4f} |"
        )
    if len(ranked) > _MAX_LISTED_POINTS:
        lines.append(f"\n… and {len(ranked) - _MAX_LISTED_POINTS} more in monitoring.anomalies.")
    return "\n".join(lines)


def build_anomaly_checks(specs: Mapping[str, MetricSpec]) -> list[dg.AssetChecksDefinition]:
    """One `<metric>_latest_day_not_anomalous` check on the mart per metric."""
    return [_latest_day_check(spec) for spec in specs.values()]


def _latest_day_check(spec: MetricSpec) -> dg.AssetChecksDefinition:
    severity = dg.AssetCheckSeverity(spec.check_severity)
    metric = f"'{spec.name}'"  # a validated identifier

    @dg.asset_check(
        asset=MART_KEY,
        name=f"{spec.name}_latest_day_not_anomalous",
        additional_deps=[ANOMALIES_KEY],
        blocking=False,
        description=f"No series of {spec.name} ({spec.description}) is anomalous on its latest "
        f"day, according to {ANOMALIES_SCHEMA}.{ANOMALIES_TABLE}.",
    )
    def _check(warehouse: Warehouse) -> dg.AssetCheckResult:
        source = warehouse.qualified(MART_SCHEMA, MART_TABLE)
        latest = (
            warehouse.query_arrow(
                f"SELECT MAX(metric_day) AS latest_day FROM {source} WHERE metric = {metric}"
            )
            .column("latest_day")[0]
            .as_py()
        )
        if latest is None:
            return dg.AssetCheckResult(
                passed=False,
                severity=severity,
                description=f"{source} has no rows for {spec.name}.",
                metadata={"metric": spec.name},
            )
        # Not scored is not "fine": either the anomalies asset has not run since the mart
        # changed, or no series has min_history_days of history yet. Both deserve a look.
        if not warehouse.table_exists(ANOMALIES_SCHEMA, ANOMALIES_TABLE):
            rows: list[dict[str, Any]] = []
        else:
            rows = warehouse.query_arrow(
                "SELECT series_id, value, is_anomaly, lower_bound, upper_bound, "
                "anomaly_probability\n"
                f"FROM {warehouse.qualified(ANOMALIES_SCHEMA, ANOMALIES_TABLE)}\n"
                f"WHERE metric = {metric} AND metric_day = {date_literal(latest)}\n"
                "ORDER BY series_id"
            ).to_pylist()
        metadata: dict[str, Any] = {
            "metric": spec.name,
            "latest_day": latest.isoformat(),
            "series_scored": len(rows),
        }
        if not rows:
            return dg.AssetCheckResult(
                passed=False,
                severity=severity,
                description=f"{spec.name} on {latest} has not been scored: materialize "
                f"{ANOMALIES_KEY.to_user_string()} (series need {spec.min_history_days} days "
                "of history).",
                metadata=metadata,
            )
        flagged = pd.DataFrame([row for row in rows if row["is_anomaly"]])
        metadata["anomalous_series"] = len(flagged)
        if flagged.empty:
            return dg.AssetCheckResult(passed=True, metadata=metadata)
        flagged = flagged.assign(metric=spec.name, metric_day=latest).sort_values(
            ["anomaly_probability", "series_id"], ascending=[False, True]
        )
        metadata["anomalous_points"] = dg.MetadataValue.md(_points_markdown(flagged))
        summary = "; ".join(
            f"{row.series_id} = {_number(row.value)} "
            f"(expected {_number(row.lower_bound)} – {_number(row.upper_bound)})"
            for row in flagged.head(_MAX_SUMMARISED_SERIES).itertuples()
        )
        if len(flagged) > _MAX_SUMMARISED_SERIES:
            summary += f"; and {len(flagged) - _MAX_SUMMARISED_SERIES} more series"
        return dg.AssetCheckResult(
            passed=False,
            severity=severity,
            description=f"{spec.name} on {latest} is anomalous: {summary}",
            metadata=metadata,
        )

    return _check


anomaly_assets = [anomalies]
anomaly_checks = build_anomaly_checks(METRIC_SPECS)
