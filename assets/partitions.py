"""Partitions shared by assets: business days (Asia/Tokyo) and shards, and their keys.

Built on first use from the settings (the first day of history, the shards file), never when
the module is imported. A run over several (day, shard) partitions is a key range; the one
place that spells keys and range tags is here.
"""

from __future__ import annotations

import datetime as dt
import functools

import dagster as dg

from assets.constants import BUSINESS_TIMEZONE
from resources import settings
from resources.shards import load_shard_specs

DAY_DIMENSION = "business_day"
SHARD_DIMENSION = "shard"
# Dagster's tags for a run over a range of partition keys.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@functools.cache
def _business_days(start: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start, timezone=BUSINESS_TIMEZONE)


def business_days() -> dg.DailyPartitionsDefinition:
    """One partition per business day (Asia/Tokyo) from `MINATO_PARTITIONS_START`."""
    return _business_days(settings.partitions_start())


@functools.cache
def _shard_partitions(shards_file: str) -> dg.StaticPartitionsDefinition:
    # Names only: no connection, no credential.
    return dg.StaticPartitionsDefinition([spec.name for spec in load_shard_specs(shards_file)])


def shard_partitions() -> dg.StaticPartitionsDefinition:
    """One partition per shard of the shards file."""
    return _shard_partitions(str(settings.shards_file()))


def shard_names() -> list[str]:
    return shard_partitions().get_partition_keys()


@functools.cache
def _day_shard_partitions(start: str, shards_file: str) -> dg.MultiPartitionsDefinition:
    # Dimension names sort day-first, so key ranges run day by day across all shards.
    return dg.MultiPartitionsDefinition(
        {DAY_DIMENSION: _business_days(start), SHARD_DIMENSION: _shard_partitions(shards_file)}
    )


def day_shard_partitions() -> dg.MultiPartitionsDefinition:
    """Business day × shard: the partitions of every shard-ingested lake table."""
    return _day_shard_partitions(settings.partitions_start(), str(settings.shards_file()))


def day_shard_key(day: dt.date | str, shard: str) -> dg.MultiPartitionKey:
    """The key of one (business day, shard) partition, e.g. `2026-11-26|shard_02`."""
    day = day if isinstance(day, str) else day.isoformat()
    return dg.MultiPartitionKey({DAY_DIMENSION: day, SHARD_DIMENSION: shard})


def split_day_shard_key(key: str) -> tuple[dt.date, str]:
    """(business day, shard) of a `<day>|<shard>` key."""
    dims = day_shard_partitions().get_partition_key_from_str(key).keys_by_dimension
    return dt.date.fromisoformat(dims[DAY_DIMENSION]), dims[SHARD_DIMENSION]


def day_partition_keys(day: dt.date | str) -> list[str]:
    """Every shard's key of one business day."""
    return [str(day_shard_key(day, shard)) for shard in shard_names()]


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags for every partition key from `first` to `last`; day × shard keys run
    day-major, so days × all shards is one range."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}
