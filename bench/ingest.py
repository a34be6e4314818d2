"""`make bench-ingest`: Minato's shard extraction against dlt and the raw drivers, same data.

On the local MariaDB (127.0.0.1:3306, root, no password) it generates, unless already present
(`bench/ingest_data.py`): `--tables` small client tables (`orders_<client_id>`, 20 rows each)
over two shard databases, and one `--big-rows` table in a third. Then, each contender in its own
subprocess so peak RSS is its own:

1. raw drivers alone on the big table (connectorx streamed, to one Arrow table, 2 partitions;
   mysqlclient when importable): the fastest is the yardstick for the big table;
2. Minato: `dg.materialize` of `lake/orders` for the bench day on both small shards in one run
   (discovery, extraction, reconciliation, lake write into a fresh DuckDB file), timed end to end,
   `--repeat` times (the fastest counts); then once more under cProfile for the profile (that
   run's time is not reported);
3. dlt 1.31 `sql_database`, pyarrow backend, on a sample of the small tables (dlt manages tens of
   tables/s) merged into one DuckDB table: as a user writes the URL, then with pymysql's
   per-connection TLS probe switched off (`ssl_disabled=true`; dlt opens a connection per
   table), with and without `.parallelize()`; the fastest variant is the comparison;
4. Minato on the big table (shard_03), then dlt on it.

Prints a side-by-side table with the ratios and writes `bench/results/ingest.json` (flat).
Server settings are only read, never changed. Every subprocess has a time limit and an RSS
limit and is killed past either, so a run is bounded.

    .venv/bin/python bench/ingest.py                 # full run
    .venv/bin/python bench/ingest.py --tables 2000 --big-rows 500000 --skip-dlt-big
    .venv/bin/python bench/ingest.py --minato-ref HEAD   # measure a committed version instead
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import ingest_data as data  # noqa: E402

BENCH_DAY = "2026-01-05"
DEFAULT_RESULT = BENCH_DIR / "results" / "ingest.json"
MB = 1024 * 1024
GOAL_TABLES_PER_S = 5_000
GOAL_TABLES_RATIO = 50.0
GOAL_BIG_RATIO = 0.8
GOAL_RSS_MB = 1024

# Timed wrappers around Minato's seams, looked up by name: whichever exist in the measured
# implementation are timed; a missing one is skipped. (module, attribute path, phase)
PHASE_TARGETS = (
    ("assets.ingestion.shard_catalog", "discover", "discover"),
    ("assets.ingestion.shard_load", "load_partitions", "load"),
    # Readers run on threads (generators: the time inside each step counts), so their sums
    # can exceed the wall time.
    ("assets.ingestion.shard_reader", "_read_batch", "read_batch"),
    ("assets.ingestion.shard_streams", "stream_mysql", "fetch_driver"),
    ("assets.ingestion.checksums", "key_checksum", "checksum"),
    ("assets.ingestion.quarantine", "split_valid_rows", "validate"),
    ("resources.warehouse", "ParquetSpool.append", "spool_write"),
    ("resources.warehouse", "DuckDBWarehouse._replace_from_spool", "lake_write"),
)


# --------------------------------------------------------------------------------------------
# Workers: each runs in its own process and writes one JSON result.
# --------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def _install_phase_timers(timings: dict[str, dict[str, float]]) -> list[str]:
    """Wrap the seams in PHASE_TARGETS with timers; returns the ones found."""
    import functools
    import importlib
    import inspect
    import threading

    lock = threading.Lock()
    active_phases = threading.local()
    found = []
    for module_name, path, phase in PHASE_TARGETS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner: Any = module
        *parents, attr = path.split(".")
        try:
            for part in parents:
                owner = getattr(owner, part)
            original = getattr(owner, attr)
        except AttributeError:
            continue

        def record(phase: str, elapsed: float) -> None:
            with lock:
                slot = timings.setdefault(phase, {"s": 0.0, "calls": 0})
                slot["s"] += elapsed
                slot["calls"] += 1

        def make(original: Any, phase: str) -> Any:
            if inspect.isgeneratorfunction(original):

                @functools.wraps(original)
                def timed_steps(*args: Any, **kwargs: Any) -> Any:
                    steps = original(*args, **kwargs)
                    spent = 0.0
                    try:
                        while True:
                            started = time.perf_counter()
                            try:
                                item = next(steps)
                            except StopIteration:
                                return
                            finally:
                                spent += time.perf_counter() - started
                            yield item
                    finally:
                        record(phase, spent)

                return timed_steps

            @functools.wraps(original)
            def timed(*args: Any, **kwargs: Any) -> Any:
                active = active_phases.__dict__.setdefault("names", set())
                if phase in active:  # a seam calling another seam of the same phase
                    return original(*args, **kwargs)
                active.add(phase)
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    active.discard(phase)
                    record(phase, time.perf_counter() - started)

            return timed

        wrapper = make(original, phase)
        if parents:
            setattr(owner, attr, wrapper)
        else:
            # Module functions are imported by name elsewhere: replace every reference.
            for name, loaded in list(sys.modules.items()):
                if loaded is None or not name.startswith(("assets", "resources", "pipelines")):
                    continue
                for key, value in list(vars(loaded).items()):
                    if value is original:
                        setattr(loaded, key, wrapper)
        found.append(f"{module_name}.{path}")
    return found


def worker_minato(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    sys.path.insert(0, job["minato_root"])
    os.environ["MINATO_DATA_DIR"] = job["data_dir"]
    os.environ["MINATO_SHARDS_FILE"] = str(Path(job["minato_root"]) / "shards.yaml")
    import dagster as dg
    import duckdb

    import assets
    from assets.ingestion import shard_tables
    from assets.partitions import partition_range_tags
    from resources.shards import ShardSource
    from resources.warehouse import DuckDBWarehouse

    asset = next(
        a for a in shard_tables.shard_table_assets() if a.key == dg.AssetKey(["lake", "orders"])
    )
    timings: dict[str, dict[str, float]] = {}
    timed_seams = _install_phase_timers(timings)
    instance = dg.DagsterInstance.ephemeral()
    keys = job["partition_keys"]
    kwargs: dict[str, Any] = {}
    if len(keys) == 1:
        kwargs["partition_key"] = keys[0]
    else:  # one run over the range, as a backfill of the day runs (single_run policy)
        kwargs["tags"] = partition_range_tags(keys[0], keys[-1])
    resources = {
        "shards": ShardSource(shards_file=job["shards_file"]),
        "warehouse": DuckDBWarehouse(path=job["duckdb_path"]),
    }
    import_s = time.perf_counter() - started
    import_rss = _rss_mb()
    profiler = None
    if job.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    result = dg.materialize(
        [asset], resources=resources, instance=instance, raise_on_error=True, **kwargs
    )
    elapsed = time.perf_counter() - t0
    if profiler is not None:
        profiler.disable()
    assert result.success
    # A retried step re-reads everything: the time then includes the retry delay.
    retries = sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")
    metadata: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        for name, value in event.materialization.metadata.items():
            metadata[name] = getattr(value, "value", str(value))
    with duckdb.connect(job["duckdb_path"], read_only=True) as conn:
        lake_rows, lake_tables = conn.execute(
            "SELECT count(*), count(DISTINCT (_shard, _source_table)) FROM lake.orders"
        ).fetchone()
        try:
            quarantined = conn.execute("SELECT count(*) FROM lake.quarantine").fetchone()[0]
        except duckdb.Error:
            quarantined = 0
    out: dict[str, Any] = {
        "elapsed_s": elapsed,
        "import_s": import_s,
        "import_rss_mb": import_rss,
        "lake_rows": lake_rows,
        "lake_tables": lake_tables,
        "quarantined_rows": quarantined,
        "retries": retries,
        "metadata": metadata,
        "phases": timings,
        "timed_seams": timed_seams,
        "minato_module": assets.__file__,
    }
    if profiler is not None:
        out["profile"] = _profile_summary(profiler, job["minato_root"])
    return out


def _profile_summary(profiler: Any, root: str) -> list[str]:
    import io
    import pstats

    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        rows.append((filename, line, func, ncalls, tottime, cumtime))
    lines = ["project functions by cumulative time (s):"]
    own = [
        r
        for r in rows
        if r[0].startswith(root) and not any(p in r[0] for p in ("/bench/", "site-packages"))
    ]
    for filename, line, func, ncalls, _, cumtime in sorted(own, key=lambda r: -r[5])[:15]:
        short = os.path.relpath(filename, root)
        lines.append(f"  {cumtime:8.3f}  {ncalls:>8}  {short}:{line} {func}")
    lines.append(
        "all functions by own time (s; the main thread only: reader threads are not seen):"
    )
    for filename, line, func, ncalls, tottime, _ in sorted(rows, key=lambda r: -r[4])[:20]:
        short = filename if len(filename) < 60 else "…" + filename[-57:]
        lines.append(f"  {tottime:8.3f}  {ncalls:>8}  {short}:{line} {func}")
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(1)
    lines.append(buffer.getvalue().strip().splitlines()[0].strip())
    return lines


def worker_dlt(job: dict[str, Any]) -> dict[str, Any]:
    # No telemetry (no network), and one connection at a time: dlt's default round robin
    # opens a connection per table and fails with "Too many connections" at ~500 tables.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["EXTRACT__NEXT_ITEM_MODE"] = "fifo"
    os.environ["DLT_DATA_DIR"] = job["work_dir"]
    started = time.perf_counter()
    import dlt
    import duckdb
    from dlt.sources.sql_database import sql_database

    import_s = time.perf_counter() - started
    import_rss = _rss_mb()
    pipeline = dlt.pipeline(
        pipeline_name="bench_dlt",
        pipelines_dir=str(Path(job["work_dir"]) / "pipelines"),
        destination=dlt.destinations.duckdb(job["duckdb_path"]),
        dataset_name="lake",
    )
    t0 = time.perf_counter()
    for source_job in job["sources"]:
        source = sql_database(
            credentials=data.shard_url(source_job["database"]).split("?")[0]
            + job.get("url_query", ""),
            table_names=source_job["tables"],
            backend="pyarrow",
        )
        for resource in source.resources.values():
            resource.apply_hints(table_name="orders")  # merged into one table, like Minato
        if job.get("parallelize"):
            source = source.parallelize()
        pipeline.run(source)
    elapsed = time.perf_counter() - t0
    with duckdb.connect(job["duckdb_path"], read_only=True) as conn:
        rows = conn.execute("SELECT count(*) FROM lake.orders").fetchone()[0]
    return {
        "elapsed_s": elapsed,
        "import_s": import_s,
        "import_rss_mb": import_rss,
        "lake_rows": rows,
    }


def worker_raw(job: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa

    method = job["method"]
    query = job["query"]
    import_rss = _rss_mb()
    rows = 0
    t0 = time.perf_counter()
    if method.startswith("connectorx"):
        import connectorx as cx

        url = f"mysql://{data.USER}@{data.HOST}:{data.PORT}/{job['database']}"
        if method == "connectorx_stream":
            reader = cx.read_sql(url, query, return_type="arrow_stream", batch_size=10_000)
            for batch in reader:
                rows += batch.num_rows
        elif method == "connectorx_arrow":
            rows = cx.read_sql(url, query, return_type="arrow").num_rows
        else:  # connectorx_2_partitions
            table = cx.read_sql(
                url, query, return_type="arrow", partition_on="order_id", partition_num=2
            )
            rows = table.num_rows
    elif method == "mysqlclient_sscursor":
        if job.get("mysqlclient_path"):
            sys.path.insert(0, job["mysqlclient_path"])
        import MySQLdb
        import MySQLdb.cursors

        conn = MySQLdb.connect(
            host=data.HOST,
            port=data.PORT,
            user=data.USER,
            db=job["database"],
            charset="utf8mb4",
            autocommit=True,
        )
        cursor = conn.cursor(MySQLdb.cursors.SSCursor)
        cursor.execute(query)
        names = [d[0] for d in cursor.description]
        while True:
            chunk = cursor.fetchmany(100_000)
            if not chunk:
                break
            columns = list(zip(*chunk, strict=True))
            batch = pa.record_batch([pa.array(c) for c in columns], names=names)
            rows += batch.num_rows
        conn.close()
    else:
        raise ValueError(method)
    return {"elapsed_s": time.perf_counter() - t0, "rows": rows, "import_rss_mb": import_rss}


def worker_cli(job: dict[str, Any]) -> dict[str, Any]:
    """`minato ingest` as an operator runs it: a fresh process, timed from its start."""
    import duckdb

    home = Path(job["data_dir"]) / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": job["minato_root"],
        "DAGSTER_HOME": str(home),
        "MINATO_DATA_DIR": job["data_dir"],
        "MINATO_SHARDS_FILE": job["shards_file"],
        "MINATO_WAREHOUSE": "duckdb",
        "MINATO_DUCKDB_PATH": job["duckdb_path"],
    }
    day, shard = job["partition_keys"][0].split("|")
    command = [sys.executable, "-c", "from pipelines.cli import main; main()", "ingest"]
    command += ["--day", day, "--shard", shard, "--table", "orders"]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=job["minato_root"], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
    if done.returncode != 0:
        raise RuntimeError(f"minato ingest exited with {done.returncode}")
    with duckdb.connect(job["duckdb_path"], read_only=True) as conn:
        lake_rows, lake_tables = conn.execute(
            "SELECT count(*), count(DISTINCT _source_table) FROM lake.orders"
        ).fetchone()
        quarantined = conn.execute("SELECT count(*) FROM lake.quarantine").fetchone()[0]
    return {
        "elapsed_s": elapsed,
        "lake_rows": lake_rows,
        "lake_tables": lake_tables,
        "quarantined_rows": quarantined,
        "output": done.stdout.strip().splitlines()[:3],
    }


WORKERS = {"minato": worker_minato, "dlt": worker_dlt, "raw": worker_raw, "cli": worker_cli}
# (name, URL query, .parallelize()): pymysql >= 1.1 builds a TLS context for every connection
# unless told not to (~28 ms here; the server has TLS disabled), and dlt connects per table.
DLT_VARIANTS = (
    ("dlt_small", "", False),
    ("dlt_small_nossl", "?ssl_disabled=true", False),
    ("dlt_small_nossl_parallelize", "?ssl_disabled=true", True),
)


# --------------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------------


class Runner:
    """Runs workers one at a time, bounded in time and memory, and measures them from outside."""

    def __init__(self, work_dir: Path, timeout_s: float, rss_limit_mb: float) -> None:
        import psutil

        self.work_dir = work_dir
        self.timeout_s = timeout_s
        self.rss_limit_mb = rss_limit_mb
        self.server = next(
            (p for p in psutil.process_iter(["name"]) if p.info["name"] in ("mariadbd", "mysqld")),
            None,
        )
        self.count = 0

    def _server_cpu(self) -> float | None:
        if self.server is None:
            return None
        try:
            times = self.server.cpu_times()
        except Exception:
            return None
        return times.user + times.system

    def run(self, kind: str, label: str, job: dict[str, Any]) -> dict[str, Any]:
        import psutil

        self.count += 1
        stem = self.work_dir / f"{self.count:02d}_{label}"
        job_path, result_path, log_path = (stem.with_suffix(s) for s in (".job", ".json", ".log"))
        job_path.write_text(json.dumps(job))
        opened_before = server_status("Opened_tables")
        cpu_before = self._server_cpu()
        busy_before = _machine_busy_s()
        started = time.perf_counter()
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
        command += ["--job", str(job_path), "--result", str(result_path)]
        print(f"  running {label} …", flush=True)
        with log_path.open("w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        killed = None
        sampled_peak = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                rss = watched.memory_info().rss
                rss += sum(c.memory_info().rss for c in watched.children(recursive=True))
                sampled_peak = max(sampled_peak, rss / MB)
            except psutil.Error:
                pass
            if killed is None and sampled_peak > self.rss_limit_mb:
                killed = f"RSS above {self.rss_limit_mb:.0f} MB"
                proc.kill()
            elif killed is None and time.perf_counter() - started > self.timeout_s:
                killed = f"time limit {self.timeout_s:.0f} s"
                proc.kill()
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        cpu_after = self._server_cpu()
        busy = _machine_busy_s() - busy_before
        outcome: dict[str, Any] = {
            "ok": False,
            "process_wall_s": wall,
            "peak_rss_mb": max(usage.ru_maxrss / 1024, sampled_peak),
            "client_cpu_s": usage.ru_utime + usage.ru_stime,
            "server_cpu_s": (cpu_after - cpu_before) if cpu_before is not None else None,
            # CPU used meanwhile by anything but this worker and the server: other load on
            # the machine, which makes the numbers noisy when it is large.
            "other_cpu_s": max(
                0.0,
                busy
                - (usage.ru_utime + usage.ru_stime)
                - ((cpu_after - cpu_before) if cpu_before is not None else 0.0),
            ),
            "server_opened_tables": server_status("Opened_tables") - opened_before,
        }
        if killed or proc.returncode != 0 or not result_path.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            outcome["error"] = killed or f"exit code {proc.returncode}"
            print(f"  {label} FAILED ({outcome['error']}); last lines of {log_path}:")
            print("    " + "\n    ".join(tail))
            return outcome
        outcome.update(json.loads(result_path.read_text()))
        outcome["ok"] = True
        return outcome


def _machine_busy_s() -> float:
    import psutil

    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    guests = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # in user already
    return sum(times) - idle - guests


def server_status(name: str) -> int:
    conn = data.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cursor.fetchone()
            return int(row[1]) if row else 0
    finally:
        conn.close()


def server_info() -> dict[str, Any]:
    conn = data.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            version = cursor.fetchone()[0]
            cursor.execute(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('table_open_cache', "
                "'table_definition_cache', 'table_open_cache_instances', "
                "'innodb_buffer_pool_size', 'max_connections')"
            )
            variables = {name: int(value) for name, value in cursor.fetchall()}
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
            uptime = int(cursor.fetchone()[1])
    finally:
        conn.close()
    return {
        "mariadb_version": version,
        "server_uptime_s": uptime,
        **{f"server_{k}": v for k, v in sorted(variables.items())},
    }


def machine_info() -> dict[str, Any]:
    import psutil

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine_nproc": os.cpu_count(),
        "machine_memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
    }


def minato_source(ref: str | None, work_dir: Path) -> tuple[str, dict[str, Any]]:
    """The Minato tree to measure: the working tree, or `git archive <ref>` of it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
        ).stdout.rstrip("\n")

    info: dict[str, Any] = {"minato_git_head": git("rev-parse", "--short", "HEAD")}
    if ref is None:
        root = REPO_ROOT
        dirty = git("status", "--porcelain", "--", "assets", "resources").splitlines()
        info["minato_tree"] = "working tree" + (" (uncommitted changes)" if dirty else "")
        info["minato_uncommitted_files"] = ", ".join(line[3:] for line in dirty)
    else:
        root = work_dir / "minato_src"
        root.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", ref], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        info["minato_tree"] = f"git {ref} ({git('rev-parse', '--short', ref)})"
    # Identifies the measured code even when uncommitted: every module of assets/ and resources/.
    digest = hashlib.sha256()
    for path in sorted([*root.glob("assets/**/*.py"), *root.glob("resources/**/*.py")]):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    info["minato_code_sha256"] = digest.hexdigest()[:12]
    return str(root), info


def write_shards_file(path: Path, shards: list[tuple[str, str, str]]) -> str:
    import yaml

    document = {
        "shards": [
            {"name": name, "url": data.shard_url(db), "timezone": tz} for name, db, tz in shards
        ]
    }
    path.write_text(yaml.safe_dump(document))
    return str(path)


def _mysqlclient_available(path: str | None) -> bool:
    code = "import MySQLdb"
    if path:
        code = f"import sys; sys.path.insert(0, {path!r}); " + code
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def _rate(count: float, outcome: dict[str, Any]) -> float | None:
    if not outcome.get("ok") or not outcome.get("elapsed_s"):
        return None
    return count / outcome["elapsed_s"]


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=10_000, help="small tables in all")
    parser.add_argument("--rows-per-table", type=int, default=20)
    parser.add_argument("--big-rows", type=int, default=5_000_000)
    parser.add_argument("--dlt-tables", type=int, default=1_000, help="dlt's sample of tables")
    parser.add_argument("--recreate", action="store_true", help="regenerate the data")
    parser.add_argument(
        "--drop-data", action="store_true", help="drop the benchmark databases and exit"
    )
    parser.add_argument(
        "--scale-tables", type=int, default=100_000, help="client tables of the scale shard"
    )
    parser.add_argument("--scale-rows-per-table", type=int, default=5)
    parser.add_argument("--skip-scale", action="store_true", help="no scale-shard measurements")
    parser.add_argument("--skip-small", action="store_true", help="no 10,000-table measurements")
    parser.add_argument("--skip-big", action="store_true", help="no big-table measurements")
    parser.add_argument("--skip-dlt", action="store_true", help="no dlt runs")
    parser.add_argument("--skip-dlt-big", action="store_true", help="no dlt on the big table")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="Minato small-table runs; the fastest counts"
    )
    parser.add_argument(
        "--minato-ref", help="measure `git archive REF` instead of the working tree"
    )
    parser.add_argument(
        "--mysqlclient-path",
        default=os.environ.get("MINATO_BENCH_MYSQLCLIENT_PATH"),
        help="extra sys.path entry holding MySQLdb (default: $MINATO_BENCH_MYSQLCLIENT_PATH)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument("--rss-limit-mb", type=float, default=12_288, help="kill above this")
    parser.add_argument("--result", type=Path, default=DEFAULT_RESULT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        job = json.loads(args.job.read_text())
        out = WORKERS[args.worker](job)
        args.result.write_text(json.dumps(out, default=str))
        return 0

    if args.drop_data:
        print("dropped " + ", ".join(data.drop_data()))
        return 0
    if (
        args.tables < 2
        or args.rows_per_table < 1
        or args.big_rows < 1
        or not 1 <= args.repeat <= 10
    ):
        parser.error("--tables >= 2, --rows-per-table >= 1, --big-rows >= 1, 1 <= --repeat <= 10")
    work_dir = Path(tempfile.mkdtemp(prefix="minato_bench_ingest_"))
    try:
        return _orchestrate(args, work_dir)
    finally:
        if args.keep:
            print(f"work directory kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def _orchestrate(args: argparse.Namespace, work_dir: Path) -> int:
    spec = data.DataSpec(BENCH_DAY, args.tables, args.rows_per_table, args.big_rows)
    report: dict[str, Any] = {**machine_info(), **server_info(), "server_settings_changed": False}
    print(
        f"bench-ingest {report['date']}: {report['machine_nproc']} cores, "
        f"{report['machine_memory_gb']} GB, MariaDB {report['mariadb_version']} "
        f"(table_open_cache {report['server_table_open_cache']}, "
        f"table_definition_cache {report['server_table_definition_cache']}: server defaults, "
        "not changed)"
    )
    busy_before = _machine_busy_s()
    time.sleep(3)
    report["machine_busy_cores_at_start"] = round((_machine_busy_s() - busy_before) / 3, 2)
    if report["machine_busy_cores_at_start"] > 0.2:
        print(
            f"Warning: the machine is busy before the benchmark starts "
            f"({report['machine_busy_cores_at_start']} of {os.cpu_count()} cores in use)."
        )
    generated = data.ensure_data(spec, recreate=args.recreate, want_big=not args.skip_big)
    report.update({f"data_{k}": v for k, v in generated.items()})
    report.update(
        {
            "bench_day": BENCH_DAY,
            "small_tables": spec.tables,
            "rows_per_table": spec.rows_per_table,
            "small_rows": spec.tables * spec.rows_per_table,
            "big_rows": spec.big_rows if not args.skip_big else None,
            "amount_column_type": "DECIMAL(12,2)",
        }
    )
    minato_root, minato_info = minato_source(args.minato_ref, work_dir)
    report.update(minato_info)
    print(f"Minato measured: {report['minato_tree']}, code {report['minato_code_sha256']}")
    runner = Runner(work_dir, args.timeout, args.rss_limit_mb)
    small_shards = list(data.SMALL_SHARDS)
    small_keys = [f"{BENCH_DAY}|{name}" for name, _, _ in small_shards]
    small_yaml = write_shards_file(work_dir / "shards_small.yaml", small_shards)
    big_yaml = write_shards_file(work_dir / "shards_big.yaml", [data.BIG_SHARD])
    results: dict[str, dict[str, Any]] = {}

    def minato_job(name: str, shards_file: str, keys: list[str], **extra: Any) -> dict[str, Any]:
        (work_dir / name).mkdir()
        return {
            "minato_root": minato_root,
            "data_dir": str(work_dir / name),
            "shards_file": shards_file,
            "partition_keys": keys,
            "duckdb_path": str(work_dir / name / "warehouse.duckdb"),
            **extra,
        }

    # 1. Raw drivers alone on the big table.
    raw_methods = ["connectorx_stream", "connectorx_arrow", "connectorx_2_partitions"]
    mysqlclient = _mysqlclient_available(args.mysqlclient_path)
    report["mysqlclient_measured"] = mysqlclient
    if mysqlclient:
        raw_methods.append("mysqlclient_sscursor")
    if not args.skip_big:
        low, high = data.day_window(BENCH_DAY, data.BIG_SHARD[2])
        query = (
            f"SELECT * FROM {data.BIG_TABLE} WHERE updated_at >= '{low}' AND updated_at < '{high}'"
        )
        print("raw drivers on the big table:")
        for method in raw_methods:
            results[f"raw_{method}"] = runner.run(
                "raw",
                f"raw_{method}",
                {
                    "method": method,
                    "query": query,
                    "database": data.BIG_DB,
                    "mysqlclient_path": args.mysqlclient_path,
                },
            )

    # 2. Minato on the small tables, timed; then profiled.
    if not args.skip_small:
        print(
            f"Minato on {spec.tables} small tables ({len(small_keys)} partitions in one run), "
            f"best of {args.repeat}:"
        )
        attempts = [
            runner.run(
                "minato",
                f"minato_small_{n}",
                minato_job(f"minato_small_{n}", small_yaml, small_keys),
            )
            for n in range(1, args.repeat + 1)
        ]
        done = [a for a in attempts if a.get("ok")]
        results["minato_small"] = min(done, key=lambda a: a["elapsed_s"]) if done else attempts[0]
        if done:
            results["minato_small"]["all_elapsed_s"] = [round(a["elapsed_s"], 3) for a in attempts]
            results["minato_small"]["peak_rss_mb"] = max(a["peak_rss_mb"] for a in attempts)
        if not args.no_profile:
            results["minato_small_profile"] = runner.run(
                "minato",
                "minato_small_profile",
                minato_job("minato_small_profile", small_yaml, small_keys, profile=True),
            )

    # 3. dlt on a sample of the small tables.
    dlt_sample = min(args.dlt_tables, spec.tables)
    if not args.skip_dlt and not args.skip_small:
        per_shard = data.tables_per_shard(data.DataSpec(BENCH_DAY, dlt_sample, 1, 1))
        sources = [
            {"database": db, "tables": [f"orders_{c}" for c in data.client_ids(index, n)]}
            for index, ((_, db, _), n) in enumerate(zip(small_shards, per_shard, strict=True))
        ]
        run_dlt_variants(runner, work_dir, results, "", sources, dlt_sample)

    # 3b. The seed's scale: one shard of --scale-tables client tables, through the asset and
    # through `minato ingest` (process start included); dlt on a sample of it.
    if not args.skip_scale:
        scale_spec = data.DataSpec(BENCH_DAY, args.scale_tables, args.scale_rows_per_table, 1)
        report.update(
            {
                f"data_{k}": v
                for k, v in data.ensure_scale_data(scale_spec, recreate=args.recreate).items()
            }
        )
        scale_yaml = write_shards_file(work_dir / "shards_scale.yaml", [data.SCALE_SHARD])
        scale_keys = [f"{BENCH_DAY}|{data.SCALE_SHARD[0]}"]
        print(f"Minato on the scale shard ({args.scale_tables:,} tables), asset:")
        results["minato_scale"] = runner.run(
            "minato", "minato_scale", minato_job("minato_scale", scale_yaml, scale_keys)
        )
        print("Minato on the scale shard, `minato ingest`:")
        results["minato_scale_cli"] = runner.run(
            "cli", "minato_scale_cli", minato_job("minato_scale_cli", scale_yaml, scale_keys)
        )
        if not args.no_profile:
            results["minato_scale_profile"] = runner.run(
                "minato",
                "minato_scale_profile",
                minato_job("minato_scale_profile", scale_yaml, scale_keys, profile=True),
            )
        if not args.skip_dlt:
            sample = min(args.dlt_tables, args.scale_tables)
            first = data.SCALE_FIRST_CLIENT
            sources = [
                {
                    "database": data.SCALE_SHARD[1],
                    "tables": [f"orders_{c}" for c in range(first, first + sample)],
                }
            ]
            run_dlt_variants(runner, work_dir, results, "scale_", sources, sample)

    # 4. The big table: Minato, then dlt.
    if not args.skip_big:
        print(f"Minato on the big table ({spec.big_rows:,} rows):")
        results["minato_big"] = runner.run(
            "minato",
            "minato_big",
            minato_job("minato_big", big_yaml, [f"{BENCH_DAY}|{data.BIG_SHARD[0]}"]),
        )
        if not args.skip_dlt and not args.skip_dlt_big:
            print("dlt on the big table:")
            (work_dir / "dlt_big").mkdir()
            results["dlt_big"] = runner.run(
                "dlt",
                "dlt_big",
                {
                    "sources": [{"database": data.BIG_DB, "tables": [data.BIG_TABLE]}],
                    "work_dir": str(work_dir / "dlt_big"),
                    "duckdb_path": str(work_dir / "dlt_big" / "dlt.duckdb"),
                },
            )

    summarize(report, results, spec, dlt_sample, args)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.result}")
    return 0 if all(r.get("ok") for r in results.values()) else 1


def run_dlt_variants(
    runner: Runner,
    work_dir: Path,
    results: dict[str, dict[str, Any]],
    prefix: str,
    sources: list[dict[str, Any]],
    sample: int,
) -> None:
    """dlt's variants (DLT_VARIANTS) on `sample` tables; results under `<prefix><variant>`."""
    for variant, url_query, parallelize in DLT_VARIANTS:
        if prefix and not url_query:
            continue  # the TLS probe only loses: measured on the small tables already
        name = prefix + variant
        print(f"dlt on {sample} tables ({name}):")
        (work_dir / name).mkdir()
        results[name] = runner.run(
            "dlt",
            name,
            {
                "sources": sources,
                "parallelize": parallelize,
                "url_query": url_query,
                "work_dir": str(work_dir / name),
                "duckdb_path": str(work_dir / name / "dlt.duckdb"),
            },
        )


def summarize(
    report: dict[str, Any],
    results: dict[str, dict[str, Any]],
    spec: data.DataSpec,
    dlt_sample: int,
    args: argparse.Namespace,
) -> None:
    def put(prefix: str, outcome: dict[str, Any] | None) -> None:
        if outcome is None:
            return
        report[f"{prefix}_ok"] = outcome.get("ok", False)
        if outcome.get("error"):
            report[f"{prefix}_error"] = outcome["error"]
        for key in (
            "elapsed_s",
            "peak_rss_mb",
            "client_cpu_s",
            "server_cpu_s",
            "other_cpu_s",
            "import_rss_mb",
        ):
            if outcome.get(key) is not None:
                report[f"{prefix}_{key}"] = round(outcome[key], 3)
        if outcome.get("server_opened_tables") is not None:
            report[f"{prefix}_server_opened_tables"] = outcome["server_opened_tables"]

    small = results.get("minato_small", {})
    put("minato_small", small)
    report["minato_tables_per_s"] = _round(_rate(spec.tables, small))
    report["minato_small_rows_per_s"] = _round(_rate(spec.tables * spec.rows_per_table, small))
    if small.get("ok"):
        report["minato_small_lake_rows"] = small["lake_rows"]
        report["minato_small_lake_tables"] = small["lake_tables"]
        report["minato_small_quarantined_rows"] = small["quarantined_rows"]
        report["minato_small_retries"] = small["retries"]
        report["minato_small_all_elapsed_s"] = ", ".join(map(str, small["all_elapsed_s"]))
        report["minato_small_rows_match"] = (
            small["lake_rows"] + small["quarantined_rows"] == spec.tables * spec.rows_per_table
        )
        report["minato_small_import_s"] = round(small["import_s"], 3)
        for phase, slot in small.get("phases", {}).items():
            report[f"minato_small_phase_{phase}_s"] = round(slot["s"], 3)
            report[f"minato_small_phase_{phase}_calls"] = slot["calls"]
        report["minato_timed_seams"] = ", ".join(small.get("timed_seams", []))

    # dlt: the better of the two variants is the comparison.
    dlt_runs = {k: results[k] for k, _, _ in DLT_VARIANTS if k in results}
    for name, outcome in dlt_runs.items():
        put(name, outcome)
        report[f"{name}_tables_per_s"] = _round(_rate(dlt_sample, outcome), 1)
        if outcome.get("ok"):
            report[f"{name}_lake_rows"] = outcome["lake_rows"]
    best_dlt = max(
        (k for k in dlt_runs if report.get(f"{k}_tables_per_s")),
        key=lambda k: report[f"{k}_tables_per_s"],
        default=None,
    )
    report["dlt_tables_measured"] = dlt_sample if dlt_runs else 0
    report["dlt_variant"] = best_dlt
    report["dlt_tables_per_s"] = report.get(f"{best_dlt}_tables_per_s") if best_dlt else None
    report["dlt_peak_rss_mb"] = report.get(f"{best_dlt}_peak_rss_mb") if best_dlt else None
    report["tables_ratio_vs_dlt"] = _ratio(
        report["minato_tables_per_s"], report["dlt_tables_per_s"]
    )

    # The scale shard: the asset (timed around materialize) and `minato ingest` (timed from
    # the process start); dlt on a sample of the same shard.
    scale_tables = args.scale_tables
    scale_rows = scale_tables * args.scale_rows_per_table
    scale, cli = results.get("minato_scale"), results.get("minato_scale_cli")
    if scale or cli:
        report["scale_tables"] = scale_tables
        report["scale_rows_per_table"] = args.scale_rows_per_table
    for prefix, outcome in (("minato_scale", scale), ("minato_scale_cli", cli)):
        put(prefix, outcome)
        if outcome and outcome.get("ok"):
            report[f"{prefix}_lake_tables"] = outcome["lake_tables"]
            report[f"{prefix}_rows_match"] = (
                outcome["lake_rows"] + outcome["quarantined_rows"] == scale_rows
            )
            for phase, slot in outcome.get("phases", {}).items():
                report[f"{prefix}_phase_{phase}_s"] = round(slot["s"], 3)
    report["minato_tables_per_s_100k"] = _round(_rate(scale_tables, scale or {}))
    report["minato_cli_tables_per_s_100k"] = _round(_rate(scale_tables, cli or {}))
    report["minato_peak_rss_mb_100k"] = _round(
        max((o.get("peak_rss_mb") or 0 for o in (scale or {}, cli or {})), default=0) or None
    )
    scale_dlt = {
        f"scale_{k}": results[f"scale_{k}"] for k, _, _ in DLT_VARIANTS if f"scale_{k}" in results
    }
    scale_sample = min(args.dlt_tables, scale_tables)
    for name, outcome in scale_dlt.items():
        put(name, outcome)
        report[f"{name}_tables_per_s"] = _round(_rate(scale_sample, outcome), 1)
    best_scale_dlt = max(
        (k for k in scale_dlt if report.get(f"{k}_tables_per_s")),
        key=lambda k: report[f"{k}_tables_per_s"],
        default=None,
    )
    if scale_dlt:
        report["dlt_tables_measured_100k"] = scale_sample
        report["dlt_variant_100k"] = best_scale_dlt
        report["dlt_tables_per_s_100k"] = (
            report[f"{best_scale_dlt}_tables_per_s"] if best_scale_dlt else None
        )
        report["tables_ratio_vs_dlt_100k"] = _ratio(
            report["minato_tables_per_s_100k"], report["dlt_tables_per_s_100k"]
        )
        report["cli_tables_ratio_vs_dlt_100k"] = _ratio(
            report["minato_cli_tables_per_s_100k"], report["dlt_tables_per_s_100k"]
        )

    # The big table.
    raw_rates = {}
    for key, outcome in results.items():
        if key.startswith("raw_"):
            put(key, outcome)
            rate = _rate(outcome.get("rows", 0), outcome)
            report[f"{key}_rows_per_s"] = _round(rate)
            if rate and outcome.get("rows") == spec.big_rows:
                raw_rates[key[4:]] = rate
    fastest = max(raw_rates, key=raw_rates.get, default=None)
    report["raw_driver_name"] = fastest
    report["raw_driver_rows_per_s"] = _round(raw_rates.get(fastest)) if fastest else None
    report["raw_driver_peak_rss_mb"] = report.get(f"raw_{fastest}_peak_rss_mb")
    big = results.get("minato_big")
    put("minato_big", big)
    report["minato_big_rows_per_s"] = _round(_rate(spec.big_rows, big)) if big else None
    if big and big.get("ok"):
        report["minato_big_lake_rows"] = big["lake_rows"]
        report["minato_big_retries"] = big["retries"]
        report["minato_big_rows_match"] = (
            big["lake_rows"] + big["quarantined_rows"] == spec.big_rows
        )
        for phase, slot in big.get("phases", {}).items():
            report[f"minato_big_phase_{phase}_s"] = round(slot["s"], 3)
    report["big_ratio_vs_raw"] = _ratio(
        report["minato_big_rows_per_s"], report["raw_driver_rows_per_s"], 3
    )
    dlt_big = results.get("dlt_big")
    put("dlt_big", dlt_big)
    report["dlt_big_rows_per_s"] = _round(_rate(spec.big_rows, dlt_big)) if dlt_big else None
    rss = [report.get(k) for k in ("minato_small_peak_rss_mb", "minato_big_peak_rss_mb")]
    report["minato_peak_rss_mb"] = _round(max((r for r in rss if r is not None), default=None))

    report["goal_tables_per_s_100k_met"] = (
        report["minato_cli_tables_per_s_100k"] or 0
    ) >= GOAL_TABLES_PER_S
    report["goal_tables_per_s_met"] = (report["minato_tables_per_s"] or 0) >= GOAL_TABLES_PER_S
    report["goal_tables_ratio_met"] = (report["tables_ratio_vs_dlt"] or 0) >= GOAL_TABLES_RATIO
    report["goal_big_ratio_met"] = (report["big_ratio_vs_raw"] or 0) >= GOAL_BIG_RATIO
    report["goal_rss_met"] = (report["minato_peak_rss_mb"] or 1e12) < GOAL_RSS_MB
    report["command"] = "make bench-ingest" if not sys.argv[1:] else shlex_join(sys.argv)

    print_table(report, results, spec, dlt_sample)


def shlex_join(argv: list[str]) -> str:
    import shlex

    return ".venv/bin/python bench/ingest.py " + shlex.join(argv[1:])


def _round(value: float | None, digits: int = 0) -> float | int | None:
    if value is None:
        return None
    return round(value) if digits == 0 else round(value, digits)


def _ratio(a: float | None, b: float | None, digits: int = 1) -> float | None:
    if not a or not b:
        return None
    return round(a / b, digits)


def print_table(
    report: dict[str, Any], results: dict[str, dict[str, Any]], spec: data.DataSpec, sample: int
) -> None:
    r = report
    print()
    print(f"Small tables: {spec.tables:,} × {spec.rows_per_table} rows over 2 shards")
    print(f"  {'':26}{'Minato':>14}{'dlt (pyarrow)':>16}{'ratio':>9}")
    print(
        f"  {'tables/s':26}{_fmt(r['minato_tables_per_s']):>14}"
        f"{_fmt(r['dlt_tables_per_s']):>16}{_fmt(r['tables_ratio_vs_dlt']):>8}×"
    )
    dlt_rows = (r["dlt_tables_per_s"] or 0) * spec.rows_per_table or None
    print(f"  {'rows/s':26}{_fmt(r['minato_small_rows_per_s']):>14}{_fmt(_round(dlt_rows)):>16}")
    print(
        f"  {'peak RSS (MB)':26}{_fmt(r.get('minato_small_peak_rss_mb')):>14}"
        f"{_fmt(r.get('dlt_peak_rss_mb')):>16}"
    )
    print(
        f"  {'tables measured':26}{spec.tables:>14,}{r['dlt_tables_measured']:>16,}"
        f"   (dlt: {r['dlt_variant'] or '—'} variant, a sample)"
    )
    if r.get("scale_tables"):
        print()
        print(f"Scale shard: {r['scale_tables']:,} tables × {r['scale_rows_per_table']} rows")
        print(
            f"  asset {_fmt(r['minato_tables_per_s_100k'])} tables/s, `minato ingest` "
            f"{_fmt(r['minato_cli_tables_per_s_100k'])} tables/s (process start included), "
            f"peak RSS {_fmt(r['minato_peak_rss_mb_100k'])} MB; dlt "
            f"{_fmt(r.get('dlt_tables_per_s_100k'))} tables/s on a sample of "
            f"{_fmt(r.get('dlt_tables_measured_100k'))} ({r.get('dlt_variant_100k') or '—'}); "
            f"ratio {_fmt(r.get('cli_tables_ratio_vs_dlt_100k'))}× (CLI), "
            f"{_fmt(r.get('tables_ratio_vs_dlt_100k'))}× (asset)"
        )
    if r.get("big_rows"):
        print()
        print(f"Big table: {spec.big_rows:,} rows")
        print(f"  {'':32}{'rows/s':>12}{'peak RSS MB':>13}")
        lines = [("Minato (end to end)", "minato_big", "minato_big_rows_per_s")]
        lines += [(f"raw {k[4:]}", k, f"{k}_rows_per_s") for k in results if k.startswith("raw_")]
        if "dlt_big" in results:
            lines.append(("dlt pyarrow", "dlt_big", "dlt_big_rows_per_s"))
        for label, key, rate_key in lines:
            error = r.get(f"{key}_error")
            print(
                f"  {label:32}{_fmt(r.get(rate_key)):>12}{_fmt(r.get(f'{key}_peak_rss_mb')):>13}"
                + (f"  FAILED: {error}" if error else "")
            )
        ratio = _fmt(r["big_ratio_vs_raw"], 3)
        print(f"  Minato / fastest raw driver ({r['raw_driver_name']}): {ratio}×")
    print()
    verdicts = [
        ("≥ 5,000 tables/s", "goal_tables_per_s_met"),
        ("≥ 50× dlt tables/s", "goal_tables_ratio_met"),
        ("big table ≥ 0.8× raw", "goal_big_ratio_met"),
        ("peak RSS < 1 GiB", "goal_rss_met"),
    ]
    print("Goals: " + "; ".join(f"{t}: {'met' if r[k] else 'NOT met'}" for t, k in verdicts))
    noisy = {
        k[: -len("_other_cpu_s")]: v
        for k, v in r.items()
        if k.endswith("_other_cpu_s")
        and v > max(1.0, 0.1 * (r.get(k.replace("other_cpu", "elapsed")) or 1e9))
    }
    if noisy:
        print(
            "Warning: other processes used CPU during "
            + ", ".join(f"{k} ({v:.1f} s)" for k, v in noisy.items())
            + ": those numbers are noisy (2 cores shared)."
        )
    for run in ("small", "scale", "big"):
        prefix = f"minato_{run}_phase_"
        phases = {k: v for k, v in r.items() if k.startswith(prefix) and k.endswith("_s")}
        if phases:
            print()
            print(f"Minato {run} run: {r.get(f'minato_{run}_elapsed_s')} s end to end; inside it:")
            for key, value in phases.items():
                print(f"  {key[len(prefix) : -2]:12} {value:8.3f} s")
    for run in ("small", "scale"):
        profile = results.get(f"minato_{run}_profile", {}).get("profile")
        if profile:
            print()
            print(f"cProfile of a further Minato {run} run (slower under the profiler):")
            print("  " + "\n  ".join(profile))


if __name__ == "__main__":
    sys.exit(main())
