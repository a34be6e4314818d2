"""What each dbt model cost on BigQuery, on its materialization, and the run id on dbt's jobs.

dbt-bigquery reports a model's job in the adapter response of `run_results.json`
(`bytes_processed`, `bytes_billed`, `slot_ms`, `job_id`); the materialization gets them under
the keys Minato's own BigQuery jobs use (resources/warehouse/bigquery_labels.py), so one query
over materialization metadata sums both. On DuckDB the adapter response has none of them and
nothing is added.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtCliRuntimeError, DbtCliInvocation

from resources import settings

# Metadata key -> adapter response key (dbt-bigquery's BigQueryAdapterResponse).
ADAPTER_STATISTICS = {
    "bigquery_bytes_processed": "bytes_processed",
    "bigquery_bytes_billed": "bytes_billed",
    "bigquery_slot_ms": "slot_ms",
}
# Read by macros/job_labels.sql: the `dagster_run_id` label of dbt's jobs.
RUN_ID_VARIABLE = "DAGSTER_RUN_ID"
_ENVIRONMENT = threading.Lock()


def costs_by_model(run_results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """unique_id -> the cost metadata of the node's job, for nodes whose adapter reported one."""
    costs: dict[str, dict[str, Any]] = {}
    for result in run_results.get("results", []):
        response = result.get("adapter_response") or {}
        found: dict[str, Any] = {
            name: int(response[key])
            for name, key in ADAPTER_STATISTICS.items()
            if response.get(key) is not None
        }
        if not found:
            continue
        found["bigquery_jobs"] = 1
        if response.get("job_id"):
            found["bigquery_job_id"] = str(response["job_id"])
        costs[result["unique_id"]] = found
    return costs


def _run_results(target_path: Path) -> dict[str, Any]:
    path = target_path / "run_results.json"
    # dbt that died before writing it (a compile error) leaves no costs to report.
    return json.loads(path.read_text()) if path.exists() else {}


def _unique_id(event: dg.Output | dg.AssetMaterialization) -> str | None:
    value = event.metadata.get("unique_id")
    return None if value is None else str(getattr(value, "value", value))


def with_costs(events: list[Any], costs: Mapping[str, Mapping[str, Any]]) -> Iterator[Any]:
    """`events`, each model's Output (or materialization) with its job's costs added."""
    for event in events:
        if isinstance(event, dg.Output | dg.AssetMaterialization):
            cost = costs.get(_unique_id(event) or "")
            if cost:
                event = event.with_metadata({**event.metadata, **cost})
        yield event


def stream_with_costs(invocation: DbtCliInvocation) -> Iterator[Any]:
    """The invocation's Dagster events with each model's costs.

    dbt writes `run_results.json` when it exits (at info level its log lines carry no adapter
    response), so the events are held until then: a step's materializations appear when its
    dbt process ends. A failed build still yields what it built before it fails the step.
    Only BigQuery bills: elsewhere the events stream as dbt emits them."""
    if settings.warehouse_kind() != "bigquery":
        yield from invocation.stream()
        return
    events: list[Any] = []
    try:
        events.extend(invocation.stream())
    except DagsterDbtCliRuntimeError:
        yield from with_costs(events, costs_by_model(_run_results(invocation.target_path)))
        raise
    yield from with_costs(events, costs_by_model(_run_results(invocation.target_path)))


@contextlib.contextmanager
def run_id_for_dbt(run_id: str) -> Iterator[None]:
    """Hand the Dagster run id to the dbt process started inside the block (dagster-dbt copies
    the environment when it starts dbt). An environment variable, not a `--vars` entry: vars
    that change every run would make dbt re-parse the whole project each time."""
    with _ENVIRONMENT:
        before = os.environ.get(RUN_ID_VARIABLE)
        os.environ[RUN_ID_VARIABLE] = run_id
        try:
            yield
        finally:
            if before is None:
                del os.environ[RUN_ID_VARIABLE]
            else:
                os.environ[RUN_ID_VARIABLE] = before
