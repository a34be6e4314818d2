"""Restoring a snapshot source's latest RDS snapshot into a temporary instance, and deleting it.

The temporary instance is tagged `minato:ephemeral` with the run id, so the janitor can delete
it if this process dies before its `finally` runs. The production instance is only named (to
list its snapshots), never connected to.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from assets.snapshot_restore.sources import SnapshotSource
from resources.rds import RdsApi

EPHEMERAL_TAG = "minato:ephemeral"
RUN_ID_TAG = "minato:run-id"
SOURCE_TAG = "minato:source"


class SnapshotRestoreError(Exception):
    """No snapshot fit to load: none at all, too old, or older than the day it should hold."""


def latest_snapshot(
    client: Any, source: SnapshotSource, holds_until: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    """The newest available snapshot of the source's instance, refused when it is older than
    `max_snapshot_age_hours` or was taken before `holds_until` (it could not hold those rows)."""
    pages = client.get_paginator("describe_db_snapshots").paginate(
        DBInstanceIdentifier=source.instance
    )
    snapshots = [s for page in pages for s in page["DBSnapshots"] if s["Status"] == "available"]
    where = f"snapshot source {source.name} (instance {source.instance})"
    if not snapshots:
        raise SnapshotRestoreError(f"{where}: no available snapshot")
    latest = max(snapshots, key=lambda s: s["SnapshotCreateTime"])
    taken = latest["SnapshotCreateTime"].astimezone(dt.UTC)
    hours = (now - taken).total_seconds() / 3600
    described = f"{where}: the latest snapshot {latest['DBSnapshotIdentifier']} was taken {taken}"
    if hours > source.max_snapshot_age_hours:
        raise SnapshotRestoreError(
            f"{described}, {hours:.1f} h ago: older than max_snapshot_age_hours="
            f"{source.max_snapshot_age_hours:g}; refusing to load stale data"
        )
    if taken < holds_until:
        raise SnapshotRestoreError(
            f"{described}, before {holds_until.astimezone(dt.UTC)}: it cannot hold that "
            "business day's changes yet"
        )
    return latest


def ephemeral_identifier(source: SnapshotSource, run_id: str, attempt: int) -> str:
    """`minato-<source>-<run>-<attempt>`: unique per step attempt (a deleted instance keeps its
    name while it is deleting), within RDS's 63 characters of letters, digits and hyphens."""
    name = re.sub(r"-+", "-", f"minato-{source.name}-{run_id[:8]}-{attempt}".replace("_", "-"))
    return name[:63].rstrip("-")


@contextlib.contextmanager
def restored_instance(
    rds: RdsApi,
    client: Any,
    source: SnapshotSource,
    snapshot: dict[str, Any],
    run_id: str,
    attempt: int,
    log: Callable[[str], None],
) -> Iterator[dict[str, Any]]:
    """Restore `snapshot` into a new tagged instance, wait until it is available, yield its
    description; delete it without a final snapshot on the way out, whatever happened."""
    identifier = ephemeral_identifier(source, run_id, attempt)
    request: dict[str, Any] = {
        "DBInstanceIdentifier": identifier,
        "DBSnapshotIdentifier": snapshot["DBSnapshotIdentifier"],
        "DBInstanceClass": source.instance_class,
        "MultiAZ": False,
        "PubliclyAccessible": False,
        "DeletionProtection": False,
        "Tags": [
            {"Key": EPHEMERAL_TAG, "Value": "true"},
            {"Key": RUN_ID_TAG, "Value": run_id},
            {"Key": SOURCE_TAG, "Value": source.name},
        ],
    }
    if source.subnet_group:
        request["DBSubnetGroupName"] = source.subnet_group
    if source.security_groups:
        request["VpcSecurityGroupIds"] = list(source.security_groups)
    try:
        log(f"restoring {snapshot['DBSnapshotIdentifier']} into {identifier}")
        client.restore_db_instance_from_db_snapshot(**request)
        client.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=identifier,
            WaiterConfig={"Delay": rds.wait_delay_seconds, "MaxAttempts": rds.wait_max_attempts},
        )
        yield client.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    finally:
        delete_instance(client, identifier)
        log(f"deleted {identifier}")


def delete_instance(client: Any, identifier: str) -> None:
    """Delete an ephemeral instance: no final snapshot, no retained backups; gone is fine."""
    try:
        client.delete_db_instance(
            DBInstanceIdentifier=identifier, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "DBInstanceNotFound":
            raise
