"""On-call from a terminal: which asset partitions are failing now, grouped by failure, and
re-executing exactly those.

An asset partition is failing when the latest run that tried it failed on it and nothing has
materialized it since. Its failure is that run's (the fingerprint and root cause of the alerts,
assets/monitoring/alerts.py), so `minato oncall status` and the alerts tell the same story.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from assets.monitoring.alerts import FailedPartition, Failure
from assets.monitoring.run_events import run_failure
from assets.run_lanes import BACKFILL_LANE, lane_tags

# How far back `status` reads failed runs: older failures are history, not on-call's night.
DEFAULT_SINCE = dt.timedelta(days=7)


@dataclass
class FailureGroup:
    """The asset partitions still failing with one fingerprint."""

    failure: Failure  # the latest run's failure of the group
    since: dt.datetime  # UTC: when the earliest of them failed
    partitions: dict[str, tuple[FailedPartition, str]] = field(default_factory=dict)
    # entry → (partition, job name)


def _materialized_after(
    instance: dg.DagsterInstance, failed: FailedPartition, after: float
) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_user_string(failed.asset),
            asset_partitions=[failed.partition] if failed.partition else None,
            after_timestamp=after,
        ),
        limit=1,
    ).records
    return bool(records)


def failing_now(
    instance: dg.DagsterInstance, now: dt.datetime, since: dt.timedelta = DEFAULT_SINCE
) -> list[FailureGroup]:
    """Failing asset partitions, grouped by failure fingerprint, oldest group first."""
    runs = instance.get_runs(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=now - since)
    )
    latest: dict[str, tuple[float, Failure, FailedPartition]] = {}
    # Oldest run first, so a later failure of the same asset partition replaces an earlier one.
    for run in sorted(runs, key=lambda r: _ended(instance, r)):
        failure = run_failure(instance, run, "run failed before any step ran")
        ended = _ended(instance, run)
        for failed in failure.failed:
            latest[failed.entry] = (ended, failure, failed)
    groups: dict[str, FailureGroup] = {}
    for ended, failure, failed in sorted(latest.values(), key=lambda v: v[0]):
        if _materialized_after(instance, failed, ended):
            continue  # recovered since
        group = groups.setdefault(
            failure.fingerprint,
            FailureGroup(failure, dt.datetime.fromtimestamp(ended, dt.UTC)),
        )
        group.failure = failure
        group.partitions[failed.entry] = (failed, failure.job_name)
    return list(groups.values())


def _ended(instance: dg.DagsterInstance, run: dg.DagsterRun) -> float:
    record = instance.get_run_record_by_id(run.run_id)
    if record is not None and record.end_time is not None:
        return record.end_time
    return record.create_timestamp.timestamp() if record is not None else 0.0


def status_lines(groups: Sequence[FailureGroup], zone: dt.tzinfo) -> list[str]:
    count = sum(len(g.partitions) for g in groups)
    if not groups:
        return ["nothing is failing"]
    lines = [f"{count} asset partition(s) failing, {len(groups)} failure(s)"]
    for group in groups:
        since = group.since.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        lines.append(
            f"[{group.failure.failure_class}] since {since}, {len(group.partitions)} asset "
            f"partition(s), last run {group.failure.run_id}: {group.failure.root_cause}"
        )
        for failed, _ in sorted(group.partitions.values(), key=lambda v: v[0].entry):
            lines.append(f"  {failed.asset} {failed.partition or '(unpartitioned)'}")
    return lines


@dataclass(frozen=True)
class Rerun:
    job_name: str
    partition: str
    assets: tuple[str, ...]
    run_id: str
    success: bool


def rerun_failing(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    groups: Sequence[FailureGroup],
    echo: Callable[[str], None] = print,
) -> list[Rerun]:
    """One run per (job, partition) of exactly the failing assets, in the backfill lane."""
    plan: dict[tuple[str, str], list[str]] = {}
    for group in groups:
        for failed, job_name in group.partitions.values():
            plan.setdefault((job_name, failed.partition), []).append(failed.asset)
    done = []
    for (job_name, partition), assets in sorted(plan.items()):
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition or None,
            asset_selection=[dg.AssetKey.from_user_string(a) for a in sorted(assets)],
            tags=lane_tags(BACKFILL_LANE),
            raise_on_error=False,
        )
        rerun = Rerun(job_name, partition, tuple(sorted(assets)), result.run_id, result.success)
        echo(
            f"{partition or '(unpartitioned)'} {', '.join(rerun.assets)}: "
            f"{'ok' if rerun.success else 'FAILED'} (run {rerun.run_id}, job {job_name})"
        )
        done.append(rerun)
    return done
