"""The `minato` command line: demo data, the demo run, and on-call ingestion by hand."""

import datetime as dt
import os
import warnings
from pathlib import Path

import click
import dagster as dg

from resources.environment import apply_embedded_defaults


def _demo_config(seed: int, end_date: str | None, days: int):
    from pipelines.demo_data import DemoConfig

    return DemoConfig(
        seed=seed, end_date=dt.date.fromisoformat(end_date) if end_date else None, days=days
    )


@click.group()
def main() -> None:
    """Minato: the data platform as one Dagster asset graph."""
    apply_embedded_defaults()
    # Terminal output is for people: Dagster's API-stability notices belong in development.
    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


@main.group()
def demo() -> None:
    """The embedded demo: generated shards and SaaS exports, DuckDB warehouse."""


_seed_options = [
    click.option("--seed", default=42, show_default=True, help="Random seed of the dataset."),
    click.option("--end-date", default=None, help="Last business day (default: yesterday, JST)."),
    click.option("--days", default=63, show_default=True, help="Business days of history."),
]


def _with_seed_options(fn):
    for option in reversed(_seed_options):
        fn = option(fn)
    return fn


@demo.command("seed")
@_with_seed_options
def demo_seed(seed: int, end_date: str | None, days: int) -> None:
    """Create the demo shard databases and landing files."""
    from pipelines.demo import seed_demo
    from resources.shards import ShardSource

    config = _demo_config(seed, end_date, days)
    counts = seed_demo(
        config,
        ShardSource(shards_file=os.environ["MINATO_SHARDS_FILE"]),
        Path(os.environ["MINATO_LANDING_DIR"]),
    )
    click.echo(f"seeded {config.first_day}..{config.last_day}: {counts}")


@demo.command("run")
@_with_seed_options
def demo_run(seed: int, end_date: str | None, days: int) -> None:
    """Seed, then materialize the whole graph and print a summary."""
    from pipelines.demo import run_demo, seed_demo
    from resources.shards import ShardSource

    config = _demo_config(seed, end_date, days)
    seed_demo(
        config,
        ShardSource(shards_file=os.environ["MINATO_SHARDS_FILE"]),
        Path(os.environ["MINATO_LANDING_DIR"]),
    )
    with dg.DagsterInstance.get() as instance:
        click.echo(run_demo(config, instance))
    click.echo("Open the Dagster UI on this run history: make dev  (then http://127.0.0.1:3000)")


@main.command()
def manifest() -> None:
    """Parse the dbt project into target/manifest.json, with the same environment as runs.

    Runs then reuse the parse (dbt re-parses from scratch if the profile's rendered values,
    such as the DuckDB path, differ from the ones the manifest was built with).
    """
    from assets.dbt_models.project import prepare_manifest

    click.echo(f"wrote {prepare_manifest()}")


@main.command()
@click.option("--day", "days", multiple=True, required=True, help="Business day (YYYY-MM-DD).")
@click.option("--shard", "shard_names", multiple=True, help="Shard(s); default all.")
def ingest(days: tuple[str, ...], shard_names: tuple[str, ...]) -> None:
    """Ingest the given business days x shards into the lake, one run per partition."""
    from assets.partitions import DAY_DIMENSION, SHARD_DIMENSION, shards
    from pipelines.definitions import defs

    job = defs.resolve_job_def("ingest_shards")
    failed = []
    with dg.DagsterInstance.get() as instance:
        for day in days:
            for shard in shard_names or shards.get_partition_keys():
                key = dg.MultiPartitionKey({DAY_DIMENSION: day, SHARD_DIMENSION: shard})
                result = job.execute_in_process(
                    instance=instance, partition_key=key, raise_on_error=False
                )
                click.echo(f"{key}: {'ok' if result.success else 'FAILED'}")
                if not result.success:
                    failed.append(str(key))
    if failed:
        raise click.ClickException(f"failed partitions: {', '.join(failed)}")
