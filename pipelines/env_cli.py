"""`minato env`: change environments built from production (pipelines/environments/)."""

from pathlib import Path

import click

from pipelines.environments import lifecycle
from pipelines.environments.layout import ChangeEnvironmentError
from resources import settings

_project_dir = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=settings.DBT_PROJECT_DIR,
    show_default="dbt_project/",
    help="The dbt project with the change.",
)


@click.group("env")
def env() -> None:
    """Environments: what MINATO_ENV sets (show), and change environments cloned from
    production (create, build, diff, drop)."""


def _fail(error: ChangeEnvironmentError) -> None:
    raise click.ClickException(str(error)) from error


@env.command("show")
def show() -> None:
    """What MINATO_ENV (dev | staging | prod) sets here: dbt target, datasets, instance, alerts."""
    deployment = settings.deployment()
    click.echo(f"MINATO_ENV        {deployment.name}")
    click.echo(f"dbt target        {deployment.dbt_target}")
    click.echo(f"dataset prefix    {deployment.dataset_prefix or '(none)'}")
    click.echo(f"Dagster instance  {deployment.dagster_instance} (as $DAGSTER_HOME/dagster.yaml)")
    click.echo(f"alert channel     {deployment.alert_channel}")


@env.command("create")
@click.argument("name")
@click.option("--from", "source", type=click.Choice(["prod", "staging"]), default="prod",
              show_default=True,
              help="The environment the --state manifest and the warehouse belong to: dbt "
              "renders names as there (BigQuery: its dataset prefix).")  # fmt: skip
@click.option(
    "--state",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="The manifest.json that environment was built from (or its folder).",
)
@_project_dir
def create(name: str, source: str, state: Path, project_dir: Path) -> None:
    """Store the production manifest as state and clone the parents of the modified models."""
    try:
        record = lifecycle.create(name, state, project_dir.resolve(), source)
    except ChangeEnvironmentError as error:
        _fail(error)
    click.echo(
        f"environment {name}: {len(record.built)} model(s) to build, "
        f"{len(record.cloned)} table(s) cloned from {source}"
    )


@env.command("build")
@click.argument("name")
@click.option("--vars", "dbt_vars", default=None, help="dbt --vars (YAML), e.g. a date window.")
@_project_dir
def build(name: str, dbt_vars: str | None, project_dir: Path) -> None:
    """dbt build --select state:modified+ --defer into the environment."""
    try:
        record = lifecycle.build(name, project_dir.resolve(), dbt_vars)
    except ChangeEnvironmentError as error:
        _fail(error)
    click.echo(f"environment {name}: built {len(record.built)} node(s)")


@env.command("diff")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the Markdown report here instead of standard output.")  # fmt: skip
def diff(name: str, out: Path | None) -> None:
    """Compare each built model with production; a Markdown report."""
    try:
        report = lifecycle.diff(name)
    except ChangeEnvironmentError as error:
        _fail(error)
    if out:
        out.write_text(report)
        click.echo(f"report written to {out}")
    else:
        click.echo(report, nl=False)


@env.command("drop")
@click.argument("name")
def drop(name: str) -> None:
    """Remove the environment: its files and, on BigQuery, its datasets."""
    try:
        dropped = lifecycle.drop(name)
    except ChangeEnvironmentError as error:
        _fail(error)
    click.echo(f"environment {name}: " + ("dropped" if dropped else "nothing to drop"))
