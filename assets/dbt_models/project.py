"""The dbt project as Dagster sees it: paths, target, the CLI resource, and preparing the
manifest (a build step, never an import side effect).

`minato manifest` (`make manifest`) parses the project and caches the translated specs beside
the manifest; a deployment ships both. Under `dagster dev` the project is prepared again when a
dbt file is newer than the manifest, so model edits show up on reload.
"""

from __future__ import annotations

import fcntl
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


# What `dbt parse` reads: a change to any of these makes the manifest stale.
_PARSED_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")
_PARSED_FOLDERS = ("models", "macros", "snapshots", "seeds", "tests", "analyses")


@functools.cache
def dbt_project() -> DbtProject:
    """The project, parsed first under `dagster dev` when it changed (see the module doc).

    Every process `dagster dev` starts inherits its environment: the code server, each run
    worker and each step process. Preparing in all of them re-parsed the project for every step
    (~40 s each on 2 cores) and let one process read the manifest while another rewrote it. So
    the project is prepared only when it is stale, under a lock, and a process that waited finds
    it current."""
    project = _project()
    if project.preparer.using_dagster_dev():
        from assets.dbt_models.layers import prepare_stages

        target = Path(project.target_path)
        target.mkdir(parents=True, exist_ok=True)
        with (target / ".prepare.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if manifest_is_stale(project):
                prepare_stages(project)
    return project


def manifest_is_stale(project: DbtProject) -> bool:
    """Whether the manifest is missing or older than a file dbt parses."""
    manifest = Path(project.manifest_path)
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    root = Path(project.project_dir)
    files = [root / name for name in _PARSED_FILES]
    files += [f for folder in _PARSED_FOLDERS for f in (root / folder).rglob("*") if f.is_file()]
    return any(f.exists() and f.stat().st_mtime > built for f in files)


def require_manifest(project: DbtProject) -> Path:
    path = Path(project.manifest_path)
    if not path.exists():
        raise ManifestMissingError(
            f"dbt manifest not found at {path}: run `make manifest` (or `minato manifest`) to "
            "parse the dbt project before loading the code location"
        )
    return path
