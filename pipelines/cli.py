"""The `minato` command line: demo data, the demo run, and on-call ingestion by hand."""

import datetime as dt
import warnings
from pathlib import Path

import click
import dagster as dg

from pipelines.access_cli import access
from pipelines.bigquery_cli import bigquery
from pipelines.env_cli import env
from pipelines.generate.commands import generate, metadata
from pipelines.share_cli import share
from resources import settings


def _demo_config(seed: int, end_date: str | None, days: int):
    from pipelines.demo_data import DemoConfig

    return DemoConfig(
        seed=seed, end_date=dt.date.fromisoformat(end_date) if end_date else None, days=days
    )


@click.group()
def main() -> None:
    """Minato: the data platform as one Dagster asset graph."""
    # Terminal output is for people: Dagster's API-stability notices belong in development.
    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def _shard_source():
    from resources.shards import ShardSource

    return ShardSource(shards_file=str(settings.shards_file()))


def _landing_dir() -> Path:
    return Path(settings.effective()["MINATO_LANDING_DIR"])


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

    config = _demo_config(seed, end_date, days)
    counts = seed_demo(config, _shard_source(), _landing_dir())
    click.echo(f"seeded {config.first_day}..{config.last_day}: {counts}")


@demo.command("run")
@_with_seed_options
def demo_run(seed: int, end_date: str | None, days: int) -> None:
    """Seed, then materialize the whole graph and print a summary."""
    from pipelines.demo import run_demo, seed_demo

    config = _demo_config(seed, end_date, days)
    seed_demo(config, _shard_source(), _landing_dir())
    with dg.DagsterInstance.get() as instance:
        click.echo(run_demo(config, instance))
    click.echo("Open the Dagster UI on this run history: make dev  (then http://127.0.0.1:3000)")


@main.command()
def manifest() -> None:
    """Parse the dbt project into target/manifest.json and cache its Dagster specs beside it.

    A deployment runs this at build time; loading the code location then reads both and runs
    no dbt. Runs reuse the parse (dbt re-parses from scratch only if the profile's rendered
    values, such as the DuckDB path, differ from the ones the manifest was built with).
    """
    from assets.dbt_models.layers import dbt_stages, prepare_stages
    from assets.dbt_models.project import dbt_project

    click.echo(f"wrote {prepare_stages(dbt_project())}")
    click.echo(f"cached the specs of {len(dbt_stages().assets)} dbt multi-assets")


@main.command()
@click.option("--day", "days", multiple=True, required=True, help="Business day (YYYY-MM-DD).")
@click.option("--shard", "shard_names", multiple=True, help="Shard(s); default all.")
@click.option("--table", "tables", multiple=True, help="Lake table(s), e.g. orders; default all.")
def ingest(days: tuple[str, ...], shard_names: tuple[str, ...], tables: tuple[str, ...]) -> None:
    """Ingest the given business days x shards into the lake, one run per partition."""
    from assets.partitions import day_shard_key
    from assets.partitions import shard_names as all_shards
    from pipelines.definitions import defs

    job = defs.resolve_job_def("ingest_shards")
    selection = None
    if tables:
        known = {key.path[-1]: key for key in job.asset_layer.executable_asset_keys}
        unknown = sorted(set(tables) - set(known))
        if unknown:
            raise click.BadParameter(f"unknown {unknown}; one of {', '.join(sorted(known))}")
        selection = [known[t] for t in tables]
    failed = []
    with dg.DagsterInstance.get() as instance:
        for day in days:
            for shard in shard_names or all_shards():
                key = day_shard_key(day, shard)
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=key,
                    raise_on_error=False,
                    asset_selection=selection,
                )
                click.echo(f"{key}: {'ok' if result.success else 'FAILED'}")
                for line in _ingest_report(result):
                    click.echo(f"  {line}")
                if not result.success:
                    failed.append(str(key))
    if failed:
        raise click.ClickException(f"failed partitions: {', '.join(failed)}")


def _ingest_report(result: dg.ExecuteInProcessResult) -> list[str]:
    """What each lake table's run found and loaded, or why it failed."""
    from assets.ingestion.shard_tables import DISCOVERY_METADATA

    lines = []
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        discovery = metadata[DISCOVERY_METADATA].value if DISCOVERY_METADATA in metadata else {}
        for shard, found in discovery.items():  # type: ignore[union-attr]
            lines.append(
                f"{event.asset_key.to_user_string()} [{shard}]: "
                f"{found['tables_matched']} tables read, "
                f"{found['tables_ignored_count']} ignored {found['tables_ignored']}, "
                f"{found['columns_renamed_count']} columns renamed {found['columns_renamed']}; "
                f"{metadata['loaded_rows'].value} rows loaded, "
                f"{metadata['quarantined_rows'].value} quarantined"
            )
    for failure in result.get_step_failure_events():
        error = failure.step_failure_data.user_failure_data
        cause = error.description if error else failure.step_failure_data.error.message
        lines.append(f"{failure.step_key} failed: {str(cause).strip()}")
    return lines


@main.group()
def anomaly() -> None:
    """Anomaly detection: on-call's verdicts."""


@anomaly.command("feedback")
@click.option("--metric", required=True, help="Metric name (a file in metric_definitions/).")
@click.option("--series", "series_id", required=True, help="Series id as in monitoring.anomalies.")
@click.option("--day", required=True, help="Metric day (YYYY-MM-DD).")
@click.option("--verdict", required=True, type=click.Choice(["incident", "false_positive"]))
@click.option("--note", default="", help="Why, for the next on-call.")
def anomaly_feedback(metric: str, series_id: str, day: str, verdict: str, note: str) -> None:
    """Record a verdict in monitoring.anomaly_feedback (replaces an earlier one for the point)."""
    from assets.monitoring.feedback import record_feedback
    from assets.monitoring.metrics import metric_specs
    from pipelines.definitions import defs

    if metric not in metric_specs():
        raise click.BadParameter(f"unknown metric; one of {', '.join(metric_specs())}")
    with dg.build_resources({"warehouse": defs.resources["warehouse"]}) as built:
        record_feedback(
            built.warehouse, metric, series_id, dt.date.fromisoformat(day), verdict, note
        )
    click.echo(f"{metric} [{series_id}] {day}: {verdict}")


@main.command()
@click.option("--start", required=True, help="First business day (YYYY-MM-DD).")
@click.option("--end", required=True, help="Last business day (YYYY-MM-DD).")
@click.option("--days-per-run", default=7, show_default=True, help="Business days per run.")
@click.option("--force", is_flag=True, help="Re-run chunks that are already loaded.")
def backfill(start: str, end: str, days_per_run: int, force: bool) -> None:
    """Load every shard's history for a range of business days, resumably.

    The first partition day also loads everything older (a full historical load); a crashed
    backfill resumes where it stopped when run again.
    """
    from assets.ingestion.shard_tables import shard_table_assets
    from pipelines.backfill import run_backfill
    from pipelines.resources_by_env import build_resources

    with dg.DagsterInstance.get() as instance:
        result = run_backfill(
            shard_table_assets(),
            build_resources(),
            instance,
            dt.date.fromisoformat(start),
            dt.date.fromisoformat(end),
            days_per_run=days_per_run,
            force=force,
            echo=click.echo,
        )
    if result.failed is not None:
        raise click.ClickException(
            f"backfill stopped at {result.failed.first_day}..{result.failed.last_day}"
        )


main.add_command(access)
main.add_command(generate)
main.add_command(bigquery)
main.add_command(metadata)
main.add_command(share)
main.add_command(env)
