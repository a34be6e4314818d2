"""The dbt project as Dagster sees it: paths, target, and a manifest prepared before load."""

import importlib.metadata
import os
import sys
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from resources.environment import REPO_ROOT, apply_embedded_defaults

apply_embedded_defaults()

minato_dbt_project = DbtProject(
    project_dir=REPO_ROOT / "dbt_project",
    # The dbt target has the warehouse kind's name (`duckdb` | `bigquery`).
    target=os.environ["MINATO_WAREHOUSE"],
)


def dbt_executable() -> str:
    """The dbt installed beside this interpreter, so an unactivated virtualenv works too."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


class MinatoDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, told the dbt version instead of asking for it.

    dagster-dbt runs `dbt --version` in a subprocess once per resource instance, i.e. once per
    step: 3.5 s each on a 2-core machine. The dbt we run is the dbt-core installed beside us, so
    its version is read from the package metadata.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))


def dbt_cli() -> DbtCliResource:
    return MinatoDbtCliResource(project_dir=minato_dbt_project, dbt_executable=dbt_executable())


def prepare_manifest() -> Path:
    """`dbt parse` into the project's target/, with the same environment runs will have.

    Runs copy target/partial_parse.msgpack; it is only reused when the profile renders the same
    values (e.g. the DuckDB path), so the manifest must be built with the run's environment.
    """
    dbt_cli().cli(["parse", "--quiet"], target_path=minato_dbt_project.target_path).wait()
    return minato_dbt_project.manifest_path


# `dagster dev` re-parses on every reload; elsewhere the manifest is built once (`make manifest`,
# or here on the first import in a fresh checkout), never at each run.
if minato_dbt_project.preparer.using_dagster_dev() or not minato_dbt_project.manifest_path.exists():
    prepare_manifest()
