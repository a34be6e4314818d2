"""`minato env create|build|diff|drop` on DuckDB with the real dbt CLI, once for the module.

Production: a small project built by dbt into its own file. Then production moves on (day 4
lands, the lake forgets day 1, cleansing is refreshed; the fact's day-4 run is still pending)
and a pull request changes the incremental fact model. The change environment must build only
the fact and its descendant, keep the fact's history, report the change with exact counts,
and leave production's file and every folder as they were.
"""

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import sqlglot
from click.testing import CliRunner

from pipelines.cli import main
from resources.warehouse import BigQueryWarehouse
from tests.dbt_projects import project_with
from tests.test_bigquery_warehouse import FakeBigQueryClient

DAYS = [dt.date(2026, 11, d) for d in (1, 2, 3, 4)]
EVENTS_PER_DAY = {DAYS[0]: 5, DAYS[1]: 6, DAYS[2]: 7, DAYS[3]: 4}
WINDOW = "{min_date: '2026-11-03', max_date: '2026-11-04'}"

FACT = """{{ config(materialized='incremental', incremental_strategy='delete+insert',
    unique_key='business_day', on_schema_change='append_new_columns') }}
select event_id, account_id, business_day, AMOUNT as amount
from {{ ref('cleansing_events') }}
{% if is_incremental() %}where {{ business_day_window('business_day') }}{% endif %}
"""
KEYED = """version: 2
models:
  - name: {name}
    columns:
      - name: event_id
        data_tests: [unique, not_null]
"""
FILES = {
    "models/warehouse/cleansing/cleansing_events.sql": (
        "select event_id, account_id, business_day, amount from {{ source('lake', 'events') }}"
    ),
    "models/warehouse/cleansing/cleansing_events.yml": KEYED.format(name="cleansing_events"),
    "models/warehouse/cleansing/cleansing_accounts.sql": (
        "select account_id, name from {{ source('lake', 'accounts') }}"
    ),
    "models/warehouse/fact/fact_events.sql": FACT.replace("AMOUNT", "amount"),
    "models/warehouse/fact/fact_events.yml": KEYED.format(name="fact_events"),
    "models/marts/widetable/widetable_events.sql": (
        "select f.event_id, a.name, f.business_day, f.amount "
        "from {{ ref('fact_events') }} f join {{ ref('cleansing_accounts') }} a using (account_id)"
    ),
    "models/marts/widetable/widetable_events.yml": KEYED.format(name="widetable_events"),
    "models/marts/role_sales/role_sales_by_account.sql": (
        "select account_id, sum(amount) as amount from {{ ref('cleansing_events') }} group by 1"
    ),
}
FACT_ID = "model.minato.fact_events"
WIDE_ID = "model.minato.widetable_events"


def _events(day: dt.date, first_id: int) -> list[tuple]:
    return [
        (first_id + i, 1 + (first_id + i) % 3, day, (first_id + i) * 100)
        for i in range(EVENTS_PER_DAY[day])
    ]


def _dbt(project: Path, *args: str) -> None:
    dbt = str(Path(sys.executable).with_name("dbt"))
    done = subprocess.run(
        [dbt, *args, "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _rows(path: Path, table: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, ["env", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("change_env")
    data, project, state = tmp / "data", tmp / "project", tmp / "production_state"
    production = data / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINATO_DATA_DIR", str(data))
        mp.setenv("MINATO_DUCKDB_PATH", str(production))
        mp.setenv("MINATO_WAREHOUSE", "duckdb")
        project_with(project, FILES)
        data.mkdir()
        events = _events(DAYS[0], 1) + _events(DAYS[1], 6) + _events(DAYS[2], 12)
        with duckdb.connect(str(production)) as conn:
            conn.execute("CREATE SCHEMA lake")
            conn.execute("CREATE TABLE lake.accounts (account_id INT, name VARCHAR)")
            conn.execute("INSERT INTO lake.accounts VALUES (1, 'Aoi'), (2, 'Ren'), (3, 'Sora')")
            conn.execute(
                "CREATE TABLE lake.events "
                "(event_id INT, account_id INT, business_day DATE, amount INT)"
            )
            conn.executemany("INSERT INTO lake.events VALUES (?, ?, ?, ?)", events)
        _dbt(project, "build")
        state.mkdir()
        shutil.copy(project / "target" / "manifest.json", state / "manifest.json")
        # Production moves on: day 4 lands, the lake keeps three days, cleansing is refreshed.
        with duckdb.connect(str(production)) as conn:
            conn.executemany("INSERT INTO lake.events VALUES (?, ?, ?, ?)", _events(DAYS[3], 19))
            conn.execute("DELETE FROM lake.events WHERE business_day = ?", [DAYS[0]])
        _dbt(project, "build", "--select", "cleansing_events")
        shutil.rmtree(project / "target")
        shutil.rmtree(project / "logs", ignore_errors=True)
        # The pull request: the fact's amount in tenths of a yen... i.e. times ten.
        (project / "models/warehouse/fact/fact_events.sql").write_text(
            FACT.replace("AMOUNT", "amount * 10")
        )

        before = {
            "production": _sha256(production),
            "data": _listing(data),
            "project": _listing(project),
        }
        out = {"before": before, "production_file": production}
        out["production_fact"] = _rows(production, "fact.fact_events")
        out["production_cleansing"] = _rows(production, "cleansing.cleansing_events")
        out["create"] = _cli(
            "create", "pr-123", "--state", str(state), "--project-dir", str(project)
        )
        env_file = data / "envs" / "pr-123" / "warehouse.duckdb"
        out["tables_after_create"] = _tables(env_file)
        out["build"] = _cli("build", "pr-123", "--vars", WINDOW, "--project-dir", str(project))
        out["record"] = json.loads((data / "envs" / "pr-123" / "environment.json").read_text())
        out["tables_after_build"] = _tables(env_file)
        out["env_fact"] = _rows(env_file, "fact.fact_events")
        out["env_wide"] = _rows(env_file, "widetable.widetable_events")
        report = tmp / "report.md"
        _cli("diff", "pr-123", "--out", str(report))
        out["report"] = report.read_text()
        out["report_stdout"] = _cli("diff", "pr-123")
        out["drop"] = _cli("drop", "pr-123")
        out["drop_again"] = _cli("drop", "pr-123")
        report.unlink()
        out["after"] = {
            "production": _sha256(production),
            "data": _listing(data),
            "project": _listing(project),
        }
    return out


def _tables(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


def test_only_modified_models_and_descendants_are_built(cycle: dict) -> None:
    assert cycle["record"]["built"] == [FACT_ID, WIDE_ID]
    assert cycle["record"]["cloned"] == [
        "model.minato.cleansing_accounts",
        "model.minato.cleansing_events",
        FACT_ID,
    ]
    assert cycle["tables_after_create"] == [
        "cleansing.cleansing_accounts",
        "cleansing.cleansing_events",
        "fact.fact_events",
    ]
    # role_sales_by_account reads only cleansing: not built, not cloned.
    assert cycle["tables_after_build"] == [
        *cycle["tables_after_create"],
        "widetable.widetable_events",
    ]
    assert "2 model(s) to build, 3 table(s) cloned from prod" in cycle["create"]


def test_the_incremental_model_is_production_plus_its_delta(cycle: dict) -> None:
    """Days outside the window are production's rows (day 1 is no longer in the lake: a model
    rebuilt from scratch would have lost it); the window is the changed logic on the lake."""
    kept = [row for row in cycle["production_fact"] if row[2] not in (DAYS[2], DAYS[3])]
    delta = [
        (event_id, account, day, amount * 10)
        for event_id, account, day, amount in cycle["production_cleansing"]
        if day in (DAYS[2], DAYS[3])
    ]
    assert [row[2] for row in kept].count(DAYS[0]) == EVENTS_PER_DAY[DAYS[0]]
    assert sorted(kept + delta) == cycle["env_fact"]
    assert len(cycle["env_wide"]) == len(cycle["env_fact"])


def test_the_injected_change_is_reported_with_its_exact_row_counts(cycle: dict) -> None:
    report = cycle["report"]
    changed, added = EVENTS_PER_DAY[DAYS[2]], EVENTS_PER_DAY[DAYS[3]]
    rows_before = sum(EVENTS_PER_DAY[d] for d in DAYS[:3])
    for table in ("fact.fact_events", "widetable.widetable_events"):
        rows = f"{rows_before} → {rows_before + added}"
        assert f"| `{table}` | {rows} | {added} | 0 | {changed} | same |" in report
    assert f"  - `amount` changed in {changed} rows" in report
    # Samples in key order: day 3's first event (id 12) was 1,200 and is now 12,000.
    assert "| 12 | `amount` | 1200 | 12000 |" in report
    assert "Sample keys added (event_id): (19); (20); (21); (22)" in report
    assert "2 model(s) built from the change and its descendants, 2 differ from prod" in report
    assert report == cycle["report_stdout"]  # deterministic, and --out writes the same


def test_production_is_untouched_and_drop_leaves_nothing(cycle: dict) -> None:
    assert cycle["after"] == cycle["before"]
    assert "dropped" in cycle["drop"]
    assert "nothing to drop" in cycle["drop_again"]


def test_bigquery_clones_the_parents_and_drops_its_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BigQuery cannot run here: the real dbt CLI parses and selects for the BigQuery target
    (offline), and the statements sent to a fake client are asserted exactly."""
    client = FakeBigQueryClient()
    monkeypatch.setattr(BigQueryWarehouse, "_client", lambda self: client)
    for name, value in {
        "MINATO_DATA_DIR": str(tmp_path / "data"),
        "MINATO_WAREHOUSE": "bigquery",
        "MINATO_BIGQUERY_PROJECT": "acme-data",
        "MINATO_ENV": "prod",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("MINATO_BIGQUERY_DATASET_PREFIX", "MINATO_CHANGE_ENV_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "project"
    project_with(project, FILES)
    _dbt(project, "parse")  # production's manifest
    # A developer's shell (dev: datasets `dev_ci_`); `--from prod` renders production's names.
    monkeypatch.setenv("MINATO_ENV", "dev")
    monkeypatch.setenv("USER", "ci")
    (project / "models/warehouse/fact/fact_events.sql").write_text(
        FACT.replace("AMOUNT", "amount * 10")
    )

    _cli("create", "pr-7", "--state", str(project / "target"), "--project-dir", str(project))
    created = [query["sql"] for query in client.queries]
    client.queries.clear()
    _cli("drop", "pr-7")

    # The sources stay in production's `lake` and are read there: neither modified nor cloned.
    assert created == [
        "CREATE SCHEMA IF NOT EXISTS `acme-data.pr_7_cleansing` "
        "OPTIONS (location = 'asia-northeast1')",
        "CREATE SCHEMA IF NOT EXISTS `acme-data.pr_7_fact` OPTIONS (location = 'asia-northeast1')",
        "CREATE OR REPLACE TABLE `acme-data.pr_7_cleansing.cleansing_accounts` "
        "CLONE `acme-data.cleansing.cleansing_accounts`",
        "CREATE OR REPLACE TABLE `acme-data.pr_7_cleansing.cleansing_events` "
        "CLONE `acme-data.cleansing.cleansing_events`",
        "CREATE OR REPLACE TABLE `acme-data.pr_7_fact.fact_events` "
        "CLONE `acme-data.fact.fact_events`",
    ]
    for statement in created:  # GoogleSQL, as far as sqlglot knows it
        assert sqlglot.parse_one(statement, read="bigquery").sql("bigquery")
    assert [query["sql"] for query in client.queries] == [
        "DROP SCHEMA IF EXISTS `acme-data.pr_7_cleansing` CASCADE",
        "DROP SCHEMA IF EXISTS `acme-data.pr_7_fact` CASCADE",
    ]
    assert not (tmp_path / "data" / "envs").exists()


def test_bad_input_is_refused_clearly_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("MINATO_DATA_DIR", str(data))
    monkeypatch.setenv("MINATO_WAREHOUSE", "duckdb")
    monkeypatch.setenv("MINATO_DUCKDB_PATH", str(data / "missing.duckdb"))
    empty_state = tmp_path / "state"
    empty_state.mkdir()

    def refused(*args: str) -> str:
        result = CliRunner().invoke(main, ["env", *args])
        assert result.exit_code != 0
        return result.output.strip().splitlines()[-1]

    assert refused("create", "Prod!", "--state", str(empty_state)) == (
        "Error: environment name 'Prod!': use 1-40 lower-case letters, digits, '-' or '_', "
        "starting with a letter, and not one of dev, staging, prod"
    )
    assert refused("create", "prod", "--state", str(empty_state)).startswith(
        "Error: environment name 'prod'"
    )
    assert refused("create", "pr-1", "--state", str(empty_state)) == (
        f"Error: production manifest not found at {empty_state / 'manifest.json'}: pass the "
        "manifest.json production was built from (or its folder) with --state"
    )
    (empty_state / "manifest.json").write_text("{}")
    assert refused("create", "pr-1", "--state", str(empty_state)) == (
        f"Error: production DuckDB file not found: {data / 'missing.duckdb'}"
    )
    assert refused("build", "pr-404") == (
        f"Error: environment 'pr-404' does not exist ({data / 'envs/pr-404/environment.json'} "
        "not found): run `minato env create pr-404` first"
    )
    assert _cli("drop", "pr-404") == "environment pr-404: nothing to drop\n"
    assert not data.exists()
