"""Schedules. Business days are Asia/Tokyo; cron strings are evaluated in that zone."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from assets.constants import BUSINESS_TIMEZONE
from assets.partitions import day_shard_key, shard_names
from assets.run_lanes import CORE_LANE, lane_tags
from pipelines.jobs import ingest_shards_job, slo_report_job
from pipelines.run_sizes import run_size_tags_by_shard


def previous_business_day(scheduled: dt.datetime) -> dt.date:
    """The JST day before the tick, whatever zone the tick is expressed in."""
    return (scheduled.astimezone(ZoneInfo(BUSINESS_TIMEZONE)) - dt.timedelta(days=1)).date()


@dg.schedule(
    job=ingest_shards_job,
    cron_schedule="0 1 * * *",
    execution_timezone=BUSINESS_TIMEZONE,
    description="01:00 JST: ingest the previous business day, one run per shard (in parallel).",
)
def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    day = previous_business_day(context.scheduled_execution_time).isoformat()
    sizes = run_size_tags_by_shard()  # a larger shard gets a larger task or pod
    return [
        dg.RunRequest(
            run_key=f"{day}|{shard}",
            partition_key=day_shard_key(day, shard),
            tags={"minato/shard": shard, **lane_tags(CORE_LANE), **sizes[shard]},
        )
        for shard in shard_names()
    ]


slo_report_schedule = dg.ScheduleDefinition(
    name="slo_report_schedule",
    job=slo_report_job,
    cron_schedule="0 9 * * *",
    execution_timezone=BUSINESS_TIMEZONE,
    description="09:00 JST, after the day's deadlines (metadata/slos.yml): score the SLOs and "
    "name the shards that missed yesterday.",
)
