"""Seeding warehouse tables in tests: a whole table is one partition when no column partitions
it, so replacing that one partition replaces the table."""

import pyarrow as pa

from resources.warehouse import Warehouse


def replace_table(warehouse: Warehouse, schema: str, table: str, data: pa.Table) -> None:
    warehouse.replace_partitions(schema, table, data, [], [()])
