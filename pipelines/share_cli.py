"""`minato share plan | apply`: partners' Analytics Hub listings with thresholded views.

With `MINATO_WAREHOUSE=bigquery` it manages the project `MINATO_BIGQUERY_PROJECT` (location
`MINATO_BIGQUERY_LOCATION`, datasets prefixed with `MINATO_BIGQUERY_DATASET_PREFIX`). On the
embedded DuckDB, `apply` creates the thresholded views in the local warehouse, so the demo shows
what a partner may see; there is no Analytics Hub to plan against.
"""

import os
from collections.abc import Callable
from pathlib import Path

import click

from assets.governance import share_plan
from assets.governance.partner_config import (
    PartnerConfig,
    PartnerConfigError,
    sharing_partners,
)
from assets.governance.share_views import bigquery_ddl, duckdb_ddl
from resources import settings
from resources.analytics_hub import AnalyticsHub, AnalyticsHubApi
from resources.gcp_access import AccessApi, GcpAccess
from resources.settings import REPO_ROOT

_company_option = click.option(
    "--company", "companies", multiple=True, help="Partner id (repeatable) [default: all]."
)
_metadata_option = click.option(
    "--metadata",
    "metadata_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO_ROOT / "metadata",
    show_default="metadata/",
)


def target() -> share_plan.Target:
    project = os.environ.get("MINATO_BIGQUERY_PROJECT")
    if not project:
        raise click.ClickException("set MINATO_BIGQUERY_PROJECT to the project that shares")
    return share_plan.Target(
        project,
        os.environ.get("MINATO_BIGQUERY_LOCATION", "asia-northeast1"),
        os.environ.get("MINATO_BIGQUERY_DATASET_PREFIX", ""),
    )


def apis(where: share_plan.Target) -> tuple[AnalyticsHubApi, AccessApi, Callable[[str], None]]:
    """The live APIs and a DDL runner (tests replace this with in-memory fakes)."""
    from google.cloud import bigquery

    client = bigquery.Client(project=where.project, location=where.location)
    return (
        AnalyticsHub(project=where.project, location=where.location),
        GcpAccess(project=where.project, dataset_prefix=where.dataset_prefix),
        lambda sql: client.query(sql).result(),
    )


def _partners(metadata_dir: Path, companies: tuple[str, ...]) -> list[PartnerConfig]:
    try:
        return sharing_partners(metadata_dir, companies)
    except PartnerConfigError as exc:
        raise click.ClickException(f"a partner config is refused:\n{exc}") from exc


def _on_bigquery() -> bool:
    return settings.warehouse_kind() == "bigquery"


@click.group()
def share() -> None:
    """Partner listings (Analytics Hub) over views with an aggregation threshold."""


@share.command("plan")
@_company_option
@_metadata_option
@click.option("--ddl", is_flag=True, help="Also print the views' DDL.")
def share_plan_command(companies: tuple[str, ...], metadata_dir: Path, ddl: bool) -> None:
    """Print what `apply` would change for each sharing partner."""
    configs = _partners(metadata_dir, companies)
    if not _on_bigquery():
        for config in configs:
            click.echo(f"partner {config.company_id} (DuckDB): thresholded views")
            for statement in duckdb_ddl(config):
                click.echo(statement + ";")
        return
    where = target()
    hub, access, _ = apis(where)
    total = 0
    for config in configs:
        changes = share_plan.plan_share(config, where, hub, access)
        total += len(changes)
        click.echo(f"partner {config.company_id}: {len(changes)} change(s)")
        for change in changes:
            click.echo(f"  {change}")
        if ddl:
            for statement in bigquery_ddl(config, where.project, where.dataset_prefix):
                click.echo(statement + ";")
    click.echo(f"{total} change(s) to apply")


@share.command("apply")
@_company_option
@_metadata_option
def share_apply_command(companies: tuple[str, ...], metadata_dir: Path) -> None:
    """Create the views, authorize them, publish the listings, set who may subscribe."""
    configs = _partners(metadata_dir, companies)
    if not _on_bigquery():
        import dagster as dg

        from pipelines.resources_by_env import build_warehouse

        with dg.build_resources({"warehouse": build_warehouse()}) as resources:
            for config in configs:
                for statement in duckdb_ddl(config):
                    resources.warehouse.execute(statement)
                click.echo(f"partner {config.company_id}: views in {config.share_dataset}")
        return
    where = target()
    hub, access, run_ddl = apis(where)
    for config in configs:
        made = share_plan.apply_share(config, where, hub, access, run_ddl, report=click.echo)
        click.echo(f"partner {config.company_id}: {len(made)} change(s) applied")
        for change in made:
            click.echo(f"  {change}")
