"""Every byte attributed: the labels every BigQuery job Minato starts carries (asset, partition,
Dagster run, environment), and each job's bytes and slot-ms added to the metadata of the
materialization that ran it."""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from typing import Any

import dagster as dg

from resources.settings import minato_env

# BigQuery label keys and values: lowercase letters, digits, `_` and `-`, at most 63 characters
# (https://cloud.google.com/bigquery/docs/labels-intro#requirements).
_LABEL_MAX = 63
# Each other character becomes `_`, exactly as dbt-bigquery sanitises the labels of dbt's jobs.
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")


def label_value(value: str) -> str:
    """`value` as a valid BigQuery label value: `2026-11-26|shard_02` → `2026-11-26_shard_02`."""
    return _LABEL_INVALID.sub("_", value.strip().lower())[:_LABEL_MAX]


def labels(values: Mapping[str, str | None]) -> dict[str, str]:
    """Valid labels from the given values; unset ones are left out."""
    return {key: label_value(value) for key, value in values.items() if value}


def partition_label(context: dg.AssetExecutionContext) -> str | None:
    if context.has_partition_key:
        return context.partition_key
    if context.has_partition_key_range:
        keys = context.partition_key_range
        return f"{keys.start}_to_{keys.end}"
    return None


def job_labels() -> dict[str, str]:
    """`minato_env`, and inside a Dagster step the asset, partition (or range) and run id.

    Read from Dagster's current execution context, so no asset has to pass them along."""
    values: dict[str, str | None] = {"minato_env": minato_env()}
    try:
        context = dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return labels(values)  # outside a run: a CLI command, a script
    keys = sorted(key.to_user_string() for key in context.selected_asset_keys)
    values["minato_asset"] = "__".join(keys) if keys else context.op_def.name
    values["minato_partition"] = partition_label(context)
    values["dagster_run_id"] = context.run_id
    return labels(values)


# Per step (its execution context): the BigQuery bytes and slot-ms of the jobs it ran so far.
_STEP_TOTALS: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
JOB_STATISTICS = {
    "bigquery_bytes_processed": "total_bytes_processed",
    "bigquery_bytes_billed": "total_bytes_billed",
    "bigquery_slot_ms": "slot_millis",
}


def record_job(job: Any) -> None:
    """Add a finished job's bytes processed, bytes billed and slot-ms to the materialization
    metadata of the asset whose step ran it (outside a step, or in a multi-asset step where the
    bytes cannot be split, nothing is recorded: INFORMATION_SCHEMA still has them by label)."""
    try:
        context = dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return
    if len(context.selected_asset_keys) != 1:
        return
    totals = _STEP_TOTALS.setdefault(context, dict.fromkeys(JOB_STATISTICS, 0))
    totals["bigquery_jobs"] = totals.get("bigquery_jobs", 0) + 1
    for name, attribute in JOB_STATISTICS.items():
        totals[name] += int(getattr(job, attribute, None) or 0)
    context.add_asset_metadata(dict(totals))
