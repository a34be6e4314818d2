"""`make bench-sync`: Minato's reverse ETL on a 10-million-row model, against the seed's Hightouch.

In one run, through the public seam `assets.sync.engine.run_sync` (what the sync asset calls):

1. generates the model `bench.scores` (`--rows`, 7 columns) in a fresh DuckDB file;
2. full sync into the local PostgreSQL (COPY + INSERT ... ON CONFLICT), timed end to end
   (diff, delivery, state);
3. changes `--changed-share` of the rows, then syncs again: the diff time (10M rows against the
   10M-row state, in DuckDB) and the incremental delivery rate;
4. checks PostgreSQL against the model (row count and column sums): lost rows;
5. syncs `--http-rows` rows into the local rate-limited JSON API (bench/sync_api_server.py, in its
   own process, `--http-rate` requests/s) with the sync's rate limit set to the same number:
   the share of the allowed rate reached, and rows lost or applied twice (the server counts).

Hightouch cannot run here; its reference is the seed's load test (2 tables x 10M rows in about
2 hours, ~2,800 rows/s). Prints the ratios and writes `bench/results/sync.json`.

    .venv/bin/python bench/sync.py                          # full run (~6 min on 2 cores)
    .venv/bin/python bench/sync.py --rows 1000000 --http-rows 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from assets.sync.engine import SyncReport, run_sync  # noqa: E402
from assets.sync.specs import SyncSpec  # noqa: E402
from resources.destinations import HttpJsonDestination, PostgresDestination  # noqa: E402
from resources.warehouse import DuckDBWarehouse  # noqa: E402

HIGHTOUCH_ROWS_PER_S = 20_000_000 / 7_200  # Seed 004: 2 x 10M rows in about 2 hours.
GOAL_DIFF_S = 30.0
GOAL_POSTGRES_ROWS_PER_S = 56_000
GOAL_HTTP_RATE_SHARE = 0.95
COLUMNS = ("score", "segment", "lifecycle_stage", "orders", "gmv_jpy", "last_seen_at")
LOG = logging.getLogger("bench.sync")


def spec(name: str, model: str, destination: str, **settings: Any) -> SyncSpec:
    return SyncSpec(
        name=name,
        source_schema="bench",
        source_model=model,
        destination=destination,
        destination_table=name,
        primary_key=["account_id"],
        columns=list(COLUMNS),
        mode="mirror",
        **settings,
    )


def generate(warehouse: DuckDBWarehouse, rows: int) -> float:
    started = time.monotonic()
    with warehouse.connect() as conn:
        conn.execute("SET enable_progress_bar = false")
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        conn.execute(
            "CREATE OR REPLACE TABLE bench.scores AS SELECT i AS account_id, "
            "(i * 7919 % 100000) / 100.0 AS score, 'segment_' || (i % 13) AS segment, "
            "['lead', 'customer', 'churned', 'loyal'][1 + i % 4] AS lifecycle_stage, "
            "i % 97 AS orders, (i % 100000) * 1.5 AS gmv_jpy, "
            "TIMESTAMP '2026-01-01' + to_seconds(i % 31536000) AS last_seen_at "
            f"FROM range({rows}) AS t(i)"
        )
    return time.monotonic() - started


def change(warehouse: DuckDBWarehouse, share: float) -> int:
    modulo = round(1 / share)
    with warehouse.connect() as conn:
        conn.execute(
            f"UPDATE bench.scores SET score = score + 1, lifecycle_stage = 'churned' "
            f"WHERE account_id % {modulo} = 7"
        )
        return conn.execute(
            f"SELECT count(*) FROM bench.scores WHERE account_id % {modulo} = 7"
        ).fetchone()[0]


def postgres_check(warehouse: DuckDBWarehouse, url: str, schema: str) -> dict[str, Any]:
    import psycopg

    sums = (
        "count(*), sum(orders), round(CAST(sum(score) AS NUMERIC), 2), "
        "count(DISTINCT lifecycle_stage)"
    )
    with warehouse.connect() as conn:
        model = conn.execute(f"SELECT {sums} FROM bench.scores").fetchone()
    with psycopg.connect(url) as conn:
        target = conn.execute(f"SELECT {sums} FROM {schema}.bench_postgres").fetchone()
    model_rows, target_rows = model[0], target[0]
    return {
        "postgres_model_rows": model_rows,
        "postgres_rows": target_rows,
        "postgres_lost_rows": max(0, model_rows - target_rows),
        "postgres_extra_rows": max(0, target_rows - model_rows),
        "postgres_content_matches": [float(v) for v in model] == [float(v) for v in target],
    }


def report_fields(prefix: str, report: SyncReport, elapsed: float) -> dict[str, Any]:
    delivery_s = max(elapsed - report.diff_s, 1e-9)
    return {
        f"{prefix}_rows_sent": report.sent,
        f"{prefix}_rows_rejected": report.rejected,
        f"{prefix}_added": report.added,
        f"{prefix}_changed": report.changed,
        f"{prefix}_batches": report.batches,
        f"{prefix}_retries": report.retries,
        f"{prefix}_diff_s": round(report.diff_s, 3),
        f"{prefix}_elapsed_s": round(elapsed, 3),
        f"{prefix}_rows_per_s": round(report.sent / elapsed, 1),
        # Delivery alone: everything after the diff (sending, journal, state fold).
        f"{prefix}_delivery_rows_per_s": round(report.sent / delivery_s, 1),
    }


def timed_sync(
    sync: SyncSpec, warehouse: DuckDBWarehouse, destination: Any
) -> tuple[SyncReport, float]:
    started = time.monotonic()
    report = run_sync(sync, warehouse, destination, LOG)
    return report, time.monotonic() - started


def http_bench(warehouse: DuckDBWarehouse, args: argparse.Namespace) -> dict[str, Any]:
    with warehouse.connect() as conn:
        conn.execute(
            "CREATE OR REPLACE TABLE bench.http_scores AS "
            f"SELECT * FROM bench.scores ORDER BY account_id LIMIT {args.http_rows}"
        )
    server = subprocess.Popen(
        [
            sys.executable,
            str(BENCH_DIR / "sync_api_server.py"),
            "--port",
            str(args.http_port),
            "--rate",
            str(args.http_rate),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()  # The server prints its URL once listening.
        sync = spec(
            "bench_http",
            "http_scores",
            "api",
            batch_size=args.http_batch,
            rate_limit_per_s=args.http_rate,
            concurrency=args.http_concurrency,
        )
        report, elapsed = timed_sync(sync, warehouse, HttpJsonDestination(base_url=url))
        with urllib.request.urlopen(f"{url}/_stats", timeout=10) as response:
            stats = json.loads(response.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        **report_fields("http", report, elapsed),
        "http_allowed_requests_per_s": args.http_rate,
        "http_batch_size": args.http_batch,
        "http_requests": stats["requests"],
        "http_throttled_429": stats["throttled"],
        "http_accepted_requests_per_s": round(stats["ok_calls_per_s"], 3),
        "http_rate_share": round(stats["ok_calls_per_s"] / args.http_rate, 4),
        "http_lost_rows": args.http_rows - stats["applied_records"],
        "http_duplicated_rows": stats["duplicated_records"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--changed-share", type=float, default=0.01)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pg-schema", default="minato_bench_sync")
    parser.add_argument("--pg-batch", type=int, default=50_000)
    parser.add_argument("--pg-concurrency", type=int, default=2)
    parser.add_argument("--http-rows", type=int, default=100_000)
    parser.add_argument("--http-rate", type=float, default=40.0)
    parser.add_argument("--http-batch", type=int, default=250)
    parser.add_argument("--http-concurrency", type=int, default=4)
    parser.add_argument("--http-port", type=int, default=8765)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/minato-bench-sync"))
    parser.add_argument("--result", type=Path, default=BENCH_DIR / "results" / "sync.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    import psycopg

    shutil.rmtree(args.work_dir, ignore_errors=True)
    args.work_dir.mkdir(parents=True)
    warehouse = DuckDBWarehouse(path=str(args.work_dir / "warehouse.duckdb"))
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {args.pg_schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {args.pg_schema}")
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine_nproc": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgres_version": pg_version,
        "rows": args.rows,
        "changed_share": args.changed_share,
    }
    print(f"generating {args.rows:,} rows ...", flush=True)
    result["generate_s"] = round(generate(warehouse, args.rows), 3)

    postgres = PostgresDestination(url=args.pg_url, schema_name=args.pg_schema)
    pg_spec = spec(
        "bench_postgres",
        "scores",
        "postgres",
        batch_size=args.pg_batch,
        concurrency=args.pg_concurrency,
    )
    print("full sync into PostgreSQL ...", flush=True)
    full, elapsed = timed_sync(pg_spec, warehouse, postgres)
    result.update(report_fields("postgres_full", full, elapsed))

    result["rows_changed_in_model"] = change(warehouse, args.changed_share)
    print(f"incremental sync ({result['rows_changed_in_model']:,} rows changed) ...", flush=True)
    incremental, elapsed = timed_sync(pg_spec, warehouse, postgres)
    result.update(report_fields("postgres_incremental", incremental, elapsed))
    result.update(postgres_check(warehouse, args.pg_url, args.pg_schema))

    print(f"HTTP sync ({args.http_rows:,} rows at {args.http_rate:g} requests/s) ...", flush=True)
    result.update(http_bench(warehouse, args))
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    # Headline numbers (the names).
    result["diff_10m_s"] = result["postgres_incremental_diff_s"]
    result["postgres_rows_per_s"] = result["postgres_full_rows_per_s"]
    result["lost_rows"] = result["postgres_lost_rows"] + result["http_lost_rows"]
    result["duplicated_rows"] = result["http_duplicated_rows"] + result["postgres_extra_rows"]
    result["hightouch_rows_per_s"] = round(HIGHTOUCH_ROWS_PER_S, 1)
    result["goals"] = {
        "diff_10m_s < 30": result["diff_10m_s"] < GOAL_DIFF_S,
        "postgres_rows_per_s >= 56000": result["postgres_rows_per_s"] >= GOAL_POSTGRES_ROWS_PER_S,
        "http_rate_share >= 0.95": result["http_rate_share"] >= GOAL_HTTP_RATE_SHARE,
        "lost_rows == 0": result["lost_rows"] == 0,
        "duplicated_rows == 0": result["duplicated_rows"] == 0,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    summarize(result)
    return 0 if all(result["goals"].values()) else 1


def summarize(r: dict[str, Any]) -> None:
    hightouch = r["hightouch_rows_per_s"]
    lines = [
        f"{r['rows']:,}-row model, {r['rows_changed_in_model']:,} changed; "
        f"load average at start {r['load_average_at_start']}",
        f"{'':34} {'rows':>11} {'seconds':>9} {'rows/s':>11} {'vs Hightouch':>13}",
    ]
    for label, prefix in (
        ("PostgreSQL full sync", "postgres_full"),
        ("PostgreSQL incremental (1%)", "postgres_incremental"),
        ("HTTP API (rate-limited)", "http"),
    ):
        rate = r[f"{prefix}_rows_per_s"]
        lines.append(
            f"{label:34} {r[f'{prefix}_rows_sent']:>11,} {r[f'{prefix}_elapsed_s']:>9.1f} "
            f"{rate:>11,.0f} {rate / hightouch:>12.1f}x"
        )
    lines += [
        f"Hightouch (seed 004 load test)     {20_000_000:>11,} {7200:>9.1f} {hightouch:>11,.0f}"
        f" {1:>12.1f}x",
        f"diff of {r['rows']:,} rows in DuckDB: {r['diff_10m_s']:.1f} s (goal < {GOAL_DIFF_S:g})",
        f"PostgreSQL delivery only (after the diff): full "
        f"{r['postgres_full_delivery_rows_per_s']:,.0f} rows/s, incremental "
        f"{r['postgres_incremental_delivery_rows_per_s']:,.0f} rows/s",
        f"HTTP: {r['http_accepted_requests_per_s']:.2f} of {r['http_allowed_requests_per_s']:g} "
        f"allowed requests/s = {r['http_rate_share']:.1%} (429s: {r['http_throttled_429']})",
        f"lost rows {r['lost_rows']}, duplicated rows {r['duplicated_rows']}, "
        f"PostgreSQL content matches the model: {r['postgres_content_matches']}",
        "goals: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["goals"].items()),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
