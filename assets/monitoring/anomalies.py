"""The `monitoring/anomalies` asset and one check per metric on the metric's dbt model.

The asset scores the latest `detection_days` days of every metric defined in
`metric_definitions/` with BigQuery ML ARIMA_PLUS (BigQuery warehouse) or the local engine
(DuckDB), honours `monitoring.anomaly_feedback`, appends every result to `monitoring.anomalies`
(history: engine, model options and threshold of each run) and alerts on newly found anomalies.
The checks read the latest run's verdict on the metric's latest day, so the warning shows up on
the model the business looks at.
"""

import datetime as dt
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from assets.constants import MONITORING_SCHEMA
from assets.monitoring import bigquery_ml, local_engine
from assets.monitoring.bigquery_ml import (
    date_literal,
    history_sql,
    latest_day_sql,
    window_series_sql,
)
from assets.monitoring.feedback import ensure_feedback_table, read_feedback
from assets.monitoring.metrics import RESULT_COLUMNS, MetricSpec, metric_specs, series_sql
from resources.notifications import Notifier
from resources.warehouse import BigQueryWarehouse, Warehouse

ANOMALIES_TABLE = "anomalies"
ANOMALIES_KEY = dg.AssetKey([MONITORING_SCHEMA, ANOMALIES_TABLE])

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
        # On-call's verdict from monitoring.anomaly_feedback when scored, else NULL.
        ("feedback", pa.string()),
        ("engine", pa.string()),
        ("direction", pa.string()),
        ("anomaly_prob_threshold", pa.float64()),
        ("model_options", pa.string()),  # JSON
        ("detection_start", pa.date32()),
        ("run_id", pa.string()),
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
        description="How many of each metric's latest days to score; each run re-scores them.",
    )


def _model_keys(specs: Mapping[str, MetricSpec]) -> list[dg.AssetKey]:
    return list(dict.fromkeys(dg.AssetKey(spec.asset_key_path) for spec in specs.values()))


def build_anomalies_asset(specs: Mapping[str, MetricSpec]) -> dg.AssetsDefinition:
    """The `monitoring/anomalies` asset over the given metrics, downstream of their models."""

    @dg.asset(
        key=ANOMALIES_KEY,
        group_name=MONITORING_SCHEMA,
        deps=_model_keys(specs),
        pool="warehouse",
        description="Anomaly scores of the latest days of every metric in "
        "assets/monitoring/metric_definitions: BigQuery ML ARIMA_PLUS in production, an "
        "ARIMA_PLUS-style robust seasonal forecast on DuckDB. Appends to monitoring.anomalies.",
    )
    def anomalies(
        context: dg.AssetExecutionContext,
        config: AnomalyDetectionConfig,
        warehouse: Warehouse,
        notifier: Notifier,
    ) -> dg.MaterializeResult:
        return _detect(context, config, warehouse, notifier, specs)

    return anomalies


def _detect(
    context: dg.AssetExecutionContext,
    config: AnomalyDetectionConfig,
    warehouse: Warehouse,
    notifier: Notifier,
    specs: Mapping[str, MetricSpec],
) -> dg.MaterializeResult:
    run = _score_metrics(warehouse, specs, config.detection_days, context.log)
    results = run.results
    table = _to_arrow(results, run_id=context.run.run_id, detected_at=dt.datetime.now(dt.UTC))
    # History: each run appends its rows; re-executing the same run replaces only its own.
    warehouse.replace_partitions(
        MONITORING_SCHEMA, ANOMALIES_TABLE, table, ["run_id"], [(context.run.run_id,)]
    )
    flagged = results[results["is_anomaly"].astype(bool)] if len(results) else results
    new = _not_alerted_before(warehouse, flagged, context.run.run_id)
    if len(new):
        notifier.send(alert_text(new, notifier.run_url(context.run.run_id)))
    if run.skipped:
        context.log.info(f"not scored (less than min_history_days of history): {run.skipped}")
    metadata: dict[str, Any] = {
        "engine": warehouse.kind,
        "detection_windows": run.windows,
        "series_scored": len(set(zip(results["metric"], results["series_id"], strict=True))),
        "series_skipped": len(run.skipped),
        "skipped_series": run.skipped,
        "anomalies_found": len(flagged),
        "anomalies_alerted": len(new),
        "anomalous_points": dg.MetadataValue.md(_points_markdown(flagged)),
        "dagster/row_count": len(results),
    }
    if run.bytes_billed is not None:
        metadata["bigquery_bytes_billed"] = run.bytes_billed
    return dg.MaterializeResult(metadata=metadata)


# Added per run by the asset; the rest of ANOMALIES_ARROW_SCHEMA comes from scoring.
_RUN_COLUMNS = ("run_id", "detected_at")
_SCORED_COLUMNS = [name for name in ANOMALIES_ARROW_SCHEMA.names if name not in _RUN_COLUMNS]


@dataclass
class _Scored:
    """What one scoring pass over every metric produced, for the table and the metadata."""

    frames: list[pd.DataFrame] = field(default_factory=list)
    windows: dict[str, str] = field(default_factory=dict)  # metric -> "first .. last"
    skipped: list[str] = field(default_factory=list)  # metric/series without enough history
    bytes_billed: int | None = None  # BigQuery only

    @property
    def results(self) -> pd.DataFrame:
        frames = [frame for frame in self.frames if len(frame)]
        if not frames:
            return pd.DataFrame(columns=_SCORED_COLUMNS)
        return pd.concat(frames, ignore_index=True)


def _score_metrics(
    warehouse: Warehouse, specs: Mapping[str, MetricSpec], detection_days: int, log: Any
) -> _Scored:
    scored = _Scored()
    feedback_table = ensure_feedback_table(warehouse)
    jobs = None
    if isinstance(warehouse, BigQueryWarehouse):
        jobs = bigquery_ml.BigQueryJobs.for_warehouse(warehouse)

    def query(sql: str, spec: MetricSpec) -> pa.Table:
        # On BigQuery every statement that reads the metric's model carries its cost guard and
        # counts towards the bytes billed.
        return jobs.run(sql, spec.maximum_bytes_billed) if jobs else warehouse.query_arrow(sql)

    for spec in specs.values():
        series_query = series_sql(spec, warehouse.qualified(spec.schema, spec.model))
        latest = query(latest_day_sql(series_query), spec).column(0)[0].as_py()
        if latest is None:
            log.warning(f"{spec.name}: {spec.schema}.{spec.model} has no rows: nothing to score")
            continue
        start = latest - dt.timedelta(days=detection_days - 1)
        scored.windows[spec.name] = f"{start.isoformat()} .. {latest.isoformat()}"
        first = start - dt.timedelta(days=spec.training_days)
        verdicts = read_feedback(warehouse, spec.name, first)
        if jobs is not None:
            frame = bigquery_ml.detect_anomalies_bigquery(
                jobs,
                spec,
                series_query=series_query,
                model=warehouse.qualified(MONITORING_SCHEMA, f"anomaly_model_{spec.name}"),
                feedback_table=feedback_table,
                detection_start=start,
            )
        elif warehouse.kind == "duckdb":
            history = warehouse.query_arrow(history_sql(series_query, first)).to_pandas()
            incidents = [key for key, verdict in verdicts.items() if verdict == "incident"]
            frame = local_engine.detect_anomalies(history, start, spec, incidents)
        else:
            raise ValueError(f"no anomaly engine for warehouse kind {warehouse.kind!r}")
        in_window = query(window_series_sql(series_query, start), spec)
        missing = set(in_window.column("series_id").to_pylist()) - set(frame["series_id"])
        scored.skipped += [f"{spec.name}/{series}" for series in sorted(missing)]
        scored.frames.append(_annotate(frame, spec, verdicts, warehouse.kind, start))
    if jobs is not None:
        scored.bytes_billed = jobs.bytes_billed
    return scored


def _annotate(
    frame: pd.DataFrame,
    spec: MetricSpec,
    verdicts: Mapping[tuple[str, dt.date], str],
    engine: str,
    start: dt.date,
) -> pd.DataFrame:
    """The engine's rows plus feedback and the settings that produced them.

    A confirmed false positive stays in the history with its verdict but is no anomaly: it is
    not alerted again and does not fail the check.
    """
    frame = frame.loc[:, list(RESULT_COLUMNS)].copy()
    frame["metric_day"] = pd.to_datetime(frame["metric_day"]).dt.date
    frame["feedback"] = [
        verdicts.get((s, d)) for s, d in zip(frame["series_id"], frame["metric_day"], strict=True)
    ]
    frame["is_anomaly"] = frame["is_anomaly"].astype(bool) & (frame["feedback"] != "false_positive")
    frame["engine"] = engine
    frame["direction"] = spec.direction
    frame["anomaly_prob_threshold"] = spec.anomaly_prob_threshold
    frame["model_options"] = json.dumps(spec.model_options(), sort_keys=True)
    frame["detection_start"] = start
    return frame


def _to_arrow(results: pd.DataFrame, *, run_id: str, detected_at: dt.datetime) -> pa.Table:
    columns: dict[str, list[Any]] = {name: results[name].tolist() for name in _SCORED_COLUMNS}
    columns["run_id"] = [run_id] * len(results)
    columns["detected_at"] = [detected_at] * len(results)
    return pa.table(columns, schema=ANOMALIES_ARROW_SCHEMA)


def _not_alerted_before(warehouse: Warehouse, flagged: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """Anomalies no earlier run flagged: a 7-day window re-scored daily alerts each one once."""
    if flagged.empty:
        return flagged
    earliest = min(flagged["metric_day"])
    earlier = warehouse.query_arrow(
        "SELECT DISTINCT metric, series_id, metric_day\n"
        f"FROM {warehouse.qualified(MONITORING_SCHEMA, ANOMALIES_TABLE)}\n"
        f"WHERE is_anomaly AND run_id <> '{_quoted(run_id)}'\n"
        f"  AND metric_day >= {date_literal(earliest)}"
    ).to_pylist()
    seen = {(r["metric"], r["series_id"], r["metric_day"]) for r in earlier}
    keys = zip(flagged["metric"], flagged["series_id"], flagged["metric_day"], strict=True)
    return flagged[[key not in seen for key in keys]]


def _quoted(run_id: str) -> str:
    # Dagster run ids are UUIDs; refuse anything else rather than escape it.
    if not all(c.isalnum() or c == "-" for c in run_id):
        raise ValueError(f"unexpected run id {run_id!r}")
    return run_id


def alert_text(points: pd.DataFrame, run_url: str) -> str:
    """One message for the newly anomalous points: metric, series, day, value, expected range."""
    ranked = points.sort_values(
        ["metric", "anomaly_probability", "series_id"], ascending=[True, False, True]
    )
    lines = [f":warning: {len(ranked)} new anomal{'y' if len(ranked) == 1 else 'ies'}:"]
    for row in ranked.head(_MAX_LISTED_POINTS).itertuples():
        lines.append(
            f"• {row.metric} [{row.series_id}] on {row.metric_day}: {_number(row.value)} "
            f"(expected {_number(row.lower_bound)} – {_number(row.upper_bound)}, "
            f"probability {row.anomaly_probability:.4f})"
        )
    if len(ranked) > _MAX_LISTED_POINTS:
        lines.append(f"… and {len(ranked) - _MAX_LISTED_POINTS} more in monitoring.anomalies")
    lines.append(f"Run: {run_url}")
    lines.append(
        "Confirm or dismiss in monitoring.anomaly_feedback (verdict incident | false_positive)."
    )
    return "\n".join(lines)


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
    """One `<metric>_latest_day_not_anomalous` check on each metric's model."""
    return [_latest_day_check(spec) for spec in specs.values()]


def current_anomalies_sql(anomalies_table: str) -> str:
    """Points whose latest verdict is anomalous: the table keeps every run's verdicts."""
    return (
        "SELECT metric, series_id, metric_day, value, lower_bound, upper_bound\n"
        "FROM (\n"
        "  SELECT *\n"
        f"  FROM {anomalies_table}\n"
        "  WHERE TRUE\n"  # BigQuery wants a WHERE next to QUALIFY
        "  QUALIFY ROW_NUMBER() OVER (\n"
        "    PARTITION BY metric, series_id, metric_day ORDER BY detected_at DESC\n"
        "  ) = 1\n"
        ")\n"
        "WHERE is_anomaly\n"
        "ORDER BY metric_day, metric, series_id"
    )


def latest_verdicts_sql(anomalies_table: str, metric: str, day: dt.date) -> str:
    """The latest run's rows for one metric and day (history keeps every run's)."""
    return (
        "SELECT series_id, value, is_anomaly, lower_bound, upper_bound, anomaly_probability, "
        "feedback, run_id\n"
        f"FROM {anomalies_table}\n"
        f"WHERE metric = '{metric}' AND metric_day = {date_literal(day)}\n"
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY series_id ORDER BY detected_at DESC) = 1\n"
        "ORDER BY series_id"
    )


def _latest_day_check(spec: MetricSpec) -> dg.AssetChecksDefinition:
    severity = dg.AssetCheckSeverity(spec.check_severity)
    model_key = dg.AssetKey(spec.asset_key_path)

    @dg.asset_check(
        asset=model_key,
        name=f"{spec.name}_latest_day_not_anomalous",
        additional_deps=[ANOMALIES_KEY],
        blocking=False,
        description=f"No series of {spec.name} ({spec.description}) is anomalous on its latest "
        f"day, according to {MONITORING_SCHEMA}.{ANOMALIES_TABLE}.",
    )
    def _check(warehouse: Warehouse, notifier: Notifier) -> dg.AssetCheckResult:
        series_query = series_sql(spec, warehouse.qualified(spec.schema, spec.model))
        latest = warehouse.query_arrow(latest_day_sql(series_query)).column(0)[0].as_py()
        if latest is None:
            return dg.AssetCheckResult(
                passed=False,
                severity=severity,
                description=f"{spec.schema}.{spec.model} has no rows for {spec.name}.",
                metadata={"metric": spec.name},
            )
        # Not scored is not "fine": either the anomalies asset has not run since the model
        # changed, or no series has min_history_days of history yet. Both deserve a look.
        rows: list[dict[str, Any]] = []
        if warehouse.table_exists(MONITORING_SCHEMA, ANOMALIES_TABLE):
            table = warehouse.qualified(MONITORING_SCHEMA, ANOMALIES_TABLE)
            rows = warehouse.query_arrow(latest_verdicts_sql(table, spec.name, latest)).to_pylist()
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
        run_url = notifier.run_url(flagged["run_id"].iloc[0])
        metadata["anomalous_points"] = dg.MetadataValue.md(_points_markdown(flagged))
        metadata["scoring_run"] = dg.MetadataValue.url(run_url)
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
            description=f"{spec.name} on {latest} is anomalous: {summary}. Run: {run_url}",
            metadata=metadata,
        )

    return _check


@functools.cache
def anomaly_assets() -> tuple[dg.AssetsDefinition, ...]:
    """The anomalies asset over the repository's metrics."""
    return (build_anomalies_asset(metric_specs()),)


@functools.cache
def anomaly_checks() -> tuple[dg.AssetChecksDefinition, ...]:
    """One check per metric of the repository, on the metric's model."""
    return tuple(build_anomaly_checks(metric_specs()))
