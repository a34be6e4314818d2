"""How a batch statement can also carry the source's own count and key sum (reconciliation).

Measures, on the benchmark shards of `bench/ingest_data.py`, the batch statements Minato could
send for 200 client tables at a time (connectorx, Arrow stream, one connection), each
alternative in turn, `--repeat` rounds:

- `none`: the rows only (no reconciliation summary: the lower bound);
- `second_ref`: the rows, then one summary row per table from a second reference to the table
  in the same statement (`COUNT(*)`, key sum): each table is opened twice;
- `window_table`: one reference per table; every row carries its table's `COUNT(*) OVER ()` and
  `SUM(key) OVER ()`, and a table with no row in the window still yields one marker row
  (`(SELECT 1) LEFT JOIN (...) ON TRUE`);
- `window_batch`: one reference per table; the window runs over the batch's whole `UNION ALL`
  (one count and key sum per batch), with one marker row for an empty batch.

Every alternative must return the same rows and the same totals, checked here. Prints
seconds, tables/s and the server's `Opened_tables` per alternative; `--json` writes them.

    .venv/bin/python bench/ingest_summary.py --database minato_bench_scale --tables 20000
    .venv/bin/python bench/ingest_summary.py --database minato_bench_big --tables 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import connectorx as cx
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_data as data

BATCH = 200
# The template's columns as Minato renders them: text as stored, the rest cast by the server.
COLUMNS = (
    "CAST(`order_id` AS CHAR(100)) AS order_id, customer_name, customer_email, customer_phone, "
    "status, CAST(`total_amount` AS CHAR(100)) AS total_amount, shipping_prefecture, note, "
    "CAST(`ordered_at` AS CHAR(100)) AS ordered_at, CAST(`updated_at` AS CHAR(100)) AS updated_at"
)
NULLS = ", ".join(["NULL"] * 10)


def _window(timezone: str) -> str:
    low, high = data.day_window("2026-01-05", timezone)
    return f"`updated_at` >= '{low}' AND `updated_at` < '{high}'"


def _origin(table: str) -> str:
    return f"'{table.split('_')[-1]}' AS _client_id, '{table}' AS _source_table"


def statement(mode: str, tables: list[str], where: str) -> str:
    if mode == "none":
        parts = [f"SELECT {_origin(t)}, {COLUMNS} FROM `{t}` WHERE {where}" for t in tables]
        return "\nUNION ALL\n".join(parts)
    if mode == "second_ref":
        parts = []
        for t in tables:
            parts.append(
                f"SELECT {_origin(t)}, {COLUMNS}, NULL AS _n, NULL AS _k FROM `{t}` WHERE {where}"
            )
            parts.append(
                f"SELECT {_origin(t)}, {NULLS}, CAST(COUNT(*) AS CHAR), "
                f"CAST(COALESCE(SUM(order_id), 0) AS CHAR) FROM `{t}` WHERE {where}"
            )
        return "\nUNION ALL\n".join(parts)
    if mode == "window_table":
        parts = [
            f"SELECT {_origin(t)}, x.*, COUNT(x.order_id) OVER () AS _n, "
            f"COALESCE(SUM(x.order_id) OVER (), 0) AS _k "
            f"FROM (SELECT 1) AS one LEFT JOIN (SELECT {COLUMNS} FROM `{t}` WHERE {where}) AS x "
            "ON TRUE"
            for t in tables
        ]
        return "\nUNION ALL\n".join(parts)
    if mode == "window_batch":
        rows = "\nUNION ALL\n".join(
            f"SELECT {_origin(t)}, {COLUMNS} FROM `{t}` WHERE {where}" for t in tables
        )
        return (
            "SELECT u.*, COUNT(u.order_id) OVER () AS _n, COALESCE(SUM(u.order_id) OVER (), 0) "
            f"AS _k FROM (SELECT 1) AS one LEFT JOIN ({rows}) AS u ON TRUE"
        )
    raise ValueError(mode)


def read(url: str, sql: str, mode: str) -> tuple[int, int, int]:
    """(data rows, source count, source key sum) of one batch."""
    rows = count = key_sum = 0
    seen: set[str] = set()
    for batch in cx.read_sql(url, sql, return_type="arrow_stream", batch_size=100_000):
        names = batch.schema.names
        if mode == "none":
            rows += batch.num_rows
            continue
        n = batch.column(names.index("_n"))
        k = batch.column(names.index("_k"))
        order_id = batch.column(names.index("order_id"))
        if mode == "second_ref":
            summary = pc.is_valid(n)
            rows += batch.num_rows - pc.sum(summary.cast("int64")).as_py()
            count += sum(int(v) for v in pc.filter(n, summary).to_pylist())
            key_sum += sum(int(v) for v in pc.filter(k, summary).to_pylist())
            continue
        rows += batch.num_rows - order_id.null_count  # marker rows carry no order_id
        # One count per table (window_table) or per batch: the first row of each says it.
        source = batch.column(names.index("_source_table")).to_pylist()
        for table, rows_of, keys_of in zip(source, n.to_pylist(), k.to_pylist(), strict=True):
            scope = table if mode == "window_table" else "batch"
            if scope not in seen:
                seen.add(scope)
                count += int(rows_of)
                key_sum += int(keys_of)
    return rows, count, key_sum


def opened_tables() -> int:
    conn = data.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Opened_tables'")
            return int(cursor.fetchone()[1])
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=data.SCALE_SHARD[1])
    parser.add_argument("--timezone", default="Asia/Tokyo")
    parser.add_argument("--tables", type=int, default=20_000, help="first N client tables")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--modes", default="none,second_ref,window_table,window_batch", help="comma-separated"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    conn = data.connect(args.database)
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
            "ORDER BY table_name LIMIT %s",
            (args.tables,),
        )
        tables = [row[0] for row in cursor.fetchall()]
    conn.close()
    url = f"mysql://{data.USER}@{data.HOST}:{data.PORT}/{args.database}"
    where = _window(args.timezone)
    modes = args.modes.split(",")
    results: dict[str, dict[str, object]] = {}
    for round_ in range(args.repeat):
        for mode in modes:  # alternated, so a drift of the machine's load hits every mode
            before, started = opened_tables(), time.perf_counter()
            totals = [0, 0, 0]
            for i in range(0, len(tables), BATCH):
                sql = statement(mode, tables[i : i + BATCH], where)
                for j, value in enumerate(read(url, sql, mode)):
                    totals[j] += value
            elapsed = time.perf_counter() - started
            slot = results.setdefault(mode, {"seconds": []})
            slot["seconds"].append(round(elapsed, 2))  # type: ignore[union-attr]
            slot.update(rows=totals[0], source_rows=totals[1], source_key_sum=totals[2])
            slot["opened_tables"] = opened_tables() - before
            print(
                f"round {round_ + 1} {mode:13} {elapsed:7.2f} s  "
                f"{len(tables) / elapsed:8.0f} tables/s  rows {totals[0]:,}  "
                f"count {totals[1]:,}  opened {slot['opened_tables']:,}",
                flush=True,
            )
    reference = results.get("second_ref")
    for mode, slot in results.items():
        if (
            mode != "none"
            and reference
            and (slot["source_rows"], slot["source_key_sum"])
            != (
                reference["source_rows"],
                reference["source_key_sum"],
            )
        ):
            print(f"MISMATCH: {mode} totals differ from second_ref")
        slot["best_tables_per_s"] = round(len(tables) / min(slot["seconds"]))  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps({"tables": len(tables), **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
