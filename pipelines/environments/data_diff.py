"""Each built model compared with production, in SQL on DuckDB: schema, row counts, a profile
per column, and rows added, removed and changed by key, with samples.

The key is what the project already declares: a `unique_combination` test on the model, or
else a column's `unique` test. Without one, rows are compared as multisets (added and removed
only). Columns whose type changed are compared as text. Values of PII columns (`meta.pii`, or
a model with `meta.contains_pii`) are never sampled: the report goes into a pull request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import duckdb

from pipelines.environments.cloning import as_production, attach_production, duckdb_name
from pipelines.environments.selection import Relation, relation
from resources.warehouse.sql import quoted

SAMPLES = 5
_NO_MIN_MAX = ("STRUCT", "MAP", "UNION")


@dataclass(frozen=True)
class ColumnProfile:
    nulls: int
    distinct: int
    min: str | None
    max: str | None


@dataclass
class ModelDiff:
    unique_id: str
    table: str  # schema.name
    new: bool = False
    key: list[str] = field(default_factory=list)
    rows_production: int = 0
    rows_environment: int = 0
    columns_added: list[tuple[str, str]] = field(default_factory=list)
    columns_removed: list[tuple[str, str]] = field(default_factory=list)
    types_changed: list[tuple[str, str, str]] = field(default_factory=list)
    profiles: dict[str, tuple[ColumnProfile, ColumnProfile]] = field(default_factory=dict)
    added: int = 0
    removed: int = 0
    changed: int | None = None  # None: no key, rows cannot be paired
    changed_by_column: dict[str, int] = field(default_factory=dict)
    samples_added: list[tuple] = field(default_factory=list)
    samples_removed: list[tuple] = field(default_factory=list)
    samples_changed: list[tuple[tuple, str, str, str]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(
            self.new
            or self.columns_added
            or self.columns_removed
            or self.types_changed
            or self.added
            or self.removed
            or self.changed
            or self.rows_production != self.rows_environment
        )


def declared_key(manifest: dict, unique_id: str) -> list[str]:
    """The model's key from its tests: `unique_combination` first, else a `unique` column."""
    tests = [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and node.get("attached_node") == unique_id
        and node.get("test_metadata")
    ]
    for test in sorted(tests, key=lambda t: t["unique_id"]):
        if test["test_metadata"]["name"] == "unique_combination":
            return list(test["test_metadata"]["kwargs"]["columns"])
    for test in sorted(tests, key=lambda t: t["unique_id"]):
        if test["test_metadata"]["name"] == "unique" and test.get("column_name"):
            return [test["column_name"]]
    return []


def _pii_columns(node: dict) -> set[str]:
    if node.get("config", {}).get("meta", {}).get("contains_pii"):
        return {"*"}
    return {
        name.lower()
        for name, column in node.get("columns", {}).items()
        if (column.get("config", {}).get("meta") or column.get("meta") or {}).get("pii")
    }


def _columns(conn: duckdb.DuckDBPyConnection, table: Relation) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [table.database, table.schema, table.name],
    ).fetchall()
    return dict(rows)


def _profile(
    conn: duckdb.DuckDBPyConnection, table: Relation, columns: dict[str, str]
) -> dict[str, ColumnProfile]:
    parts = []
    for name, data_type in columns.items():
        column = quoted(name)
        parts += [f"count(*) - count({column})", f"count(DISTINCT {column})"]
        if data_type.startswith(_NO_MIN_MAX) or data_type.endswith("]"):
            parts += ["NULL", "NULL"]
        else:
            parts += [f"min({column})::VARCHAR", f"max({column})::VARCHAR"]
    if not parts:
        return {}
    row = conn.execute(f"SELECT {', '.join(parts)} FROM {duckdb_name(table)}").fetchone()
    return {name: ColumnProfile(*row[4 * i : 4 * i + 4]) for i, name in enumerate(columns)}


def _count(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    return conn.execute(sql).fetchone()[0]


def _text(value: object) -> str:
    return "NULL" if value is None else str(value)


def diff_model(
    conn: duckdb.DuckDBPyConnection,
    unique_id: str,
    environment_manifest: dict,
    production_manifest: dict,
) -> ModelDiff:
    node = environment_manifest["nodes"][unique_id]
    env_table = relation(node)
    result = ModelDiff(unique_id, f"{env_table.schema}.{env_table.name}")
    env_columns = _columns(conn, env_table)
    result.rows_environment = _count(conn, f"SELECT count(*) FROM {duckdb_name(env_table)}")
    production_node = production_manifest["nodes"].get(unique_id)
    prod_table = as_production(relation(production_node)) if production_node else None
    prod_columns = _columns(conn, prod_table) if prod_table else {}
    if not prod_table or not prod_columns:
        result.new = True
        return result
    result.rows_production = _count(conn, f"SELECT count(*) FROM {duckdb_name(prod_table)}")
    result.columns_added = [(c, t) for c, t in env_columns.items() if c not in prod_columns]
    result.columns_removed = [(c, t) for c, t in prod_columns.items() if c not in env_columns]
    common = [c for c in env_columns if c in prod_columns]
    result.types_changed = [
        (c, prod_columns[c], env_columns[c]) for c in common if prod_columns[c] != env_columns[c]
    ]
    retyped = {c for c, _, _ in result.types_changed}
    env_profile = _profile(conn, env_table, {c: env_columns[c] for c in common})
    prod_profile = _profile(conn, prod_table, {c: prod_columns[c] for c in common})
    pii = _pii_columns(node)

    def hidden(column: str) -> bool:
        return "*" in pii or column.lower() in pii

    def shown(profile: ColumnProfile, column: str) -> ColumnProfile:
        return replace(profile, min="(PII)", max="(PII)") if hidden(column) else profile

    result.profiles = {c: (shown(prod_profile[c], c), shown(env_profile[c], c)) for c in common}

    key = [c for c in declared_key(environment_manifest, unique_id) if c in common]
    env_sql, prod_sql = duckdb_name(env_table), duckdb_name(prod_table)

    def value(side: str, column: str) -> str:
        ref = f"{side}.{quoted(column)}"
        return f"{ref}::VARCHAR" if column in retyped else ref

    if not key:
        listed = ", ".join(quoted(c) for c in common)
        result.added = _count(
            conn, f"SELECT count(*) FROM (FROM (SELECT {listed} FROM {env_sql}) "
            f"EXCEPT ALL FROM (SELECT {listed} FROM {prod_sql}))",
        )  # fmt: skip
        result.removed = _count(
            conn, f"SELECT count(*) FROM (FROM (SELECT {listed} FROM {prod_sql}) "
            f"EXCEPT ALL FROM (SELECT {listed} FROM {env_sql}))",
        )  # fmt: skip
        return result

    result.key = key
    on = " AND ".join(f"p.{quoted(k)} IS NOT DISTINCT FROM e.{quoted(k)}" for k in key)
    joined = (
        f"FROM (SELECT *, true AS __minato_side FROM {prod_sql}) p "
        f"FULL JOIN (SELECT *, true AS __minato_side FROM {env_sql}) e ON {on}"
    )
    both = "p.__minato_side AND e.__minato_side"
    compared = [c for c in common if c not in key]
    differs = {c: f"{value('p', c)} IS DISTINCT FROM {value('e', c)}" for c in compared}
    any_differs = " OR ".join(differs.values()) or "false"
    counts = [
        "count(*) FILTER (WHERE p.__minato_side IS NULL)",
        "count(*) FILTER (WHERE e.__minato_side IS NULL)",
        f"count(*) FILTER (WHERE {both} AND ({any_differs}))",
        *(f"count(*) FILTER (WHERE {both} AND {d})" for d in differs.values()),
    ]
    row = conn.execute(f"SELECT {', '.join(counts)} {joined}").fetchone()
    result.added, result.removed, result.changed = row[0], row[1], row[2]
    result.changed_by_column = {c: n for c, n in zip(compared, row[3:], strict=True) if n}

    key_of = {
        "p": ", ".join(f"p.{quoted(k)}" for k in key),
        "e": ", ".join(f"e.{quoted(k)}" for k in key),
    }
    if any(hidden(k) for k in key):  # a PII key (an e-mail address) is not sampled either
        return result
    for side, missing, target in (
        ("e", "p", result.samples_added),
        ("p", "e", result.samples_removed),
    ):
        target += conn.execute(
            f"SELECT {key_of[side]} {joined} WHERE {missing}.__minato_side IS NULL "
            f"ORDER BY ALL LIMIT {SAMPLES}"
        ).fetchall()
    for column, _ in sorted(result.changed_by_column.items()):
        rows = conn.execute(
            f"SELECT {key_of['e']}, {value('p', column)}, {value('e', column)} {joined} "
            f"WHERE {both} AND {differs[column]} ORDER BY ALL LIMIT {SAMPLES}"
        ).fetchall()
        for *key_values, before, after in rows:
            values = ("(PII)", "(PII)") if hidden(column) else (_text(before), _text(after))
            result.samples_changed.append((tuple(key_values), column, *values))
    return result


def diff_environment(
    environment_file: str,
    production_file: str,
    built: list[str],
    environment_manifest: dict,
    production_manifest: dict,
) -> list[ModelDiff]:
    """Every built model and snapshot (seeds are files in the pull request itself)."""
    with duckdb.connect(environment_file, read_only=True) as conn:
        attach_production(conn, production_file)
        return [
            diff_model(conn, uid, environment_manifest, production_manifest)
            for uid in built
            if environment_manifest["nodes"][uid]["resource_type"] in ("model", "snapshot")
        ]
