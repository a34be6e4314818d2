"""`minato bigquery …`: what a BigQuery project needs before Minato's first run."""

import os

import click

from assets.ingestion.lake_tables import SHARD_LAKE_TABLES
from assets.ingestion.origin import ORIGIN_SCHEMA
from assets.ingestion.shard_load import lake_target
from assets.partitions import shard_names
from resources import settings
from resources.warehouse import BigQueryWarehouse


@click.group()
def bigquery() -> None:
    """The production warehouse on BigQuery."""


def warehouse_from_environment() -> BigQueryWarehouse:
    """The BigQuery warehouse the MINATO_BIGQUERY_* variables describe."""
    project = os.environ.get("MINATO_BIGQUERY_PROJECT")
    if not project:
        raise click.UsageError("MINATO_BIGQUERY_PROJECT is not set: the GCP project to set up")
    # The same prefix and location the writes use (MINATO_ENV's prefix unless one is set).
    return BigQueryWarehouse(
        project=project,
        location=settings.bigquery_location(),
        dataset_prefix=settings.dataset_prefix(),
    )


@bigquery.command("setup")
def setup() -> None:
    """Create the catalog's datasets (metadata/datasets.yml) and the lake tables: one table per
    shard, partitioned by business day and clustered by shard and client, read through a view
    named for the lake table. Idempotent: what exists is left as it is."""
    warehouse = warehouse_from_environment()
    # Any day of each shard: the shards name the physical tables to create.
    every_shard = tuple((None, shard) for shard in shard_names())
    lake_tables = [
        (lake_target(table.name, every_shard), ORIGIN_SCHEMA) for table in SHARD_LAKE_TABLES
    ]
    for dataset in warehouse.setup(lake_tables):
        click.echo(f"dataset {warehouse.project}.{dataset}: ready")
    for target, _ in lake_tables:
        click.echo(
            f"view {warehouse.qualified(target.schema, target.table)} over "
            f"{len(every_shard)} shard table(s): ready"
        )
