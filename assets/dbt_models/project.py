"""The dbt project as Dagster sees it: paths, target, the CLI resource, and preparing the
manifest (a build step, never an import side effect).

`minato manifest` (`make manifest`) parses the project and caches the translated specs beside
the manifest; a deployment ships both. Under `dagster dev` the project is prepared again at
each load, as dagster-dbt's `prepare_if_dev()` does, so model edits show up on reload.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from resources import settings


class ManifestMissingError(FileNotFoundError):
    """The code location was loaded before the dbt project was parsed."""


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


def dbt_cli(project: DbtProject | None = None) -> DbtCliResource:
    return MinatoDbtCliResource(
        project_dir=project or dbt_project(), dbt_executable=dbt_executable()
    )


def parse_project(project: DbtProject) -> Path:
    """`dbt parse` into the project's target/; returns the manifest's path.

    The profile's defaults (profiles.yml) render the same values as the run's settings, so the
    runs reuse this parse (target/partial_parse.msgpack) instead of parsing from scratch.
    """
    dbt_cli(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project.manifest_path


def _project() -> DbtProject:
    # The dbt target has the warehouse kind's name (`duckdb` | `bigquery`).
    return DbtProject(project_dir=settings.DBT_PROJECT_DIR, target=settings.warehouse_kind())


@functools.cache
def dbt_project() -> DbtProject:
    """The project, parsed first when running under `dagster dev` (see the module doc)."""
    project = _project()
    if project.preparer.using_dagster_dev():
        from assets.dbt_models.layers import prepare_stages

        prepare_stages(project)
    return project


def require_manifest(project: DbtProject) -> Path:
    path = Path(project.manifest_path)
    if not path.exists():
        raise ManifestMissingError(
            f"dbt manifest not found at {path}: run `make manifest` (or `minato manifest`) to "
            "parse the dbt project before loading the code location"
        )
    return path
