"""The janitor: deletes temporary instances a crashed run left behind, and nothing else."""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg

from assets.snapshot_restore.restore import EPHEMERAL_TAG, delete_instance
from resources.rds import RdsApi


def expired_ephemeral_instances(
    client: Any, now: dt.datetime, max_age: dt.timedelta
) -> Iterator[str]:
    """Identifiers of instances tagged `minato:ephemeral=true` created more than `max_age`
    before `now`. Untagged instances, however old, are never returned."""
    for page in client.get_paginator("describe_db_instances").paginate():
        for instance in page["DBInstances"]:
            tags = {tag["Key"]: tag["Value"] for tag in instance.get("TagList", [])}
            created = instance.get("InstanceCreateTime")  # absent while still creating
            if (
                tags.get(EPHEMERAL_TAG) == "true"
                and created is not None
                and now - created > max_age
                and instance["DBInstanceStatus"] != "deleting"
            ):
                yield instance["DBInstanceIdentifier"]


def delete_expired(client: Any, now: dt.datetime, max_age: dt.timedelta) -> list[str]:
    expired = list(expired_ephemeral_instances(client, now, max_age))
    for identifier in expired:
        delete_instance(client, identifier)
    return expired


@dg.sensor(
    minimum_interval_seconds=30 * 60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Deletes RDS instances tagged minato:ephemeral older than "
    "RdsApi.ephemeral_max_age_hours (left by a snapshot-restore run that died); nothing else.",
)
def ephemeral_instance_janitor(context: dg.SensorEvaluationContext, rds: RdsApi) -> dg.SkipReason:
    max_age = dt.timedelta(hours=rds.ephemeral_max_age_hours)
    deleted = delete_expired(rds.client(), dt.datetime.now(dt.UTC), max_age)
    if deleted:
        context.log.warning(f"deleted expired ephemeral instance(s): {', '.join(deleted)}")
        return dg.SkipReason(f"deleted {len(deleted)} expired instance(s): {', '.join(deleted)}")
    return dg.SkipReason("no expired ephemeral instance")
