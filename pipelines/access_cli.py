"""`minato access plan | apply | review`: the access matrix (metadata/access/matrix.csv) as code.

The live side is the production project: `MINATO_BIGQUERY_PROJECT` (and the warehouse's
`MINATO_BIGQUERY_DATASET_PREFIX`), with Application Default Credentials.
"""

import os
from pathlib import Path

import click

from assets.governance import access_plan
from assets.governance.matrix import (
    MATRIX_FILE,
    AccessMatrixError,
    Matrix,
    business_today,
    load_matrix,
)
from resources.gcp_access import AccessApi, GcpAccess

_matrix_option = click.option(
    "--matrix",
    "matrix_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=MATRIX_FILE,
    show_default="metadata/access/matrix.csv",
    help="The access matrix to use.",
)


def access_api() -> AccessApi:
    """The live APIs (tests replace this with an in-memory fake)."""
    project = os.environ.get("MINATO_BIGQUERY_PROJECT")
    if not project:
        raise click.ClickException("set MINATO_BIGQUERY_PROJECT to the project to manage")
    prefix = os.environ.get("MINATO_BIGQUERY_DATASET_PREFIX", "")
    return GcpAccess(project=project, dataset_prefix=prefix)


def _matrix(path: Path) -> Matrix:
    try:
        return load_matrix(path)
    except AccessMatrixError as exc:
        raise click.ClickException(f"the access matrix is refused:\n{exc}") from exc


@click.group()
def access() -> None:
    """Grants per dataset and bucket, from the Resource x Role matrix."""


@access.command("plan")
@_matrix_option
def access_plan_command(matrix_path: Path) -> None:
    """Print the grants to add and revoke, and the drift (grants nobody declared)."""
    matrix = _matrix(matrix_path)
    plans = access_plan.plan(matrix, access_api(), business_today())
    changes = [c for p in plans for c in p.changes]
    for change in changes:
        click.echo(str(change))
    for missing in (p for p in plans if p.missing):
        click.echo(f"? {missing.resource}: does not exist (create it first); not planned")
    kept = sum(p.authorized for p in plans)
    counts = {a: sum(c.action == a for c in changes) for a in ("add", "revoke", "drift")}
    click.echo(
        f"{counts['add']} to add, {counts['revoke']} to revoke, {counts['drift']} drift "
        f"over {len(plans)} resources; {kept} authorized view(s) kept"
    )


@access.command("apply")
@_matrix_option
@click.option("--revoke-drift", is_flag=True, help="Also revoke grants made outside the matrix.")
def access_apply_command(matrix_path: Path, revoke_drift: bool) -> None:
    """Make the live grants match the matrix (each resource written once, with its ETag)."""
    matrix = _matrix(matrix_path)
    made = access_plan.apply(
        matrix, access_api(), business_today(), revoke_drift=revoke_drift, report=click.echo
    )
    for change in made:
        click.echo(str(change))
    click.echo(f"{len(made)} change(s) applied")


@access.command("review")
@_matrix_option
@click.option("--days", default=30, show_default=True, help="Horizon for expiring grants.")
def access_review_command(matrix_path: Path, days: int) -> None:
    """Who can use what (PII first), and what expires soon. Reads only the matrix."""
    matrix = _matrix(matrix_path)
    result = access_plan.review(matrix, business_today(), days)
    click.echo("Who can use what (PII first):")
    for grant in result.readers:
        pii = "PII " if grant.resource in matrix.pii_resources else ""
        until = f" until {grant.expiry}" if grant.expiry else ""
        members = ", ".join(grant.members)
        click.echo(
            f"  {pii}{grant.resource}: {grant.role} {grant.principal} ({members}){until}"
            f" - {grant.justification}"
        )
    click.echo(f"Expiring within {days} days:")
    for grant in result.expiring:
        click.echo(f"  {grant.expiry} {grant.resource}: {grant.role} {grant.principal}")
    if not result.expiring:
        click.echo("  none")
    for grant in result.expired:
        click.echo(
            f"Expired {grant.expiry}: {grant.resource} {grant.role} {grant.principal} "
            "(the next `minato access apply` revokes it)"
        )
