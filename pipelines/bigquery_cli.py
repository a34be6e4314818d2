"""`minato bigquery …`: what a BigQuery project needs before Minato's first run."""

import os

import click
import dagster as dg

from assets.ingestion.lake_tables import SHARD_LAKE_TABLES
from assets.ingestion.origin import ORIGIN_SCHEMA
from assets.ingestion.shard_load import lake_target
from assets.partitions import shard_names
from resources.warehouse import BigQueryWarehouse


@click.group()
def bigquery() -> None:
    """The production warehouse on BigQuery."""


@bigquery.command("setup")
def setup() -> None:
    """Create the catalog's datasets (metadata/datasets.yml) and the lake tables: one table per
    shard, partitioned by business day and clustered by shard and client, read through a view
    named for the lake table. Idempotent: what exists is left as it is."""
    # Checked here: unset, the resource would fail later with a config error that names no fix.
    if not os.environ.get("MINATO_BIGQUERY_PROJECT"):
        raise click.UsageError("MINATO_BIGQUERY_PROJECT is not set: the GCP project to set up")
    from pipelines.resources_by_env import build_warehouse

    # The warehouse the writes use (same prefix, location and cost guard), whatever
    # MINATO_WAREHOUSE says: this command only ever sets up BigQuery.
    env = {**os.environ, "MINATO_WAREHOUSE": "bigquery"}
    # Any day of each shard: the shards name the physical tables to create.
    every_shard = tuple((None, shard) for shard in shard_names())
    lake_tables = [
        (lake_target(table.name, every_shard), ORIGIN_SCHEMA) for table in SHARD_LAKE_TABLES
    ]
    with dg.build_resources({"warehouse": build_warehouse(env)}) as resources:
        warehouse: BigQueryWarehouse = resources.warehouse
        for dataset in warehouse.setup(lake_tables):
            click.echo(f"dataset {warehouse.project}.{dataset}: ready")
        for target, _ in lake_tables:
            click.echo(
                f"view {warehouse.qualified(target.schema, target.table)} over "
                f"{len(every_shard)} shard table(s): ready"
            )
