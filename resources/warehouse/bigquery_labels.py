"""The labels every BigQuery job Minato starts carries, so that INFORMATION_SCHEMA.JOBS
attributes each byte to an asset, a partition, a Dagster run and an environment."""

from __future__ import annotations

import re
from collections.abc import Mapping

import dagster as dg

from resources.settings import minato_env

# BigQuery label keys and values: lowercase letters, digits, `_` and `-`, at most 63 characters
# (https://cloud.google.com/bigquery/docs/labels-intro#requirements).
_LABEL_MAX = 63
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]+")


def label_value(value: str) -> str:
    """`value` as a valid BigQuery label value: `2026-11-26|shard_02` → `2026-11-26_shard_02`."""
    return _LABEL_INVALID.sub("_", value.lower())[:_LABEL_MAX]


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
