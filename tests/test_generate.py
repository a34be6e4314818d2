"""The generators: golden files, --check, every metadata error, and the generated models built by
real dbt on DuckDB (cleansing, secret and a partner mart, incremental included).

Golden files are regenerated with the CLI when a template changes on purpose, e.g.
`minato generate --metadata tests/fixtures/generate/metadata --project
tests/fixtures/generate/golden cleansing` (and `partner --company 7`, `source
metadata/examples/request_helpdesk.csv`); review the diff.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.generate import cleansing, files, partners, source_requests
from pipelines.generate.cleansing import _row_texts
from pipelines.generate.csvfiles import MetadataError
from resources.settings import REPO_ROOT
from tests.dbt_projects import project_with

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "generate"
METADATA = FIXTURES / "metadata"
GOLDEN = FIXTURES / "golden"
EXAMPLE_FORM = REPO_ROOT / "metadata" / "examples" / "request_helpdesk.csv"


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_golden_cleansing() -> None:
    produced = cleansing.render(METADATA)
    assert files.differences(GOLDEN, produced, cleansing.OUTPUT_DIRS) == []
    assert produced == cleansing.render(METADATA)  # deterministic


def test_golden_partner() -> None:
    produced = partners.render(METADATA, "7")
    assert files.differences(GOLDEN, produced, [partners.OUTPUT_ROOT]) == []


def test_golden_source_request() -> None:
    produced = source_requests.render([EXAMPLE_FORM], REPO_ROOT)
    assert files.differences(GOLDEN, produced, source_requests.OUTPUT_DIRS) == []


def test_repository_generated_files_are_current() -> None:
    """CI's guard: the committed dbt models are exactly what the committed metadata gives."""
    code, output = _cli("generate", "--check")
    assert code == 0, output


def test_check_detects_stale_edited_and_orphaned_files(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(GOLDEN, project)
    args = ("generate", "--metadata", str(METADATA), "--project", str(project))
    assert _cli(*args, "cleansing", "--check")[0] == 0

    model = project / "models/warehouse/cleansing/cleansing_events.sql"
    model.write_text(model.read_text().replace("desc", "asc"))
    orphan = project / "models/warehouse/cleansing/cleansing_gone.sql"
    orphan.write_text(cleansing.render(METADATA)["models/warehouse/cleansing/cleansing_events.sql"])
    (project / "models/warehouse/cleansing/cleansing_accounts.yml").unlink()
    handwritten = project / "models/warehouse/cleansing/notes.sql"
    handwritten.write_text("select 1\n")

    code, output = _cli(*args, "cleansing", "--check")
    assert code == 1
    assert "differs from its inputs (stale or edited by hand): " in output
    assert "models/warehouse/cleansing/cleansing_events.sql" in output
    assert "no longer generated (stale): models/warehouse/cleansing/cleansing_gone.sql" in output
    assert "missing: models/warehouse/cleansing/cleansing_accounts.yml" in output
    assert "notes.sql" not in output  # not generated: not the generator's business

    assert _cli(*args, "cleansing")[0] == 0
    assert not orphan.exists() and handwritten.exists()
    assert _cli(*args, "cleansing", "--check")[0] == 0

    # A metadata change makes the committed output stale.
    metadata = tmp_path / "metadata"
    shutil.copytree(METADATA, metadata)
    with (metadata / "casting.csv").open("a") as f:
        f.write("accounts,plan,trim,,,\n")
    code, output = _cli(
        "generate", "--metadata", str(metadata), "--project", str(project), "--check", "cleansing"
    )
    assert code == 1 and "cleansing_accounts.sql" in output


def _metadata_with(tmp_path: Path, file: str, line: str, *, replace: str | None = None) -> Path:
    metadata = tmp_path / "metadata"
    shutil.copytree(METADATA, metadata)
    path = metadata / file
    text = path.read_text()
    path.write_text(text.replace(replace, line) if replace else text + line + "\n")
    return metadata


@pytest.mark.parametrize(
    ("file", "line", "replace", "expected"),
    [
        (
            "masking.csv",
            "events,user_name;drop table x,drop,",
            None,
            "metadata/masking.csv:5:2: invalid column 'user_name;drop table x': "
            "must match ^[A-Za-z_][A-Za-z0-9_]*$",
        ),
        (
            "casting.csv",
            "events,happend_at,datetime,,,",
            None,
            "metadata/casting.csv:10:2: unknown column 'happend_at' of table 'events' "
            "(not in metadata/columns.csv)",
        ),
        (
            "dedupe.csv",
            "evnts,_loaded_at desc",
            None,
            "metadata/dedupe.csv:3:1: unknown table 'evnts' (not in metadata/columns.csv)",
        ),
        (
            "masking.csv",
            "events,user_email,drop,",
            None,
            "metadata/masking.csv:5:2: duplicate rule for events.user_email (first at line 2)",
        ),
        (
            "tables.csv",
            "events,lake,,",
            "events,lake,Asia/Tokyo,",
            "metadata/tables.csv:3:3: missing timezone for table 'events': column 'happened_at' "
            "is cast to datetime (metadata/casting.csv:8:3)",
        ),
        (
            "tables.csv",
            "events,lake,Asia/Tokio,",
            "events,lake,Asia/Tokyo,",
            "metadata/tables.csv:3:3: timezone 'Asia/Tokio' is neither a column of the table nor "
            "a zone name (e.g. Asia/Tokyo)",
        ),
        (
            "casting.csv",
            "events,kind,uppercase,,,",
            'events,kind,trim,event_kind,,"view, buy"',
            "metadata/casting.csv:6:3: unknown cast 'uppercase' (one of keep, trim, "
            "empty_as_null, bigint, float, date, amount, datetime)",
        ),
        (
            "partitioning.csv",
            "accounts,plan,month,,no",
            "accounts,signup_day,month,client_id,no",
            "metadata/partitioning.csv:2:2: partition column 'plan' must be a DATE: cast it with "
            "`date` in casting.csv",
        ),
        (
            "dedupe.csv",
            "events,_loaded_at desc",
            'events,"_business_day, _loaded_at desc"',
            "metadata/dedupe.csv:2:2: an incremental model keeps each version at its earliest "
            "day: order_by must start with _business_day",
        ),
    ],
)
def test_metadata_errors_name_file_line_and_column(
    tmp_path: Path, file: str, line: str, replace: str | None, expected: str
) -> None:
    metadata = _metadata_with(tmp_path, file, line, replace=replace)
    with pytest.raises(MetadataError) as error:
        cleansing.render(metadata)
    assert expected in error.value.problems
    # The CLI prints the same message and fails.
    code, output = _cli("generate", "--metadata", str(metadata), "cleansing", "--check")
    assert code == 1 and expected in output


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    metadata = _metadata_with(tmp_path, "masking.csv", "events,nope,drop,\nnope,x,drop,")
    with pytest.raises(MetadataError) as error:
        cleansing.render(metadata)
    assert len(error.value.problems) == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "v1,cleansing_secret_events,user_email",
            "metadata/partners/7/request.csv:10:2: cleansing_secret_events is in cleansing_secret "
            "(unmasked PII): a partner mart can never read it",
        ),
        (
            "v1,cleansing_events,user_key",
            "metadata/partners/7/request.csv:10:3: cleansing_events.user_key is PII "
            "(pseudonymised): it cannot leave the company",
        ),
        (
            "v3,cleansing_events,evnt_id",
            "metadata/partners/7/request.csv:10:3: unknown column 'evnt_id' of cleansing_events",
        ),
        (
            "version1,cleansing_events,event_id",
            "metadata/partners/7/request.csv:10:1: version must look like v1, v2, ..., not "
            "'version1'",
        ),
    ],
)
def test_partner_request_errors(tmp_path: Path, line: str, expected: str) -> None:
    metadata = _metadata_with(tmp_path, "partners/7/request.csv", line)
    with pytest.raises(MetadataError) as error:
        partners.render(metadata, "7")
    assert expected in error.value.problems


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "company_id: 7\nname: acme\nfiltr_column: client_id\n",
            "metadata/partners/7/config.yml:3: key 'filtr_column': unknown key; allowed: "
            "company_id, name, description, filter_column, sharing",
        ),
        ("company_id: 8\nname: acme\nfilter_column: client_id\n", "config.yml:1: key 'company_id'"),
        ("company_id: '7'\nname: acme\nfilter_column: client_id\n", "key 'company_id'"),
        ("company_id: 7\nname: ac-me\nfilter_column: client_id\n", "config.yml:2: key 'name'"),
        ("company_id: 7\nname: acme\nfilter_column: shop\n", "config.yml:3: filter_column 'shop'"),
    ],
)
def test_partner_config_errors_name_file_line_and_key(
    tmp_path: Path, config: str, expected: str
) -> None:
    """A typo in the partner's config is an error, never a silently ignored key."""
    metadata = tmp_path / "metadata"
    shutil.copytree(METADATA, metadata)
    (metadata / "partners" / "7" / "config.yml").write_text(config)
    with pytest.raises(MetadataError) as error:
        partners.render(metadata, "7")
    assert any(expected in problem for problem in error.value.problems), error.value.problems


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("cs-team@example.jp,24h", "cs-team@example.jp,daily"),
            "request_helpdesk.csv:2:7: freshness must look like 30m, 24h or 2d, not 'daily'",
        ),
        (
            ("pii,,", "secret,,"),
            "request_helpdesk.csv:5:5: sensitivity must be one of public, internal, "
            "confidential, pii",
        ),
        (
            ("helpdesk,tickets,status,", "helpdesk,tickets,ticket_id,"),
            "request_helpdesk.csv:7:3: duplicate row for helpdesk.tickets.ticket_id (first at "
            "request_helpdesk.csv:3:1)",
        ),
        (
            ("helpdesk,tickets,subject,", "helpdesk,tickets,sub ject,"),
            "request_helpdesk.csv:6:3: invalid column 'sub ject': must match "
            "^[A-Za-z_][A-Za-z0-9_]*$",
        ),
    ],
)
def test_request_form_errors(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    form = tmp_path / "request_helpdesk.csv"
    form.write_text(EXAMPLE_FORM.read_text().replace(*edit, 1))
    with pytest.raises(MetadataError) as error:
        source_requests.render([form], tmp_path)
    assert expected in error.value.problems


# -- dbt build of generated models on DuckDB ------------------------------------------------

_LAKE = """
create schema lake;
create table lake.accounts as select * from (values
    ('a1', '7', 'gold', '2026-01-05'), ('a2', '8', 'free', '2026-02-01')
) t(account_id, client_id, plan, signup_day);
create table lake.events as select * from (values
    ('1', '7', 'Mia@Example.jp', 'Mia', '10.0.0.1', ' view ', '1,200', '2026-01-05 23:30:00',
     date '2026-01-05', timestamptz '2026-01-06 00:00:00+00'),
    ('1', '7', 'Mia@Example.jp', 'Mia', '10.0.0.1', ' view ', '1,300', '2026-01-05 23:30:00',
     date '2026-01-05', timestamptz '2026-01-06 01:00:00+00'),
    ('2', '7', null, null, null, 'buy', '500', '2026-01-06 08:00:00',
     date '2026-01-06', timestamptz '2026-01-06 01:00:00+00'),
    ('3', '8', 'other@example.jp', 'Other', '10.0.0.9', 'buy', '900', '2026-01-06 09:00:00',
     date '2026-01-06', timestamptz '2026-01-06 01:00:00+00')
) t(event_id, client_id, user_email, user_name, ip_address, kind, amount, happened_at,
    _business_day, _loaded_at);
"""


def test_generated_models_build_on_duckdb(tmp_path: Path) -> None:
    """Real dbt: cleansing, cleansing_secret (incremental) and partner marts build, tests pass,
    and the partner sees only its rows and no PII."""
    project = tmp_path / "dbt"
    project_with(project, {**cleansing.render(METADATA), **partners.render(METADATA, "7")})
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute(_LAKE)

    def dbt(*args: str) -> None:
        env = {**os.environ, "MINATO_WAREHOUSE": "duckdb", "MINATO_DUCKDB_PATH": str(database)}
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("dbt")),
                *args,
                "--project-dir",
                str(project),
                "--profiles-dir",
                str(project),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=project,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-4000:]

    dbt("build")
    # A run with a window of business days (incremental on BigQuery, a table on DuckDB).
    dbt(
        "build",
        "--select",
        "cleansing_events",
        "--vars",
        json.dumps({"min_date": "2026-01-06", "max_date": "2026-01-06"}),
    )

    with duckdb.connect(str(database), read_only=True) as conn:

        def rows(sql: str) -> list[tuple]:
            return conn.execute(sql).fetchall()

        assert rows(
            "select event_id, amount_jpy, event_kind, ip_address, user_key is not null, "
            "strftime(happened_at, '%Y-%m-%d %H:%M') from cleansing.cleansing_events order by 1"
        ) == [
            (1, 1300, "view", None, True, "2026-01-05 23:30"),  # the last loaded copy
            (2, 500, "buy", None, False, "2026-01-06 08:00"),
            (3, 900, "buy", None, True, "2026-01-06 09:00"),
        ]
        columns = {r[0] for r in rows("describe cleansing.cleansing_events")}
        assert not {"user_email", "user_name"} & columns
        assert rows(
            "select user_email, user_name from cleansing_secret.cleansing_secret_events "
            "where event_id = 1"
        ) == [("Mia@Example.jp", "Mia")]
        # The partner's marts: company 7's rows only, only requested columns, no PII.
        v1 = rows("select * from public_7_acme.public_7_acme_events_v1 order by 1")
        assert v1 == [(1, 1300), (2, 500)]
        v2_columns = [r[0] for r in rows("describe public_7_acme.public_7_acme_events_v2")]
        assert v2_columns == ["event_id", "event_kind", "amount_jpy", "happened_at"]
        accounts = rows("select * from public_7_acme.public_7_acme_accounts_v2")
        assert accounts == [("a1", "gold")]


def test_no_mart_depends_on_cleansing_secret() -> None:
    """Over the repository's manifest: marts (partner marts included) never reach the secret."""
    from assets.dbt_models.project import dbt_project

    manifest = json.loads(dbt_project().manifest_path.read_text())
    parents = manifest["parent_map"]
    secret = {uid for uid, n in manifest["nodes"].items() if n["schema"] == "cleansing_secret"}
    marts = {
        uid
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["path"].startswith("marts/")
    }
    assert secret and any(".public_101_kazaneya_" in uid for uid in marts)
    for uid in marts:
        seen, stack = set(), [uid]
        while stack:
            for parent in parents.get(stack.pop(), []):
                assert parent not in secret, f"{uid} depends on {parent}"
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)


def test_tables_share_models_only_when_their_cells_are_equal() -> None:
    """Tables are grouped by the text of their rule cells: a cell holding the separators of
    that text cannot make two different rows look equal."""
    # Two rows of one file: joined as they are, both would read "a|b|c|".
    one, other = _row_texts([pa.array(["a\x1fb", "a"]), pa.array(["c", "b\x1fc"])]).to_pylist()
    assert one != other
    # Escaped, a backslash is escaped too.
    one, other = _row_texts([pa.array(["a\\u", "a\x1f"])]).to_pylist()
    assert one != other


def test_keyword_column_names_are_quoted_through_real_dbt(tmp_path: Path) -> None:
    """A client table with columns `order` and `select` (SQL keywords in DuckDB and BigQuery):
    cast, renamed, kept, deduplicated and tested, the generated models build on DuckDB."""
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    csvs = {
        "tables.csv": "table,source,timezone,key,description\n"
        'picks,lake,,"order",Picks whose columns are SQL keywords.\n',
        "columns.csv": "table,column,source_type,nullable,ordinal\n"
        "picks,order,VARCHAR,NO,1\npicks,select,VARCHAR,YES,2\n"
        "picks,from,VARCHAR,YES,3\npicks,_loaded_at,TIMESTAMP,NO,4\n",
        "casting.csv": "table,column,cast,output_name,not_null,accepted_values\n"
        "picks,order,bigint,,yes,\npicks,select,amount,,,\npicks,from,trim,where,,\n",
        "dedupe.csv": "table,order_by\npicks,_loaded_at desc\n",
        "masking.csv": "table,column,method,output_name\n",
        "partitioning.csv": "table,column,granularity,cluster_by,incremental\n",
    }
    for name, text in csvs.items():
        (metadata / name).write_text(text)
    rendered = cleansing.render(metadata)
    sql = next(text for path, text in rendered.items() if path.endswith("cleansing_picks.sql"))
    assert "cast({{ adapter.quote('order') }} as {{ dbt.type_bigint() }})" in sql
    assert "{{ parse_amount(adapter.quote('select')) }} as {{ adapter.quote('select') }}" in sql
    assert "trim({{ adapter.quote('from') }}) as {{ adapter.quote('where') }}" in sql

    project = tmp_path / "dbt"
    project_with(project, rendered)
    (project / "models" / "lake.yml").write_text(
        "version: 2\nsources:\n  - name: lake\n    schema: lake\n    tables: [{name: picks}]\n"
    )
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute(
            "create schema lake; create table lake.picks as select * from (values "
            "('1', '1,200', ' a ', timestamptz '2026-01-06 00:00:00+00'), "
            "('1', '1,300', ' b ', timestamptz '2026-01-06 01:00:00+00'), "
            "('2', '500', null, timestamptz '2026-01-06 01:00:00+00')"
            ') t("order", "select", "from", _loaded_at)'
        )
    dbt = [str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(project)]
    result = subprocess.run(
        [*dbt, "--profiles-dir", str(project)],
        capture_output=True,
        text=True,
        env={**os.environ, "MINATO_WAREHOUSE": "duckdb", "MINATO_DUCKDB_PATH": str(database)},
        cwd=project,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.execute(
            'select "order", "select", "where" from cleansing.cleansing_picks order by 1'
        ).fetchall()
    assert rows == [(1, 1300, "b"), (2, 500, None)]  # the last loaded copy of order 1
