"""The data diff of `minato env diff` on two DuckDB files, without dbt: schema changes, a
retyped column, keyed and unkeyed rows, a new model, PII never sampled, and the Markdown."""

from pathlib import Path

import duckdb

from pipelines.environments.data_diff import diff_environment
from pipelines.environments.report import markdown


def _model(name: str, **extra) -> dict:
    return {
        "resource_type": "model",
        "database": "warehouse",
        "schema": "s",
        "alias": name,
        "name": name,
        "config": {},
        "columns": {},
        **extra,
    }


UNIQUE_ID = {
    "resource_type": "test",
    "unique_id": "test.p.unique_keyed_id",
    "attached_node": "model.p.keyed",
    "column_name": "id",
    "test_metadata": {"name": "unique", "kwargs": {}},
}
PRODUCTION_MANIFEST = {"nodes": {"model.p.keyed": _model("keyed"), "model.p.bag": _model("bag")}}
ENVIRONMENT_MANIFEST = {
    "nodes": {
        "model.p.keyed": _model("keyed", columns={"b": {"meta": {"pii": "direct"}}}),
        "model.p.bag": _model("bag"),
        "model.p.fresh": _model("fresh"),
        "test.p.unique_keyed_id": UNIQUE_ID,
    }
}


def _files(tmp_path: Path) -> tuple[Path, Path]:
    production = tmp_path / "production" / "warehouse.duckdb"
    environment = tmp_path / "env" / "warehouse.duckdb"
    for path, statements in (
        (
            production,
            [
                "CREATE TABLE s.keyed (id INT, a INT, b INT, dropped VARCHAR)",
                "INSERT INTO s.keyed VALUES (1, 5, 10, 'd'), (2, 6, 20, 'd'), (3, 7, 30, 'd')",
                "CREATE TABLE s.bag (x INT, y INT)",
                "INSERT INTO s.bag VALUES (1, 1), (1, 1), (2, 2)",
            ],
        ),
        (
            environment,
            [
                "CREATE TABLE s.keyed (id INT, a VARCHAR, b INT, added VARCHAR)",
                "INSERT INTO s.keyed VALUES (1, '5', 10, 'n'), (2, '6', 99, 'n')",
                "INSERT INTO s.keyed VALUES (4, '8', 40, 'n')",
                "CREATE TABLE s.bag (x INT, y INT)",
                "INSERT INTO s.bag VALUES (1, 1), (3, 3)",
                "CREATE TABLE s.fresh AS SELECT range AS n FROM range(2)",
            ],
        ),
    ):
        path.parent.mkdir()
        with duckdb.connect(str(path)) as conn:
            conn.execute("CREATE SCHEMA s")
            for statement in statements:
                conn.execute(statement)
    return production, environment


def test_schema_rows_and_samples_are_diffed_and_pii_is_hidden(tmp_path: Path) -> None:
    production, environment = _files(tmp_path)
    built = ["model.p.bag", "model.p.fresh", "model.p.keyed"]
    keyed, bag, fresh = (
        {d.unique_id: d for d in diff_environment(
            str(environment), str(production), built, ENVIRONMENT_MANIFEST, PRODUCTION_MANIFEST
        )}[uid]
        for uid in ("model.p.keyed", "model.p.bag", "model.p.fresh")
    )  # fmt: skip

    assert keyed.key == ["id"]
    assert keyed.columns_added == [("added", "VARCHAR")]
    assert keyed.columns_removed == [("dropped", "VARCHAR")]
    assert keyed.types_changed == [("a", "INTEGER", "VARCHAR")]  # compared as text: equal
    assert (keyed.added, keyed.removed, keyed.changed) == (1, 1, 1)
    assert keyed.changed_by_column == {"b": 1}
    assert keyed.samples_added == [(4,)] and keyed.samples_removed == [(3,)]
    assert keyed.samples_changed == [((2,), "b", "(PII)", "(PII)")]
    assert (bag.key, bag.added, bag.removed, bag.changed) == ([], 1, 2, None)
    assert fresh.new and fresh.rows_environment == 2

    report = markdown("pr-9", "prod", 4, [bag, fresh, keyed])
    assert report.splitlines()[:8] == [
        "## Data diff: `pr-9` against `prod`",
        "",
        "3 model(s) built from the change and its descendants, 3 differ from prod; "
        "4 parent table(s) cloned.",
        "",
        "| model | rows | added | removed | changed | schema |",
        "|---|---|---|---|---|---|",
        "| `s.bag` | 3 → 2 | 1 | 2 | — | same |",
        "| `s.fresh` | new: 2 | — | — | — | new |",
    ]
    assert "| `s.keyed` | 3 → 3 | 1 | 1 | 1 | +added, −dropped, a: INTEGER→VARCHAR |" in report
    assert "| 2 | `b` | (PII) | (PII) |" in report
    assert "99" not in report  # the PII value itself


def test_no_change_is_a_short_report() -> None:
    assert markdown("pr-1", "prod", 0, []) == (
        "## Data diff: `pr-1` against `prod`\n\nNo dbt model changed: nothing was built or "
        "compared.\n"
    )
