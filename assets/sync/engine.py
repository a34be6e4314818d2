"""The sync engine: finish an interrupted plan, diff, deliver batches concurrently, journal each
acknowledged batch, fold the journal into the state.

Destination calls run on `spec.concurrency` threads behind one rate limiter; every warehouse
statement runs on the calling thread (DuckDB allows one writer). That thread journals the batches
acknowledged since its last write at most every JOURNAL_EVERY_S, and always before it stops, so
a warehouse write (~0.1 s on DuckDB, seconds on BigQuery) groups acknowledgements rather than
holding back delivery. A crash loses at most that window of acknowledgements; those batches are
replayed with their idempotency keys, which the destination ignores or re-applies without effect.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import dagster as dg

from assets.sync.delivery import Delivery, RateLimiter, deliver
from assets.sync.diff import PlannedBatch, SyncStore, check_source_keys
from assets.sync.specs import SyncSpec
from resources.destinations import Batch, SyncDestination
from resources.warehouse import Warehouse

Log = logging.Logger | dg.DagsterLogManager
PROGRESS_EVERY_S = 30.0
JOURNAL_EVERY_S = 1.0
# Batches queued per sender thread: enough to keep senders busy while this thread reads the
# plan or journals (~0.1-0.3 s on DuckDB), without holding much of the plan in memory.
INFLIGHT_PER_SENDER = 4


@dataclass
class SyncReport:
    added: int = 0
    changed: int = 0
    removed: int = 0
    sent: int = 0
    rejected: int = 0
    batches: int = 0
    calls: int = 0
    retries: int = 0
    splits: int = 0
    resumed_batches: int = 0
    rejected_outstanding: int = 0
    diff_s: float = 0.0
    duration_s: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0


def destination_batch(spec: SyncSpec, planned: PlannedBatch) -> Batch:
    """The plan's rows under destination names; the idempotency key is stable across replays."""
    columns = list(spec.key_columns)
    if planned.op != "delete":
        columns += spec.value_columns
    names = spec.destination_names
    rows = planned.rows.select(columns).rename_columns([names[c] for c in columns])
    return Batch(
        spec.destination_table,
        spec.destination_key,
        planned.op,  # type: ignore[arg-type]  # the plan only holds Operation values
        rows,
        f"{spec.name}/{planned.plan_id}/{planned.op}/{planned.number}",
    )


def _deliver_plan(
    store: SyncStore,
    destination: SyncDestination,
    open_batches: list[tuple[str, int, int]],
    report: SyncReport,
    log: Log,
) -> None:
    spec = store.spec
    counts = store.change_counts(open_batches)
    report.added += counts.get("added", 0)
    report.changed += counts.get("changed", 0)
    report.removed += counts.get("removed", 0)
    limiter = RateLimiter(spec.rate_limit_per_s)
    inflight: dict[Future[Delivery], PlannedBatch] = {}
    errors: list[BaseException] = []
    last_progress = last_journal = time.monotonic()
    done: list[tuple[PlannedBatch, list[tuple[int, str]]]] = []

    def collect(block: bool, flush: bool = False) -> None:
        nonlocal last_progress, last_journal
        finished, _ = wait(
            list(inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED
        )
        for future in finished:
            planned = inflight.pop(future)
            try:
                delivery = future.result()
            except BaseException as exc:  # Stop sending; what was acknowledged is journaled.
                errors.append(exc)
                continue
            refused = [(r.index, r.reason) for r in delivery.rejections]
            done.append((planned, refused))
            report.batches += 1
            report.calls += delivery.calls
            report.retries += delivery.retries
            report.splits += delivery.splits
            report.rejected += len(refused)
            report.sent += planned.rows.num_rows - len(refused)
            if refused:
                log.warning(
                    f"sync {spec.name}: {planned.op} batch {planned.number}: "
                    f"{len(refused)} record(s) refused, e.g. {refused[0][1]}"
                )
        if done and (flush or errors or time.monotonic() - last_journal >= JOURNAL_EVERY_S):
            store.journal(done)
            done.clear()
            last_journal = time.monotonic()
        interruptions = [e for e in errors if not isinstance(e, Exception)]
        if interruptions:  # The run is being stopped: leave the plan for the next run.
            raise interruptions[0]
        if time.monotonic() - last_progress > PROGRESS_EVERY_S:
            last_progress = time.monotonic()
            log.info(f"sync {spec.name}: {report.sent:,} row(s) delivered so far")

    with ThreadPoolExecutor(spec.concurrency, thread_name_prefix=f"sync-{spec.name}") as pool:
        for planned in store.read_batches(open_batches):
            while len(inflight) >= INFLIGHT_PER_SENDER * spec.concurrency:
                collect(block=True)
            if errors:
                break
            batch = destination_batch(spec, planned)
            inflight[pool.submit(deliver, destination, batch, limiter)] = planned
            collect(block=False)
        while inflight:
            collect(block=True)
        collect(block=False, flush=True)
    if errors:
        store.fold()  # Keep what was delivered; the rest is in the next run's diff.
        raise errors[0]


def run_sync(
    spec: SyncSpec, warehouse: Warehouse, destination: SyncDestination, log: Log
) -> SyncReport:
    """Send what changed since the last acknowledged batch and record what was acknowledged."""
    started = time.monotonic()
    store = SyncStore(warehouse, spec)
    report = SyncReport()
    leftover = store.open_batches()
    if leftover:
        report.resumed_batches = len(leftover)
        log.warning(
            f"sync {spec.name}: an earlier run stopped mid-sync; resending its "
            f"{len(leftover)} unacknowledged batch(es) with their idempotency keys first"
        )
        _deliver_plan(store, destination, leftover, report, log)
        store.fold()
    diff_started = time.monotonic()
    check_source_keys(warehouse, spec)
    store.create_plan()
    planned = store.open_batches()
    report.diff_s = time.monotonic() - diff_started
    _deliver_plan(store, destination, planned, report, log)
    store.fold()
    report.rejected_outstanding = store.rejected_count()
    report.duration_s = time.monotonic() - started
    return report
