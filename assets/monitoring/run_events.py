"""What a run's event log says about failure and recovery, in the alerts' terms.

A failed step's asset partitions are the ones it planned and did not materialize; its root cause
is the innermost error of the chain, or the message of a `dg.Failure` (Minato's own errors say
the shard, the URL without password and the action, which the innermost driver error does not).
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from assets.monitoring.alerts import FailedPartition, Failure, one_line

# Dagster sets this on a failed run that its run-retry policy will launch again.
WILL_RETRY_TAG = "dagster/will_retry"


def will_be_retried(run: dg.DagsterRun) -> bool:
    return run.tags.get(WILL_RETRY_TAG, "false").lower() == "true"


def _events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> list:
    return [e.dagster_event for e in instance.all_logs(run_id, of_type=kind) if e.dagster_event]


def _partitions(data) -> list[str]:
    if getattr(data, "partitions_subset", None) is not None:
        return list(data.partitions_subset.get_partition_keys())
    return [data.partition or ""]


def materialized(instance: dg.DagsterInstance, run_id: str) -> list[FailedPartition]:
    """Every asset partition the run materialized."""
    out = []
    for event in _events(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.event_specific_data.materialization
        out.append(
            FailedPartition(
                materialization.asset_key.to_user_string(), materialization.partition or ""
            )
        )
    return out


def _innermost(error: SerializableErrorInfo) -> SerializableErrorInfo:
    while error.cause is not None or error.context is not None:
        error = error.cause or error.context  # type: ignore[assignment]
    return error


def step_root_cause(step_failure) -> str:
    user = step_failure.user_failure_data
    if user is not None and user.description:
        return one_line(user.description)
    if step_failure.error is None:
        return "unknown error"
    return one_line(_innermost(step_failure.error).message)


def _failed_steps(instance: dg.DagsterInstance, run_id: str) -> Iterator[tuple[str, str]]:
    for event in _events(instance, run_id, dg.DagsterEventType.STEP_FAILURE):
        yield event.step_key, step_root_cause(event.step_failure_data)


def run_failure(instance: dg.DagsterInstance, run: dg.DagsterRun, run_message: str) -> Failure:
    """The failure of `run`: its failed asset partitions and the first failed step's cause
    (`run_message` when no step failed, e.g. the run worker died)."""
    causes = dict(_failed_steps(instance, run.run_id))
    done = {p.entry for p in materialized(instance, run.run_id)}
    failed = []
    for event in _events(instance, run.run_id, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
        if event.step_key not in causes:
            continue
        data = event.event_specific_data
        for partition in _partitions(data):
            candidate = FailedPartition(data.asset_key.to_user_string(), partition)
            if candidate.entry not in done:
                failed.append(candidate)
    cause = next(iter(causes.values()), None) or one_line(run_message)
    return Failure(run.job_name, run.run_id, tuple(dict.fromkeys(failed)), cause)
