"""Each built model compared with production, in SQL on the warehouse (DuckDB, or GoogleSQL
through the product's BigQueryWarehouse, so every job carries its labels and cost guard):
schema, row counts, a profile per column, and rows added, removed and changed by key, with
samples. One comparison for both engines; `Engine` holds the little SQL that differs.

The key is what the project already declares: a `unique_combination` test on the model, or
else a column's `unique` test. Without one, rows are compared as multisets (added and removed
only). Rows and keys are paired by a JSON text of their values (BigQuery's FULL JOIN needs an
equality, and cannot group arrays). Columns whose type changed are compared as text. Values of
PII columns (`meta.pii`, or a model with `meta.contains_pii`) are never sampled: the report goes
into a pull request.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

import duckdb

from pipelines.environments.cloning import as_production, attach_production, duckdb_name
from pipelines.environments.selection import Relation, relation
from resources.warehouse import BigQueryWarehouse
from resources.warehouse.sql import quoted, sql_literal

SAMPLES = 5
# GCP project ids, domain-scoped ones (`example.com:project`) included.
_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,61}[a-z0-9]$")


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


class Engine(ABC):
    """One warehouse as the comparison sees it: its rows, names, types and the few spellings
    that differ between DuckDB and GoogleSQL."""

    @abstractmethod
    def rows(self, sql: str) -> list[tuple]: ...

    @abstractmethod
    def table(self, table: Relation) -> str:
        """The table's fully qualified, quoted name."""

    @abstractmethod
    def production(self, table: Relation) -> Relation:
        """Production's relation (from its manifest) as this engine reads it."""

    @abstractmethod
    def columns(self, table: Relation) -> dict[str, str]:
        """Column name -> type, in table order; empty if the table does not exist."""

    @abstractmethod
    def column(self, name: str) -> str: ...

    @abstractmethod
    def text(self, expression: str) -> str: ...

    @abstractmethod
    def json_text(self, fields: list[str]) -> str:
        """The fields as one JSON text: equal values, equal texts (NULL included)."""

    @abstractmethod
    def ordered(self, data_type: str) -> bool:
        """Whether min and max apply to the type (and it can be counted distinct as is)."""

    @staticmethod
    def count_if(condition: str) -> str:
        return f"COUNTIF({condition})"  # DuckDB has it too


class DuckDBEngine(Engine):
    """An environment's file, production's attached read-only (cloning.py)."""

    _UNORDERED = ("STRUCT", "MAP", "UNION")

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def rows(self, sql: str) -> list[tuple]:
        return self.conn.execute(sql).fetchall()

    def table(self, table: Relation) -> str:
        return duckdb_name(table)

    def production(self, table: Relation) -> Relation:
        return as_production(table)

    def columns(self, table: Relation) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = ? AND schema_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [table.database, table.schema, table.name],
        ).fetchall()
        return dict(rows)

    def column(self, name: str) -> str:
        return quoted(name)

    def text(self, expression: str) -> str:
        return f"CAST({expression} AS VARCHAR)"

    def json_text(self, fields: list[str]) -> str:
        pairs = ", ".join(f"k{i} := {field}" for i, field in enumerate(fields))
        return f"CAST(to_json(struct_pack({pairs})) AS VARCHAR)"

    def ordered(self, data_type: str) -> bool:
        return not (data_type.startswith(self._UNORDERED) or data_type.endswith("]"))


class BigQueryEngine(Engine):
    """Environment and production datasets of one project, through the product's warehouse
    (no dataset prefix of its own: the manifests name every dataset in full)."""

    _UNORDERED = ("STRUCT", "ARRAY", "JSON", "GEOGRAPHY", "RANGE", "INTERVAL")

    def __init__(self, warehouse: BigQueryWarehouse) -> None:
        self.warehouse = warehouse

    def rows(self, sql: str) -> list[tuple]:
        result = self.warehouse.query_arrow(sql)
        return list(zip(*(column.to_pylist() for column in result.columns), strict=True))

    @staticmethod
    def _project(table: Relation) -> str:
        if not _PROJECT.match(table.database):
            raise ValueError(f"invalid BigQuery project {table.database!r}")
        return table.database

    def table(self, table: Relation) -> str:
        return f"`{self._project(table)}.{table.schema}.{table.name}`"

    def production(self, table: Relation) -> Relation:
        return table  # its own datasets: the environment's carry its prefix

    def columns(self, table: Relation) -> dict[str, str]:
        # A query, not `get_table`: it gives GoogleSQL's type names (INT64, ARRAY<STRING>),
        # and an empty answer for a missing table or dataset.
        rows = self.rows(
            "SELECT column_name, data_type "
            f"FROM `{self._project(table)}.{table.schema}`.INFORMATION_SCHEMA.COLUMNS "
            f"WHERE table_name = {sql_literal(table.name, dialect='bigquery')} "
            "ORDER BY ordinal_position"
        )
        return dict(rows)

    def column(self, name: str) -> str:
        return quoted(name, "`")

    def text(self, expression: str) -> str:
        return f"CAST({expression} AS STRING)"

    def json_text(self, fields: list[str]) -> str:
        pairs = ", ".join(f"{field} AS k{i}" for i, field in enumerate(fields))
        return f"TO_JSON_STRING(STRUCT({pairs}))"

    def ordered(self, data_type: str) -> bool:
        return not data_type.startswith(self._UNORDERED)


def _profile(engine: Engine, table: Relation, columns: dict[str, str]) -> dict[str, ColumnProfile]:
    parts = []
    for name, data_type in columns.items():
        column = engine.column(name)
        if engine.ordered(data_type):
            parts += [f"count(*) - count({column})", f"count(DISTINCT {column})"]
            parts += [engine.text(f"min({column})"), engine.text(f"max({column})")]
        else:  # no min or max; BigQuery cannot count arrays distinct, their JSON text it can
            text = f"CASE WHEN {column} IS NOT NULL THEN {engine.json_text([column])} END"
            parts += [f"count(*) - count({column})", f"count(DISTINCT {text})", "NULL", "NULL"]
    if not parts:
        return {}
    selected = ", ".join(f"{part} AS c{i}" for i, part in enumerate(parts))
    [row] = engine.rows(f"SELECT {selected} FROM {engine.table(table)}")
    return {name: ColumnProfile(*row[4 * i : 4 * i + 4]) for i, name in enumerate(columns)}


def _count(engine: Engine, sql: str) -> int:
    return engine.rows(sql)[0][0]


def _text(value: object) -> str:
    return "NULL" if value is None else str(value)


def _order_by(count: int) -> str:
    # Explicit: DuckDB sorts NULLs last by default, BigQuery first.
    return "ORDER BY " + ", ".join(f"{i} ASC NULLS LAST" for i in range(1, count + 1))


def _selected(expressions: list[str]) -> str:
    # BigQuery refuses a result with two columns of the same name (`p.id`, `e.id`).
    return ", ".join(f"{expression} AS c{i}" for i, expression in enumerate(expressions))


def diff_model(
    engine: Engine,
    unique_id: str,
    environment_manifest: dict,
    production_manifest: dict,
) -> ModelDiff:
    node = environment_manifest["nodes"][unique_id]
    env_table = relation(node)
    result = ModelDiff(unique_id, f"{env_table.schema}.{env_table.name}")
    env_columns = engine.columns(env_table)
    env_sql = engine.table(env_table)
    result.rows_environment = _count(engine, f"SELECT count(*) FROM {env_sql}")
    production_node = production_manifest["nodes"].get(unique_id)
    prod_table = engine.production(relation(production_node)) if production_node else None
    prod_columns = engine.columns(prod_table) if prod_table else {}
    if not prod_table or not prod_columns:
        result.new = True
        return result
    prod_sql = engine.table(prod_table)
    result.rows_production = _count(engine, f"SELECT count(*) FROM {prod_sql}")
    result.columns_added = [(c, t) for c, t in env_columns.items() if c not in prod_columns]
    result.columns_removed = [(c, t) for c, t in prod_columns.items() if c not in env_columns]
    common = [c for c in env_columns if c in prod_columns]
    result.types_changed = [
        (c, prod_columns[c], env_columns[c]) for c in common if prod_columns[c] != env_columns[c]
    ]
    retyped = {c for c, _, _ in result.types_changed}
    env_profile = _profile(engine, env_table, {c: env_columns[c] for c in common})
    prod_profile = _profile(engine, prod_table, {c: prod_columns[c] for c in common})
    pii = _pii_columns(node)

    def hidden(column: str) -> bool:
        return "*" in pii or column.lower() in pii

    def shown(profile: ColumnProfile, column: str) -> ColumnProfile:
        return replace(profile, min="(PII)", max="(PII)") if hidden(column) else profile

    result.profiles = {c: (shown(prod_profile[c], c), shown(env_profile[c], c)) for c in common}

    key = [c for c in declared_key(environment_manifest, unique_id) if c in common]

    def value(side: str, column: str) -> str:
        ref = f"{side}.{engine.column(column)}" if side else engine.column(column)
        return engine.text(ref) if column in retyped else ref

    if not key:
        # Rows as multisets: each distinct row's count on both sides (neither engine's
        # EXCEPT ALL is portable: BigQuery has only EXCEPT DISTINCT).
        row_text = engine.json_text([value("", c) for c in common])
        grouped = "SELECT {row} AS r, count(*) AS n FROM {table} GROUP BY 1"
        surplus = (
            "CASE WHEN coalesce({a}.n, 0) > coalesce({b}.n, 0) "
            "THEN coalesce({a}.n, 0) - coalesce({b}.n, 0) ELSE 0 END"
        )
        [(added, removed)] = engine.rows(
            f"SELECT coalesce(sum({surplus.format(a='e', b='p')}), 0) AS added, "
            f"coalesce(sum({surplus.format(a='p', b='e')}), 0) AS removed "
            f"FROM ({grouped.format(row=row_text, table=env_sql)}) e "
            f"FULL JOIN ({grouped.format(row=row_text, table=prod_sql)}) p ON e.r = p.r"
        )
        result.added, result.removed = int(added), int(removed)
        return result

    result.key = key
    # The columns both sides have, not `*`: a column added or removed is not compared.
    key_text = engine.json_text([value("", k) for k in key])
    listed = ", ".join(engine.column(c) for c in common)
    side = f"{listed}, true AS __minato_side, {key_text} AS __minato_key"
    joined = (
        f"FROM (SELECT {side} FROM {prod_sql}) p FULL JOIN (SELECT {side} FROM {env_sql}) e "
        "ON p.__minato_key = e.__minato_key"
    )
    both = "p.__minato_side AND e.__minato_side"
    compared = [c for c in common if c not in key]
    differs = {c: f"{value('p', c)} IS DISTINCT FROM {value('e', c)}" for c in compared}
    any_differs = " OR ".join(differs.values()) or "false"
    counts = [
        engine.count_if("p.__minato_side IS NULL"),
        engine.count_if("e.__minato_side IS NULL"),
        engine.count_if(f"{both} AND ({any_differs})"),
        *(engine.count_if(f"{both} AND {d}") for d in differs.values()),
    ]
    [row] = engine.rows(f"SELECT {_selected(counts)} {joined}")
    result.added, result.removed, result.changed = row[0], row[1], row[2]
    result.changed_by_column = {c: n for c, n in zip(compared, row[3:], strict=True) if n}

    if any(hidden(k) for k in key):  # a PII key (an e-mail address) is not sampled either
        return result
    for side, missing, target in (
        ("e", "p", result.samples_added),
        ("p", "e", result.samples_removed),
    ):
        keys = [f"{side}.{engine.column(k)}" for k in key]
        target += engine.rows(
            f"SELECT {_selected(keys)} {joined} WHERE {missing}.__minato_side IS NULL "
            f"{_order_by(len(key))} LIMIT {SAMPLES}"
        )
    for column, _ in sorted(result.changed_by_column.items()):
        selected = [f"e.{engine.column(k)}" for k in key] + [value("p", column), value("e", column)]
        rows = engine.rows(
            f"SELECT {_selected(selected)} {joined} WHERE {both} AND {differs[column]} "
            f"{_order_by(len(selected))} LIMIT {SAMPLES}"
        )
        for *key_values, before, after in rows:
            values = ("(PII)", "(PII)") if hidden(column) else (_text(before), _text(after))
            result.samples_changed.append((tuple(key_values), column, *values))
    return result


def _diff_models(
    engine: Engine, built: list[str], environment_manifest: dict, production_manifest: dict
) -> list[ModelDiff]:
    """Every built model and snapshot (seeds are files in the pull request itself)."""
    return [
        diff_model(engine, uid, environment_manifest, production_manifest)
        for uid in built
        if environment_manifest["nodes"][uid]["resource_type"] in ("model", "snapshot")
    ]


def diff_environment(
    environment_file: str,
    production_file: str,
    built: list[str],
    environment_manifest: dict,
    production_manifest: dict,
) -> list[ModelDiff]:
    """DuckDB: the environment's file against production's."""
    with duckdb.connect(environment_file, read_only=True) as conn:
        attach_production(conn, production_file)
        return _diff_models(DuckDBEngine(conn), built, environment_manifest, production_manifest)


def diff_bigquery(
    warehouse: BigQueryWarehouse,
    built: list[str],
    environment_manifest: dict,
    production_manifest: dict,
) -> list[ModelDiff]:
    """BigQuery: the environment's (prefixed) datasets against production's."""
    return _diff_models(BigQueryEngine(warehouse), built, environment_manifest, production_manifest)
