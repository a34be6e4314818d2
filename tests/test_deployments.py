"""MINATO_ENV (dev | staging | prod) picks the dbt target, the BigQuery dataset prefix, the
Dagster instance file and the alert channel; dbt's Jinja gives the same datasets as Python."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from resources import settings
from resources.settings import REPO_ROOT, Deployment
from tests.dbt_projects import project_with

PROD_INSTANCE = REPO_ROOT / "deploy" / "dagster.prod.yaml"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"USER": "alice.smith"},
            ("dev", "duckdb", "dev_alice_smith_", REPO_ROOT / "dagster.yaml", "#data-alerts-dev"),
        ),
        (
            {"MINATO_ENV": "staging"},
            ("staging", "bigquery", "staging_", PROD_INSTANCE, "#data-alerts-staging"),
        ),
        ({"MINATO_ENV": "prod"}, ("prod", "bigquery", "", PROD_INSTANCE, "#data-alerts")),
    ],
)
def test_each_environment_sets_its_defaults(env: dict, expected: tuple) -> None:
    assert settings.deployment(env) == Deployment(*expected)


def test_set_variables_win_and_bad_ones_are_refused() -> None:
    overridden = settings.deployment(
        {
            "MINATO_ENV": "prod",
            "MINATO_WAREHOUSE": "duckdb",
            "MINATO_BIGQUERY_DATASET_PREFIX": "eu_",
            "MINATO_SLACK_CHANNEL": "#oncall",
        }
    )
    assert (overridden.dbt_target, overridden.dataset_prefix, overridden.alert_channel) == (
        "duckdb",
        "eu_",
        "#oncall",
    )
    with pytest.raises(ValueError, match="set MINATO_BIGQUERY_DATASET_PREFIX"):
        settings.dataset_prefix({"USER": "o'brien"})
    with pytest.raises(ValueError, match="MINATO_ENV='production'"):
        settings.deployment({"MINATO_ENV": "production"})


@pytest.mark.parametrize(
    "env",
    [
        {"MINATO_ENV": "dev", "USER": "Alice.Smith"},
        {"MINATO_ENV": "staging", "USER": "ci"},
        {"MINATO_ENV": "prod", "USER": "ci"},
        {"MINATO_ENV": "prod", "MINATO_BIGQUERY_DATASET_PREFIX": "eu_", "USER": "ci"},
    ],
)
def test_dbt_writes_and_reads_the_datasets_python_does(tmp_path: Path, env: dict) -> None:
    """The real dbt parse for the BigQuery target (offline): a model's dataset and the lake
    source's are the prefix Python computes (sources.yml and generate_schema_name.sql)."""
    project = tmp_path / "project"
    project_with(
        project,
        {
            "models/lake.yml": (REPO_ROOT / "dbt_project/models/lake/sources.yml").read_text(),
            "models/warehouse/cleansing/c.sql": "select * from {{ source('lake', 'orders') }}",
        },
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("MINATO_")}
    run_env = {**base, **env, "MINATO_WAREHOUSE": "bigquery", "DO_NOT_TRACK": "1"}
    run_env.pop("MINATO_CHANGE_ENV_PREFIX", None)
    dbt = str(Path(sys.executable).with_name("dbt"))
    done = subprocess.run(
        [dbt, "ls", "--project-dir", str(project), "--profiles-dir", str(project),
         "--output", "json", "--output-keys", "unique_id", "--quiet"],
        cwd=project, env=run_env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    prefix = settings.dataset_prefix(env)
    assert manifest["nodes"]["model.minato.c"]["schema"] == f"{prefix}cleansing"
    assert manifest["sources"]["source.minato.lake.orders"]["schema"] == f"{prefix}lake"


def test_minato_env_show_prints_what_the_environment_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MINATO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MINATO_ENV", "staging")
    result = CliRunner().invoke(main, ["env", "show"], catch_exceptions=False)
    assert result.output.splitlines() == [
        "MINATO_ENV        staging",
        "dbt target        bigquery",
        "dataset prefix    staging_",
        f"Dagster instance  {REPO_ROOT / 'deploy' / 'dagster.prod.yaml'} "
        "(as $DAGSTER_HOME/dagster.yaml)",
        "alert channel     #data-alerts-staging",
    ]
