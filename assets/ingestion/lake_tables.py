"""The logical lake tables that shard ingestion produces: one asset per logical table."""

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class LakeTable:
    name: str  # logical name; physical tables are `<name>_<client_id>` on every shard
    primary_key: tuple[str, ...]  # unique within one client's table
    datetime_columns: tuple[str, ...]  # must parse, or the row is quarantined
    description: str
    change_column: str = "updated_at"  # selects a business day's rows
    # Rows changed this long before the day starts are read again: a transaction that
    # committed after the previous day's run is not missed. Cleansing keeps one copy.
    overlap: dt.timedelta = dt.timedelta(minutes=30)
    # The logical name of the client tables on the source, when the lake's name differs
    # (a snapshot source's `orders_<client>` tables land in `lake.<source>_orders`).
    source: str | None = None

    @property
    def source_name(self) -> str:
        return self.source or self.name


SHARD_LAKE_TABLES = (
    LakeTable(
        "orders",
        ("order_id",),
        ("ordered_at", "updated_at"),
        "Orders of every client on every shard, as stored (text), with PII.",
    ),
    LakeTable(
        "order_items",
        ("order_item_id",),
        ("updated_at",),
        "Order lines of every client on every shard, as stored (text).",
    ),
    LakeTable(
        "products",
        ("product_id",),
        ("updated_at",),
        "Product catalogues of every client on every shard, as stored (text).",
    ),
)
