"""The metrics anomaly detection scores: one YAML file per metric in `metric_definitions/`.

Adding a metric is adding a file; no Python changes. A metric reads a dbt model and turns it
into daily (or weekly, monthly) series:

    SELECT <series columns> AS series_id, <timestamp_column> AS metric_day, <value> AS value
    FROM <model> WHERE <where> GROUP BY series_id, metric_day

Both engines (BigQuery ML ARIMA_PLUS and the local one) read the same series with the same SQL,
built by `series_sql`, and score them with the same settings.

Keys (defaults in brackets; `MetricSpec` is the one place they are defined):

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

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import holidays
from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.dataclasses import dataclass

from resources.config_files import YamlFile, read_yaml, validate_entry
from resources.identifiers import validate_identifier

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

# Two full weekly cycles are the least from which a weekday pattern can be told from noise.
MIN_SUPPORTED_HISTORY_DAYS = 14
# The series id of a metric without series columns.
SINGLE_SERIES_ID = "all"

# SQL fragments from YAML are code under review, like dbt models, but they are pasted into
# statements: one expression, no statement separator, comment or subquery may hide in them.
_FORBIDDEN_SQL = re.compile(r";|--|/\*|\*/|#|\bselect\b", re.IGNORECASE)

# YAML integers only: `"7"` or `true` is a mistake, not a number.
StrictInt = Annotated[int, Field(strict=True)]


class MetricsConfigError(ValueError):
    """A metric definition is malformed; the message names the file, the line, the metric and
    the key."""


def _sql_fragment(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty SQL expression")
    if _FORBIDDEN_SQL.search(value):
        raise ValueError(f"{value!r}: no ';', comments or SELECT allowed")
    if value.count("'") % 2 or value.count("(") != value.count(")"):
        raise ValueError(f"{value!r}: unbalanced quotes or parentheses")
    return " ".join(value.split())


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class MetricSpec:
    """Where one metric's series come from, how they are scored, how loudly the check fails."""

    name: str
    description: str
    direction: Direction
    schema: str
    model: str
    timestamp_column: str
    value: str
    series: tuple[str, ...] = ()
    where: str | None = None
    frequency: Frequency = "DAILY"
    anomaly_prob_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.999
    holiday_region: str = "JP"
    min_history_days: Annotated[StrictInt, Field(ge=MIN_SUPPORTED_HISTORY_DAYS)] = 28
    training_days: StrictInt = 730
    check_severity: CheckSeverity = "WARN"
    auto_arima_max_order: Annotated[StrictInt, Field(ge=1, le=5)] = 2
    maximum_bytes_billed: Annotated[StrictInt, Field(ge=1)] = 10 * 1024**3

    @field_validator("name", "schema", "model", "timestamp_column")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return validate_identifier(value)

    @field_validator("series")
    @classmethod
    def _series_columns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_identifier(column, what="series column") for column in value)

    @field_validator("description")
    @classmethod
    def _described(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value.strip()

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        return _sql_fragment(value)

    @field_validator("where")
    @classmethod
    def _where(cls, value: str | None) -> str | None:
        return None if value is None else _sql_fragment(value)

    @field_validator("holiday_region")
    @classmethod
    def _region(cls, value: str) -> str:
        # The local engine needs the `holidays` calendar and BigQuery ML the same country code.
        if value not in holidays.list_supported_countries():
            raise ValueError(f"{value!r} is not a country code known to `holidays`")
        return value

    @model_validator(mode="after")
    def _enough_training(self) -> MetricSpec:
        if self.training_days < self.min_history_days:
            raise ValueError(
                f"key 'training_days': {self.training_days} is less than min_history_days "
                f"({self.min_history_days})"
            )
        return self

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
        document = read_yaml(path, MetricsConfigError)
        spec = _parse_metric(document)
        if spec.name in specs:
            raise MetricsConfigError(
                document.problem(
                    ("name",),
                    f"already defined in {origin[spec.name]}",
                    f"metric {spec.name!r}",
                    "name",
                )
            )
        specs[spec.name], origin[spec.name] = spec, path
    return specs


@functools.cache
def metric_specs() -> dict[str, MetricSpec]:
    """The repository's metrics (`metric_definitions/`), read once per process."""
    return load_metric_specs()


def _parse_metric(document: YamlFile) -> MetricSpec:
    """One metric per file; `model: <schema>.<model>` names the dbt model."""
    entry = document.data
    name = entry.get("name") if isinstance(entry, dict) else None
    label = f"metric {name!r}" if isinstance(name, str) else "metric (unnamed)"
    if not isinstance(entry, dict):
        raise MetricsConfigError(
            document.problem((), "expected a mapping of keys (one metric per file)")
        )
    values = dict(entry)
    model = values.pop("model", None)
    if model is not None:
        parts = model.split(".") if isinstance(model, str) else []
        if len(parts) != 2:
            raise MetricsConfigError(
                document.problem(("model",), f"{model!r} is not <schema>.<model>", label, "model")
            )
        values["schema"], values["model"] = parts
    return validate_entry(
        document,
        MetricSpec,
        values,
        (),
        label,
        MetricsConfigError,
        # `schema` and `model` both come from the file's `model` key.
        keys=lambda loc: ("model", *loc[1:]) if loc[:1] in {("schema",), ("model",)} else loc,
        allowed=[key for key in MetricSpec.__pydantic_fields__ if key != "schema"],
    )
