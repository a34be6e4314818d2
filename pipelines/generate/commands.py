"""`minato generate ...` and `minato metadata export`, registered on the CLI in pipelines/cli.py."""

import os
from collections.abc import Callable
from pathlib import Path

import click

from pipelines.generate import cleansing, files, partners, source_requests
from pipelines.generate.csvfiles import MetadataError
from resources.settings import REPO_ROOT

# Given before or after the subcommand; a subcommand's own value wins.
_metadata_option = click.option(
    "--metadata",
    "metadata_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the metadata CSVs [default: metadata/].",
)
_project_option = click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The dbt project the files are written into [default: dbt_project/].",
)
_check_option = click.option(
    "--check", is_flag=True, help="Write nothing; fail if any generated file is stale or edited."
)


def _run(
    name: str,
    produce: Callable[[], dict[str, str]],
    folders: list[str],
    project_dir: Path,
    check: bool,
) -> None:
    try:
        produced = produce()
    except MetadataError as exc:
        raise click.ClickException(f"{name}: the metadata has errors:\n{exc}") from exc
    if check:
        problems = files.differences(project_dir, produced, folders)
        if problems:
            raise click.ClickException(
                f"{name}: generated files do not match their inputs; run `minato generate`:\n"
                + "\n".join(f"  {p}" for p in problems)
            )
        click.echo(f"{name}: {len(produced)} generated file(s) up to date")
        return
    touched = files.write(project_dir, produced, folders)
    click.echo(f"{name}: {len(produced)} file(s), {len(touched)} written or removed")
    for path in touched:
        click.echo(f"  {path}")


def _forms(metadata_dir: Path) -> list[Path]:
    return sorted((metadata_dir / "requests").glob("*.csv"))


def _companies(metadata_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in (metadata_dir / "partners").glob("*/config.yml"))


def _all_partners(metadata_dir: Path) -> dict[str, str]:
    produced: dict[str, str] = {}
    for company in _companies(metadata_dir):
        produced.update(partners.render(metadata_dir, company))
    return produced


@click.group(invoke_without_command=True)
@_metadata_option
@_project_option
@_check_option
@click.pass_context
def generate(
    ctx: click.Context, metadata_dir: Path | None, project_dir: Path | None, check: bool
) -> None:
    """Generate dbt code from metadata; without a subcommand, every generator (as CI does)."""
    metadata_dir = metadata_dir or REPO_ROOT / "metadata"
    project_dir = project_dir or REPO_ROOT / "dbt_project"
    ctx.obj = {"check": check, "metadata": metadata_dir, "project": project_dir}
    if ctx.invoked_subcommand is not None:
        return
    _run(
        "cleansing",
        lambda: cleansing.render(metadata_dir),
        list(cleansing.OUTPUT_DIRS),
        project_dir,
        check,
    )
    _run(
        "source",
        lambda: source_requests.render(_forms(metadata_dir), REPO_ROOT),
        list(source_requests.OUTPUT_DIRS),
        project_dir,
        check,
    )
    _run("partner", lambda: _all_partners(metadata_dir), [partners.OUTPUT_ROOT], project_dir, check)


@generate.command("cleansing")
@_metadata_option
@_project_option
@_check_option
@click.pass_obj
def generate_cleansing(
    obj: dict, metadata_dir: Path | None, project_dir: Path | None, check: bool
) -> None:
    """cleansing_* and cleansing_secret_* models from metadata/*.csv."""
    metadata_dir, project_dir = metadata_dir or obj["metadata"], project_dir or obj["project"]
    _run(
        "cleansing",
        lambda: cleansing.render(metadata_dir),
        list(cleansing.OUTPUT_DIRS),
        project_dir,
        check or obj["check"],
    )


@generate.command("source")
@click.argument("forms", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_metadata_option
@_project_option
@_check_option
@click.pass_obj
def generate_source(
    obj: dict,
    forms: tuple[Path, ...],
    metadata_dir: Path | None,
    project_dir: Path | None,
    check: bool,
) -> None:
    """dbt sources, staging models and docs from request forms (default metadata/requests/)."""
    metadata_dir, project_dir = metadata_dir or obj["metadata"], project_dir or obj["project"]
    chosen = list(forms) or _forms(metadata_dir)
    _run(
        "source",
        lambda: source_requests.render(chosen, REPO_ROOT),
        list(source_requests.OUTPUT_DIRS),
        project_dir,
        check or obj["check"],
    )


@generate.command("partner")
@click.option("--company", required=True, help="Company id: metadata/partners/<id>/.")
@_metadata_option
@_project_option
@_check_option
@click.pass_obj
def generate_partner(
    obj: dict, company: str, metadata_dir: Path | None, project_dir: Path | None, check: bool
) -> None:
    """A partner company's public_<id>_<name> mart from its request and config."""
    metadata_dir, project_dir = metadata_dir or obj["metadata"], project_dir or obj["project"]
    folder = partners.output_dir(metadata_dir, company)
    _run(
        f"partner {company}",
        lambda: partners.render(metadata_dir, company),
        [folder] if folder else [],
        project_dir,
        check or obj["check"],
    )


@click.group()
def metadata() -> None:
    """Metadata the generators read."""


@metadata.command("export")
@click.option(
    "--source",
    default="lake",
    show_default=True,
    help="`lake` (the warehouse's lake tables) or a shard name from the shards file.",
)
@click.option("--tables", default="", help="Comma-separated logical tables (a shard: default all).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=REPO_ROOT / "metadata" / "columns.csv",
    show_default=True,
)
def metadata_export(source: str, tables: str, output: Path) -> None:
    """Write the catalog (table, column, source_type, nullable, ordinal) to columns.csv."""
    from pipelines.generate import export

    wanted = [t.strip() for t in tables.split(",") if t.strip()]
    if source == "lake":
        import dagster as dg

        from pipelines.resources_by_env import build_warehouse

        with dg.build_resources({"warehouse": build_warehouse()}) as resources:
            rows = export.lake_columns(resources.warehouse)
        if wanted:
            rows = [row for row in rows if row[0] in wanted]
    else:
        from assets.ingestion.lake_tables import SHARD_LAKE_TABLES
        from resources.shards import ShardSource

        shards = ShardSource(shards_file=os.environ["MINATO_SHARDS_FILE"])
        rows = export.shard_columns(shards, source, wanted or [t.name for t in SHARD_LAKE_TABLES])
    if not rows:
        raise click.ClickException(f"{source}: no tables found")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(export.merge_into(output, rows), encoding="utf-8")
    click.echo(f"wrote {len({row[0] for row in rows})} table(s) from {source} into {output}")
