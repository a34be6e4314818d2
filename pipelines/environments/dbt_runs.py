"""The real dbt CLI, pointed at one change environment: its own profile, target folder and
logs, production's manifest as `--state`.

The environment's profile is the project's own output for the warehouse kind. On DuckDB its
path is the environment's file, which has production's database name: a `ref` deferred to
production's manifest reads the environment's own copy, and one that was not copied fails
instead of reading production. On BigQuery the profile is unchanged and dbt's process gets
MINATO_CHANGE_ENV_PREFIX, which the project's `generate_schema_name` puts before every model's
dataset; sources keep production's datasets and are read there.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from assets.dbt_models.project import dbt_executable
from pipelines.environments.layout import ChangeEnvironmentError, EnvironmentPaths, Record

PROFILE_TARGET = "env"


class DbtEnvironment:
    """dbt commands for one environment of one project."""

    def __init__(self, project_dir: Path, paths: EnvironmentPaths, record: Record) -> None:
        self.project_dir = project_dir
        self.paths = paths
        self.record = record

    def write_profile(self) -> None:
        project = yaml.safe_load((self.project_dir / "dbt_project.yml").read_text())
        profiles = yaml.safe_load((self.project_dir / "profiles.yml").read_text())
        output = dict(profiles[project["profile"]]["outputs"][self.record.warehouse])
        if self.record.warehouse == "duckdb":
            output["path"] = self.record.duckdb_file
        profile = {project["profile"]: {"target": PROFILE_TARGET, "outputs": {"env": output}}}
        self.paths.root.mkdir(parents=True, exist_ok=True)
        (self.paths.root / "profiles.yml").write_text(yaml.safe_dump(profile, sort_keys=False))

    def _env(self) -> dict[str, str]:
        # dbt renders names as in the environment cloned from (its dataset prefix on BigQuery).
        env = {**os.environ, "DO_NOT_TRACK": "1", "MINATO_ENV": self.record.source}
        if self.record.warehouse == "bigquery":
            env["MINATO_CHANGE_ENV_PREFIX"] = self.record.prefix
        return env

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """One dbt command; a failure raises with dbt's own output."""
        argv = [
            dbt_executable(),
            command,
            "--project-dir", str(self.project_dir),
            "--profiles-dir", str(self.paths.root),
            "--target", PROFILE_TARGET,
            "--target-path", str(self.paths.target_dir),
            "--log-path", str(self.paths.root / "logs"),
            *args,
        ]  # fmt: skip
        done = subprocess.run(
            argv, cwd=self.project_dir, env=self._env(), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ChangeEnvironmentError(
                f"dbt {command} failed in environment {self.paths.name!r} "
                f"(exit {done.returncode}):\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
            )
        return done

    def modified_and_descendants(self) -> list[str]:
        """`state:modified+` against production's manifest: the unique ids `build` builds
        (models, seeds and snapshots; their tests run with them)."""
        done = self.run(
            "ls",
            "--select", "state:modified+",
            "--state", str(self.paths.state_dir),
            "--resource-type", "model", "seed", "snapshot",
            "--output", "json",
            "--output-keys", "unique_id",
            "--quiet",
        )  # fmt: skip
        ids = [json.loads(line)["unique_id"] for line in done.stdout.splitlines() if line.strip()]
        return sorted(ids)

    def manifest(self) -> dict:
        """The environment's manifest, written by the last command."""
        return json.loads((self.paths.target_dir / "manifest.json").read_text())


def production_manifest(paths: EnvironmentPaths) -> dict:
    return json.loads((paths.state_dir / "manifest.json").read_text())


def production_database(paths: EnvironmentPaths) -> str:
    """The database name in production's manifest (DuckDB: its file's stem)."""
    names = {
        node["database"]
        for node in production_manifest(paths)["nodes"].values()
        if node.get("database")
    }
    if len(names) != 1:
        raise ChangeEnvironmentError(
            f"production manifest names {len(names)} databases ({sorted(names)}): expected one"
        )
    [name] = names
    return name
