"""The metrics that anomaly detection scores, loaded from `metrics.yaml`.

Every metric currently reads its daily series from the dbt mart
`monitoring.monitoring_daily_metrics` (`metric_day`, `metric`, `series_id`, `value`). Issue #5 will
let a metric name its own source model and timestamp/value columns: those become new fields of
`MetricSpec` and new keys in `_DEFAULTS`/`_parse_metric`, and the engines read them instead of the
mart's fixed column names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import holidays
import yaml

from resources.identifiers import InvalidIdentifierError, validate_identifier

METRICS_YAML = Path(__file__).with_name("metrics.yaml")

# The dbt mart every metric is read from (Issue #5: per-metric sources).
MART_SCHEMA = "monitoring"
MART_TABLE = "monitoring_daily_metrics"

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

DIRECTIONS: tuple[Direction, ...] = ("spike", "drop", "both")
CHECK_SEVERITIES: tuple[CheckSeverity, ...] = ("WARN", "ERROR")

# STL needs two full weekly cycles to separate the weekday pattern from the trend.
MIN_SUPPORTED_HISTORY_DAYS = 14

_REQUIRED = ("name", "description", "direction")
_DEFAULTS: dict[str, Any] = {
    "anomaly_prob_threshold": 0.999,
    "min_history_days": 28,
    "holiday_region": "JP",
    "check_severity": "WARN",
}


class MetricsConfigError(ValueError):
    """`metrics.yaml` is malformed; the message names the file, the metric and the key."""


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is scored and how loudly its check fails."""

    name: str
    description: str
    direction: Direction
    anomaly_prob_threshold: float = _DEFAULTS["anomaly_prob_threshold"]
    min_history_days: int = _DEFAULTS["min_history_days"]
    holiday_region: str = _DEFAULTS["holiday_region"]
    check_severity: CheckSeverity = _DEFAULTS["check_severity"]


def load_metric_specs(path: Path = METRICS_YAML) -> dict[str, MetricSpec]:
    """Parse and validate `path`; the result keeps the file's order, keyed by metric name."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MetricsConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise MetricsConfigError(f"{path}: expected a non-empty list of metric definitions")
    specs: dict[str, MetricSpec] = {}
    for position, entry in enumerate(raw, start=1):
        spec = _parse_metric(path, position, entry)
        if spec.name in specs:
            raise MetricsConfigError(f"{path}: metric {spec.name!r}: name: defined twice")
        specs[spec.name] = spec
    return specs


def _parse_metric(path: Path, position: int, entry: object) -> MetricSpec:
    if not isinstance(entry, Mapping):
        raise MetricsConfigError(f"{path}: metric #{position}: expected a mapping of keys")
    label = repr(entry["name"]) if isinstance(entry.get("name"), str) else f"#{position}"

    def fail(key: str, problem: str) -> MetricsConfigError:
        return MetricsConfigError(f"{path}: metric {label}: {key}: {problem}")

    unknown = sorted(set(entry) - set(_REQUIRED) - set(_DEFAULTS), key=str)
    if unknown:
        raise fail(str(unknown[0]), f"unknown key; allowed: {', '.join((*_REQUIRED, *_DEFAULTS))}")
    for key in _REQUIRED:
        if key not in entry:
            raise fail(key, "missing")
    values = {**_DEFAULTS, **entry}

    name = values["name"]
    try:
        validate_identifier(name, what="metric name")
    except InvalidIdentifierError as exc:
        raise fail("name", str(exc)) from exc
    if not isinstance(values["description"], str) or not values["description"].strip():
        raise fail("description", "must be a non-empty string")
    if values["direction"] not in DIRECTIONS:
        raise fail("direction", f"{values['direction']!r} is not one of {', '.join(DIRECTIONS)}")

    threshold = values["anomaly_prob_threshold"]
    # BigQuery ML accepts [0, 1); 0 would flag every point, so require a real probability.
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise fail("anomaly_prob_threshold", f"{threshold!r} is not a number")
    if not 0 < threshold < 1:
        raise fail("anomaly_prob_threshold", f"{threshold!r} is not strictly between 0 and 1")

    min_history = values["min_history_days"]
    if isinstance(min_history, bool) or not isinstance(min_history, int):
        raise fail("min_history_days", f"{min_history!r} is not an integer")
    if min_history < MIN_SUPPORTED_HISTORY_DAYS:
        raise fail("min_history_days", f"{min_history} is below {MIN_SUPPORTED_HISTORY_DAYS}")

    region = values["holiday_region"]
    # The local engine needs the `holidays` calendar and BigQuery ML the same country code.
    if not isinstance(region, str) or region not in holidays.list_supported_countries():
        raise fail("holiday_region", f"{region!r} is not a country code known to `holidays`")

    if values["check_severity"] not in CHECK_SEVERITIES:
        raise fail(
            "check_severity",
            f"{values['check_severity']!r} is not one of {', '.join(CHECK_SEVERITIES)}",
        )

    return MetricSpec(
        name=name,
        description=values["description"].strip(),
        direction=values["direction"],
        anomaly_prob_threshold=float(threshold),
        min_history_days=min_history,
        holiday_region=region,
        check_severity=values["check_severity"],
    )
