"""The metrics anomaly detection scores: one YAML file per metric in `metric_definitions/`.

Adding a metric is adding a file; no Python changes. A metric reads a dbt model and turns it
into daily (or weekly, monthly) series:

    SELECT <series columns> AS series_id, <timestamp_column> AS metric_day, <value> AS value
    FROM <model> WHERE <where> GROUP BY series_id, metric_day

Both engines (BigQuery ML ARIMA_PLUS and the local one) read the same series with the same SQL,
built by `series_sql`, and score them with the same settings.

Keys (defaults in brackets):

    name                    identifier; names the BigQuery ML model and the asset check
    description             what a series measures
    model                   the dbt model, `<schema>.<model>` (also its Dagster asset key)
    timestamp_column        a DATE column (or a DATETIME in business time) of the model
    value                   SQL aggregate per series and day, e.g. `SUM(line_amount_jpy)`
    series                  [[]] columns identifying a series; none = one series `all`
    where                   [none] SQL condition on the model's rows
    frequency               [DAILY] DAILY | WEEKLY | MONTHLY | AUTO_FREQUENCY (inferred)
    direction               spike | drop | both: which side of the expected range is an anomaly
    anomaly_prob_threshold  [0.999] the sensitivity: a point is anomalous above this probability
    holiday_region          [JP] public holidays of this country get their own effect
    min_history_days        [28] points of history a series needs before it is scored
    training_days           [730] days of history a model learns from (cost and recency)
    check_severity          [WARN] severity of `<name>_latest_day_not_anomalous` when it fails
    auto_arima_max_order    [2] BigQuery ML cost guard: 1..5, smaller trains faster
    maximum_bytes_billed    [10737418240] BigQuery cost guard per statement (10 GiB)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import holidays
import yaml

from resources.identifiers import InvalidIdentifierError, validate_identifier

METRICS_DIR = Path(__file__).with_name("metric_definitions")

# What either engine returns per scored series and day, in this order.
RESULT_COLUMNS = (
    "metric",
    "series_id",
    "metric_day",
    "value",
    "is_anomaly",
    "lower_bound",
    "upper_bound",
    "anomaly_probability",
)

Direction = Literal["spike", "drop", "both"]
CheckSeverity = Literal["WARN", "ERROR"]
Frequency = Literal["DAILY", "WEEKLY", "MONTHLY", "AUTO_FREQUENCY"]

DIRECTIONS: tuple[Direction, ...] = ("spike", "drop", "both")
CHECK_SEVERITIES: tuple[CheckSeverity, ...] = ("WARN", "ERROR")
FREQUENCIES: tuple[Frequency, ...] = ("DAILY", "WEEKLY", "MONTHLY", "AUTO_FREQUENCY")

# Two full weekly cycles are the least from which a weekday pattern can be told from noise.
MIN_SUPPORTED_HISTORY_DAYS = 14
# The series id of a metric without series columns.
SINGLE_SERIES_ID = "all"

_REQUIRED = ("name", "description", "model", "timestamp_column", "value", "direction")
_DEFAULTS: dict[str, Any] = {
    "series": [],
    "where": None,
    "frequency": "DAILY",
    "anomaly_prob_threshold": 0.999,
    "holiday_region": "JP",
    "min_history_days": 28,
    "training_days": 730,
    "check_severity": "WARN",
    "auto_arima_max_order": 2,
    "maximum_bytes_billed": 10 * 1024**3,
}
METRIC_KEYS = (*_REQUIRED, *_DEFAULTS)

# SQL fragments from YAML are code under review, like dbt models, but they are pasted into
# statements: one expression, no statement separator, comment or subquery may hide in them.
_FORBIDDEN_SQL = re.compile(r";|--|/\*|\*/|#|\bselect\b", re.IGNORECASE)


class MetricsConfigError(ValueError):
    """A metric definition is malformed; the message names the file, the metric and the key."""


@dataclass(frozen=True)
class MetricSpec:
    """Where one metric's series come from, how they are scored, how loudly the check fails."""

    name: str
    description: str
    direction: Direction
    schema: str = "monitoring"
    model: str = "monitoring_daily_metrics"
    timestamp_column: str = "metric_day"
    value: str = "SUM(value)"
    series: tuple[str, ...] = ("series_id",)
    where: str | None = None
    frequency: Frequency = "DAILY"
    anomaly_prob_threshold: float = _DEFAULTS["anomaly_prob_threshold"]
    holiday_region: str = _DEFAULTS["holiday_region"]
    min_history_days: int = _DEFAULTS["min_history_days"]
    training_days: int = _DEFAULTS["training_days"]
    check_severity: CheckSeverity = _DEFAULTS["check_severity"]
    auto_arima_max_order: int = _DEFAULTS["auto_arima_max_order"]
    maximum_bytes_billed: int = _DEFAULTS["maximum_bytes_billed"]

    @property
    def asset_key_path(self) -> list[str]:
        """The dbt model's asset key: `<schema>/<model>` like every dbt asset of Minato."""
        return [self.schema, self.model]

    def model_options(self) -> dict[str, Any]:
        """What shaped the model, stored with every result so history explains itself."""
        return {
            "frequency": self.frequency,
            "holiday_region": self.holiday_region,
            "training_days": self.training_days,
            "min_history_days": self.min_history_days,
            "auto_arima_max_order": self.auto_arima_max_order,
        }


def series_sql(spec: MetricSpec, relation: str) -> str:
    """The metric's series from its model: the same text on DuckDB and BigQuery.

    `relation` is the warehouse's qualified name of `spec.schema`.`spec.model`. Series columns
    are cast to strings (several are joined with ` / `); a NULL key is its own series `(null)`.
    """
    key = (
        " || ' / ' || ".join(f"COALESCE(CAST({c} AS STRING), '(null)')" for c in spec.series)
        if spec.series
        else f"'{SINGLE_SERIES_ID}'"
    )
    where = f"WHERE {spec.where}\n" if spec.where else ""
    return (
        "SELECT\n"
        f"  {key} AS series_id,\n"
        f"  CAST({spec.timestamp_column} AS DATE) AS metric_day,\n"
        f"  {spec.value} AS value\n"
        f"FROM {relation}\n"
        f"{where}"
        "GROUP BY 1, 2"
    )


def load_metric_specs(directory: Path = METRICS_DIR) -> dict[str, MetricSpec]:
    """Parse and validate every `*.yaml` in `directory`, keyed by metric name, in file order."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise MetricsConfigError(f"{directory}: no metric definitions (*.yaml)")
    specs: dict[str, MetricSpec] = {}
    origin: dict[str, Path] = {}
    for path in files:
        spec = load_metric_file(path)
        if spec.name in specs:
            raise MetricsConfigError(
                f"{path}: metric {spec.name!r}: name: already defined in {origin[spec.name]}"
            )
        specs[spec.name], origin[spec.name] = spec, path
    return specs


def load_metric_file(path: Path) -> MetricSpec:
    """One metric definition file; errors start with the file's path."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MetricsConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise MetricsConfigError(f"{path}: expected a mapping of keys (one metric per file)")
    return _parse_metric(path, raw)


def _parse_metric(path: Path, entry: Mapping[str, Any]) -> MetricSpec:
    label = repr(entry["name"]) if isinstance(entry.get("name"), str) else "(unnamed)"

    def fail(key: str, problem: str) -> MetricsConfigError:
        return MetricsConfigError(f"{path}: metric {label}: {key}: {problem}")

    unknown = sorted(set(entry) - set(METRIC_KEYS), key=str)
    if unknown:
        raise fail(str(unknown[0]), f"unknown key; allowed: {', '.join(METRIC_KEYS)}")
    for key in _REQUIRED:
        if key not in entry:
            raise fail(key, "missing")
    values = {**_DEFAULTS, **entry}

    def identifier(key: str, value: Any, what: str) -> str:
        try:
            return validate_identifier(value, what=what)
        except InvalidIdentifierError as exc:
            raise fail(key, str(exc)) from exc

    def sql_fragment(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail(key, "must be a non-empty SQL expression")
        if _FORBIDDEN_SQL.search(value):
            raise fail(key, f"{value!r}: no ';', comments or SELECT allowed")
        if value.count("'") % 2 or value.count("(") != value.count(")"):
            raise fail(key, f"{value!r}: unbalanced quotes or parentheses")
        return " ".join(value.split())

    def integer(key: str, low: int, high: int | None = None) -> int:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(key, f"{value!r} is not an integer")
        if value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            raise fail(key, f"{value} is not {bounds}")
        return value

    def choice(key: str, allowed: tuple[str, ...]) -> Any:
        if values[key] not in allowed:
            raise fail(key, f"{values[key]!r} is not one of {', '.join(allowed)}")
        return values[key]

    name = identifier("name", values["name"], "metric name")
    if not isinstance(values["description"], str) or not values["description"].strip():
        raise fail("description", "must be a non-empty string")
    model = values["model"]
    parts = model.split(".") if isinstance(model, str) else []
    if len(parts) != 2:
        raise fail("model", f"{model!r} is not <schema>.<model>")
    schema, table = (identifier("model", part, "model name part") for part in parts)
    series = values["series"]
    if not isinstance(series, list):
        raise fail("series", "must be a list of column names")
    where = values["where"]

    threshold = values["anomaly_prob_threshold"]
    # BigQuery ML accepts [0, 1); 0 would flag every point, so require a real probability.
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise fail("anomaly_prob_threshold", f"{threshold!r} is not a number")
    if not 0 < threshold < 1:
        raise fail("anomaly_prob_threshold", f"{threshold!r} is not strictly between 0 and 1")

    region = values["holiday_region"]
    # The local engine needs the `holidays` calendar and BigQuery ML the same country code.
    if not isinstance(region, str) or region not in holidays.list_supported_countries():
        raise fail("holiday_region", f"{region!r} is not a country code known to `holidays`")

    min_history = integer("min_history_days", MIN_SUPPORTED_HISTORY_DAYS)
    return MetricSpec(
        name=name,
        description=values["description"].strip(),
        direction=choice("direction", DIRECTIONS),
        schema=schema,
        model=table,
        timestamp_column=identifier("timestamp_column", values["timestamp_column"], "column"),
        value=sql_fragment("value", values["value"]),
        series=tuple(identifier("series", column, "series column") for column in series),
        where=None if where is None else sql_fragment("where", where),
        frequency=choice("frequency", FREQUENCIES),
        anomaly_prob_threshold=float(threshold),
        holiday_region=region,
        min_history_days=min_history,
        training_days=integer("training_days", min_history),
        check_severity=choice("check_severity", CHECK_SEVERITIES),
        auto_arima_max_order=integer("auto_arima_max_order", 1, 5),
        maximum_bytes_billed=integer("maximum_bytes_billed", 1),
    )
