"""`minato oncall status|rerun`: the failing asset partitions, and re-running exactly those."""

import datetime as dt
from zoneinfo import ZoneInfo

import click
import dagster as dg

from assets.constants import BUSINESS_TIMEZONE


@click.group()
def oncall() -> None:
    """On-call: what is failing (grouped by failure) and one command to recover."""


_days_option = click.option(
    "--days", default=7, show_default=True, help="Look at runs that failed in the last N days."
)


def _groups(instance: dg.DagsterInstance, days: int):
    from pipelines.oncall import failing_now

    return failing_now(instance, dt.datetime.now(dt.UTC), dt.timedelta(days=days))


@oncall.command("status")
@_days_option
def status(days: int) -> None:
    """Failing asset partitions, grouped by failure fingerprint, since when (JST)."""
    from pipelines.oncall import status_lines

    with dg.DagsterInstance.get() as instance:
        for line in status_lines(_groups(instance, days), ZoneInfo(BUSINESS_TIMEZONE)):
            click.echo(line)


@oncall.command("rerun")
@_days_option
def rerun(days: int) -> None:
    """Re-execute exactly the failing asset partitions, in the backfill lane."""
    from pipelines.definitions import defs
    from pipelines.oncall import rerun_failing

    with dg.DagsterInstance.get() as instance:
        groups = _groups(instance, days)
        if not groups:
            click.echo("nothing is failing")
            return
        reruns = rerun_failing(defs, instance, groups, echo=click.echo)
    failed = [r for r in reruns if not r.success]
    if failed:
        raise click.ClickException(
            f"{len(failed)} of {len(reruns)} re-run(s) failed: see `minato oncall status`"
        )
