"""Sync assets built from specs: send the warehouse diff to a destination, batch by batch.

A batch's state is committed only after the destination acknowledged it, so a crash or a
rejected batch is resent on the next run and an acknowledged one is not. A rejected batch does not
stop the later ones; it is counted, alerted on and fails the `sync_has_no_failed_rows` check.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
import pyarrow as pa

from assets.sync.diff import (
    check_source_keys,
    commit_removed,
    commit_upserted,
    pending_removals,
    pending_upserts,
)
from assets.sync.specs import SyncSpec
from resources.destinations import SyncDestination
from resources.notifications import Notifier
from resources.warehouse import Warehouse

CHECK_NAME = "sync_has_no_failed_rows"

T = TypeVar("T")


@dataclass
class SyncCounts:
    added: int = 0
    changed: int = 0
    removed: int = 0
    sent: int = 0
    failed: int = 0


def _batches(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for offset in range(0, table.num_rows, size):
        yield table.slice(offset, size)


def _send(
    batches: Iterator[pa.Table],
    send: Callable[[pa.Table], None],
    commit: Callable[[pa.Table], None],
    counts: SyncCounts,
    log: dg.DagsterLogManager,
    what: str,
) -> None:
    for number, batch in enumerate(batches, start=1):
        try:
            send(batch)
        except Exception as exc:  # Any rejection: count it, keep going, retry next run.
            counts.failed += batch.num_rows
            log.warning(f"{what} batch {number} ({batch.num_rows} rows) rejected: {exc!r}")
            continue
        # Not guarded: if the state cannot be written the run must stop, or every later batch
        # would be sent again next time.
        commit(batch)
        counts.sent += batch.num_rows


def run_sync(
    spec: SyncSpec,
    warehouse: Warehouse,
    destination: SyncDestination,
    log: dg.DagsterLogManager,
) -> SyncCounts:
    """Send what changed since the last acknowledged batch and record what was acknowledged."""
    check_source_keys(warehouse, spec)
    upserts = pending_upserts(warehouse, spec)
    removals = pending_removals(warehouse, spec) if spec.mode == "mirror" else None
    changes = upserts.column("_change").to_pylist()
    counts = SyncCounts(
        added=changes.count("added"),
        changed=changes.count("changed"),
        removed=removals.num_rows if removals is not None else 0,
    )
    payload = [*spec.primary_key, *spec.columns]
    _send(
        _batches(upserts, spec.batch_size),
        lambda batch: destination.upsert(
            spec.destination_table, spec.primary_key, batch.select(payload)
        ),
        lambda batch: commit_upserted(warehouse, spec, batch),
        counts,
        log,
        "upsert",
    )
    if removals is not None:
        _send(
            _batches(removals, spec.batch_size),
            lambda keys: destination.delete(spec.destination_table, spec.primary_key, keys),
            lambda keys: commit_removed(warehouse, spec, keys),
            counts,
            log,
            "delete",
        )
    return counts


def _resource(context: dg.AssetExecutionContext, key: str, expected: type[T]) -> T:
    # Resources are looked up by the spec's key, so Dagster cannot check their type for us.
    value = getattr(context.resources, key)
    if not isinstance(value, expected):
        raise dg.DagsterInvariantViolationError(
            f"resource {key!r} must be a {expected.__name__}, got {type(value).__name__}"
        )
    return value


def build_sync_asset(spec: SyncSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=spec.asset_key,
        group_name="sync",
        deps=[spec.source_key],
        # Writes its state table into the warehouse (one DuckDB writer at a time locally).
        pool="warehouse",
        description=spec.description or f"Reverse ETL of {spec.source_key.to_user_string()}.",
        required_resource_keys={"warehouse", spec.destination, "notifier"},
        metadata={"destination_table": spec.destination_table, "mode": spec.mode},
    )
    def _sync(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        warehouse = _resource(context, "warehouse", Warehouse)
        destination = _resource(context, spec.destination, SyncDestination)
        notifier = _resource(context, "notifier", Notifier)

        started = time.monotonic()
        counts = run_sync(spec, warehouse, destination, context.log)
        duration = time.monotonic() - started
        if counts.failed:
            notifier.send(
                f"Sync {spec.name}: {counts.failed} row(s) failed to reach {destination.kind} "
                f"table {spec.destination_table}; they will be retried on the next run."
            )
        return dg.MaterializeResult(
            metadata={
                "rows_added": counts.added,
                "rows_changed": counts.changed,
                "rows_removed": counts.removed,
                "rows_sent": counts.sent,
                "rows_failed": counts.failed,
                "duration_s": dg.FloatMetadataValue(round(duration, 3)),
                "rows_per_s": dg.FloatMetadataValue(
                    round(counts.sent / duration, 1) if duration > 0 else 0.0
                ),
                "destination": destination.kind,
            }
        )

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
