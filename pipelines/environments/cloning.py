"""Copies of production tables into a change environment.

DuckDB has no zero-copy clone: production's file is attached read-only under
PRODUCTION_ALIAS (it cannot be written through this connection, and its checksum stays the
same) and each table is copied into the environment's file, which has production's database
name (layout.py).
BigQuery clones tables (`CREATE TABLE … CLONE`): no bytes are copied or billed until either
side changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import duckdb

from pipelines.environments.selection import Relation
from resources.identifiers import validate_identifier
from resources.warehouse import BigQueryWarehouse
from resources.warehouse.sql import sql_literal

PRODUCTION_ALIAS = "minato_production"


def as_production(relation: Relation) -> Relation:
    """A production relation as an environment's connection sees it: the attached file."""
    return replace(relation, database=PRODUCTION_ALIAS)


def duckdb_name(relation: Relation) -> str:
    """`"database"."schema"."table"`: every part is an identifier (resources/identifiers.py)."""
    return f'"{validate_identifier(relation.database)}"."{relation.schema}"."{relation.name}"'


def attach_production(conn: duckdb.DuckDBPyConnection, path: str) -> None:
    path_literal = sql_literal(path, dialect="duckdb")
    conn.execute(f'ATTACH {path_literal} AS "{PRODUCTION_ALIAS}" (READ_ONLY)')


def clone_duckdb(
    env_file: Path, production_file: str, pairs: Sequence[tuple[Relation, Relation]]
) -> None:
    """Copy each (production, environment) table pair; the environment's file is created."""
    env_file.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(env_file)) as conn:
        attach_production(conn, production_file)
        for source, target in pairs:
            table = duckdb_name(target)
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{target.database}"."{target.schema}"')
            conn.execute(
                f"CREATE OR REPLACE TABLE {table} AS FROM {duckdb_name(as_production(source))}"
            )


def bigquery_clone_statements(
    pairs: Sequence[tuple[Relation, Relation]], location: str
) -> list[str]:
    """The datasets first (once each, sorted), then one clone per table."""
    datasets = sorted({(target.database, target.schema) for _, target in pairs})
    where = sql_literal(location, dialect="bigquery")
    statements = [
        f"CREATE SCHEMA IF NOT EXISTS `{project}.{dataset}` OPTIONS (location = {where})"
        for project, dataset in datasets
    ]
    statements += [
        f"CREATE OR REPLACE TABLE `{t.database}.{t.schema}.{t.name}` "
        f"CLONE `{s.database}.{s.schema}.{s.name}`"
        for s, t in pairs
    ]
    return statements


def bigquery_drop_statements(project: str, datasets: Iterable[str]) -> list[str]:
    return [f"DROP SCHEMA IF EXISTS `{project}.{dataset}` CASCADE" for dataset in sorted(datasets)]


def run_bigquery(warehouse: BigQueryWarehouse, statements: Sequence[str]) -> None:
    for statement in statements:
        warehouse.execute(statement)
