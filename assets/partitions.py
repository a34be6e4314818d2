"""Partitions shared by assets: business days (Asia/Tokyo) and shards."""

import os

import dagster as dg

from resources.environment import apply_embedded_defaults
from resources.shards import load_shard_specs

apply_embedded_defaults()

BUSINESS_TIMEZONE = "Asia/Tokyo"

business_days = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("MINATO_PARTITIONS_START", "2025-01-01"),
    timezone=BUSINESS_TIMEZONE,
)

# The shard list is read from the shards file (names only: no connection, no credential).
shards = dg.StaticPartitionsDefinition(
    [spec.name for spec in load_shard_specs(os.environ["MINATO_SHARDS_FILE"])]
)

DAY_DIMENSION = "business_day"
SHARD_DIMENSION = "shard"

# Dimension names sort day-first, so key ranges run day by day across all shards.
day_shard_partitions = dg.MultiPartitionsDefinition(
    {DAY_DIMENSION: business_days, SHARD_DIMENSION: shards}
)
