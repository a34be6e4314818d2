"""Sync assets built from specs: one asset per sync, downstream of its dbt model, and a check.

A run's counts, duration and rate become materialization metadata. A sync that fails, or whose
destination refused records, alerts through the notifier; refused records fail the non-blocking
`sync_has_no_failed_rows` check and are retried by the next run.
"""

import functools
from typing import TypeVar

import dagster as dg

from assets.sync.engine import SyncReport, run_sync
from assets.sync.specs import SyncSpec, sync_specs
from resources.destinations import SyncDestination
from resources.notifications import Notifier
from resources.warehouse import Warehouse

CHECK_NAME = "sync_has_no_failed_rows"

T = TypeVar("T")


def _resource(context: dg.AssetExecutionContext, key: str, expected: type[T]) -> T:
    # Resources are looked up by the spec's key, so Dagster cannot check their type for us.
    value = getattr(context.resources, key)
    if not isinstance(value, expected):
        raise dg.DagsterInvariantViolationError(
            f"resource {key!r} must be a {expected.__name__}, got {type(value).__name__}"
        )
    return value


def _metadata(report: SyncReport, destination: SyncDestination) -> dict[str, object]:
    return {
        "rows_added": report.added,
        "rows_changed": report.changed,
        "rows_removed": report.removed,
        "rows_sent": report.sent,
        # Refused by the destination in this run (kept in the rejected-rows table).
        "rows_failed": report.rejected,
        "rows_rejected_outstanding": report.rejected_outstanding,
        "batches": report.batches,
        "calls": report.calls,
        "retries": report.retries,
        "batch_splits": report.splits,
        "resumed_batches": report.resumed_batches,
        "diff_s": dg.FloatMetadataValue(round(report.diff_s, 3)),
        "duration_s": dg.FloatMetadataValue(round(report.duration_s, 3)),
        "rows_per_s": dg.FloatMetadataValue(round(report.rows_per_s, 1)),
        "destination": destination.kind,
    }


def build_sync_asset(spec: SyncSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=spec.asset_key,
        group_name="sync",
        deps=[spec.source_key],
        # Writes its state tables into the warehouse (one DuckDB writer at a time locally).
        pool="warehouse",
        automation_condition=spec.dagster_automation_condition(),
        description=spec.description or f"Reverse ETL of {spec.source_key.to_user_string()}.",
        required_resource_keys={"warehouse", spec.destination, "notifier"},
        metadata={
            "destination_table": spec.destination_table,
            "mode": spec.mode,
            "primary_key": ", ".join(spec.key_columns),
            "batch_size": spec.batch_size,
            "rejected_rows_table": f"sync_state.{spec.name}__rejected",
        },
    )
    def _sync(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        warehouse = _resource(context, "warehouse", Warehouse)
        destination = _resource(context, spec.destination, SyncDestination)
        notifier = _resource(context, "notifier", Notifier)
        try:
            report = run_sync(spec, warehouse, destination, context.log)
        except Exception as exc:
            notifier.send(
                f"Sync {spec.name} to {destination.kind} table {spec.destination_table} failed: "
                f"{exc}. Acknowledged batches are kept; the next run resumes."
            )
            raise
        if report.rejected:
            notifier.send(
                f"Sync {spec.name}: {report.rejected} row(s) failed: {destination.kind} table "
                f"{spec.destination_table} refused them ({report.sent} delivered). Reasons are in "
                f"sync_state.{spec.name}__rejected; they will be retried on the next run."
            )
        return dg.MaterializeResult(metadata=_metadata(report, destination))

    return _sync


def build_sync_check(spec: SyncSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=spec.asset_key,
        name=CHECK_NAME,
        blocking=False,
        description="The latest sync delivered every row it tried to send.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(spec.asset_key)
        materialization = event.asset_materialization if event else None
        if materialization is None or "rows_failed" not in materialization.metadata:
            return dg.AssetCheckResult(
                passed=True, description="The sync has not run yet: nothing failed."
            )
        failed = materialization.metadata["rows_failed"].value
        return dg.AssetCheckResult(
            passed=failed == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"rows_failed": failed},
            description=f"{failed} row(s) were rejected by the destination and will be retried."
            if failed
            else None,
        )

    return _check


@functools.cache
def sync_assets() -> tuple[dg.AssetsDefinition, ...]:
    """One asset per declared sync (assets/sync/syncs/)."""
    return tuple(build_sync_asset(spec) for spec in sync_specs())


@functools.cache
def sync_checks() -> tuple[dg.AssetChecksDefinition, ...]:
    """The failed-rows check of every declared sync."""
    return tuple(build_sync_check(spec) for spec in sync_specs())
