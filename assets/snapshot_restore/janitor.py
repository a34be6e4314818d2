"""The janitor: deletes temporary instances a crashed run left behind, and nothing else."""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg
from botocore.exceptions import ClientError

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


class JanitorError(RuntimeError):
    """Some expired instances could not be deleted (the others were)."""


def delete_expired(client: Any, now: dt.datetime, max_age: dt.timedelta) -> list[str]:
    """Delete every expired ephemeral instance; one that RDS refuses to delete does not stop
    the others, and fails the tick afterwards, naming it (the next tick tries again)."""
    deleted: list[str] = []
    refused: list[str] = []
    for identifier in list(expired_ephemeral_instances(client, now, max_age)):
        try:
            delete_instance(client, identifier)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            refused.append(f"{identifier} ({error.get('Code')}: {error.get('Message')})")
        else:
            deleted.append(identifier)
    if refused:
        raise JanitorError(
            f"could not delete {'; '.join(refused)}; deleted: {', '.join(deleted) or 'none'}"
        )
    return deleted


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
