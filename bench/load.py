"""`make bench-load`: Dagster at thousands of generated dbt models, Minato vs plain @dbt_assets.

For each size N (1,000 / 5,000 / 10,000), in a temporary copy of the dbt project (never the
repository's dbt_project/):

1. synthetic metadata for N lake tables (bench/load_metadata.py) -> `minato generate cleansing`
   renders N cleansing models (each with its key tests) -> `dbt parse` (timed);
2. two code locations over that same manifest, each in its own processes:
   - plain: `@dbt_assets(manifest=...)` with the default translator, as the docs show it;
   - minato: `minato_dbt_assets` + `MinatoDbtTranslator` (assets/dbt_models/specs_cache.py),
     the mechanism the real code location uses; its spec cache is built once first, as
     `minato manifest` does at build time (timed apart: `minato_cache_build_s`);
3. per location: module import time, `dagster definitions validate` wall time and peak RSS;
   for Minato also the time until `dagster dev` serves the asset graph (GraphQL `assetNodes`
   returns every model), started in its own process group and stopped by killing that group.

Also `generator_100k_s`: rendering 100,000 tables x 20 columns of metadata in memory (and,
apart, writing the 400,000 files). Results: bench/results/load.json.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load_metadata import write_metadata, write_sources

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent

PLAIN = """
from pathlib import Path
import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

PROJECT = Path(__file__).parent / "project"


@dbt_assets(manifest=PROJECT / "target" / "manifest.json")
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


defs = dg.Definitions(
    assets=[dbt_models], resources={"dbt": DbtCliResource(project_dir=str(PROJECT))}
)
"""

MINATO = """
from pathlib import Path
import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from assets.dbt_models.specs_cache import minato_dbt_assets
from assets.dbt_models.translator import MinatoDbtTranslator

PROJECT = DbtProject(project_dir=Path(__file__).parent / "project", target="duckdb")
TRANSLATOR = MinatoDbtTranslator(warehouse_kind="duckdb")


@minato_dbt_assets(project=PROJECT, translator=TRANSLATOR, select="fqn:*", name="dbt_models")
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


# One multi-asset per chunk of models (specs_cache.CHUNK_MODELS).
defs = dg.Definitions(assets=dbt_models, resources={"dbt": DbtCliResource(project_dir=PROJECT)})
"""


def _env(work: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{work}",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # dbt beside this Python
        "MINATO_WAREHOUSE": "duckdb",
        "MINATO_DUCKDB_PATH": str(work / "warehouse.duckdb"),
        "DAGSTER_HOME": str(work / "dagster_home"),
        "DO_NOT_TRACK": "1",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    (work / "dagster_home").mkdir(exist_ok=True)
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[float, str]:
    """Wall seconds and output of a command; raises on failure."""
    start = time.perf_counter()
    result = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{output[-3000:]}")
    return time.perf_counter() - start, result.stdout


def _timed_with_rss(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float):
    """Wall seconds and the child's own peak RSS (wait4), for one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = start + timeout
    output = b""
    os.set_blocking(proc.stdout.fileno(), False)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        chunk = proc.stdout.read()
        if chunk:
            output += chunk
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            raise TimeoutError(" ".join(cmd))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output.decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def _import_s(module: str, env: dict[str, str], cwd: Path, timeout: float) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    _, out = _run([PYTHON, "-c", code], env, cwd, timeout)
    return float(out.strip().splitlines()[-1])


def _cache_build_s(env: dict[str, str], cwd: Path, timeout: float) -> float:
    code = (
        "import time; t = time.perf_counter();"
        "from pathlib import Path; from dagster_dbt import DbtProject;"
        "from assets.dbt_models.specs_cache import write_cached_specs;"
        "from assets.dbt_models.translator import MinatoDbtTranslator;"
        "write_cached_specs(DbtProject(project_dir=Path('project'), target='duckdb'),"
        " MinatoDbtTranslator(warehouse_kind='duckdb'), ['fqn:*']);"
        "print(time.perf_counter() - t)"
    )
    _, out = _run([PYTHON, "-c", code], env, cwd, timeout)
    return float(out.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ui_ready_s(location: str, models: int, env: dict[str, str], cwd: Path, timeout: float):
    """Seconds from starting `dagster dev` until GraphQL lists every model's asset node."""
    port = _free_port()
    log = (cwd / f"dev_{location}.log").open("w")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-f", f"{location}.py", "-p", str(port)],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: webserver, daemon, code server
    )
    query = json.dumps({"query": "{ assetNodes { id } }"}).encode()
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited; see {log.name}")
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=query,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    nodes = json.loads(response.read())["data"]["assetNodes"]
                if len(nodes) >= models:
                    return time.perf_counter() - start
            except (OSError, KeyError, TypeError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev did not serve {models} asset nodes in {timeout} s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _project(work: Path, models: int) -> float:
    """A copy of the dbt project's settings and macros with N generated cleansing models."""
    from pipelines.generate import cleansing, files

    project = work / "project"
    (project / "models" / "lake").mkdir(parents=True)
    for part in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(REPO / "dbt_project" / part, project / part)
    for part in ("macros", "tests/generic"):
        shutil.copytree(REPO / "dbt_project" / part, project / part)
    write_sources(project / "models" / "lake" / "sources.yml", models)
    metadata = work / "metadata"
    write_metadata(metadata, models, masking=False)
    rendered = cleansing.render(metadata)
    start = time.perf_counter()
    files.write(project, rendered, cleansing.OUTPUT_DIRS)
    return time.perf_counter() - start


def measure_generator(tables: int, work: Path, timeout: float) -> float:
    """Seconds to render `tables` x 20 columns of metadata into models, in memory, in a fresh
    process (writing is measured per size: `generate_write_s`)."""
    metadata = work / "metadata_generator"
    write_metadata(metadata, tables)
    code = (
        "import time, sys; from pathlib import Path;"
        "from pipelines.generate import cleansing;"
        "t = time.perf_counter(); out = cleansing.render(Path(sys.argv[1]));"
        "print(time.perf_counter() - t, len(out))"
    )
    _, out = _run([PYTHON, "-c", code, str(metadata)], _env(work), REPO, timeout)
    shutil.rmtree(metadata)
    return float(out.split()[-2])


def measure_size(models: int, base: Path, timeout: float, ui: bool) -> dict:
    work = base / f"n{models}"
    work.mkdir()
    env = _env(work)
    write_s = _project(work, models)
    (work / "plain.py").write_text(PLAIN)
    (work / "minato.py").write_text(MINATO)
    parse_s, _ = _run(
        [
            str(BIN / "dbt"),
            "parse",
            "--quiet",
            "--project-dir",
            "project",
            "--profiles-dir",
            "project",
        ],
        env,
        work,
        timeout,
    )
    # Build time: translate once and cache (what `minato manifest` does for the real project).
    cache_s = _cache_build_s(env, work, timeout)
    result = {
        "models": models,
        "generate_write_s": round(write_s, 2),
        "dbt_parse_s": round(parse_s, 2),
        "minato_cache_build_s": round(cache_s, 2),
    }
    for location in ("plain", "minato"):
        result[f"{location}_import_s"] = round(_import_s(location, env, work, timeout), 2)
        try:
            wall, rss = _timed_with_rss(
                [str(BIN / "dagster"), "definitions", "validate", "-f", f"{location}.py"],
                env,
                work,
                timeout,
            )
        except TimeoutError:  # recorded as "more than the timeout", not as a number
            wall, rss = None, None
        result[f"{location}_load_s"] = None if wall is None else round(wall, 2)
        result[f"{location}_peak_rss_mb"] = None if rss is None else round(rss)
    plain, minato = result["plain_load_s"], result["minato_load_s"]
    result["load_ratio"] = round(minato / plain, 3) if plain and minato else None
    result["timeout_s"] = timeout
    result["ui_ready_s"] = (
        round(_ui_ready_s("minato", models, env, work, timeout), 2) if ui else None
    )
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--generator-tables", type=int, default=100_000)
    parser.add_argument("--skip-ui", action="store_true", help="Do not start dagster dev.")
    parser.add_argument("--timeout", type=float, default=900, help="Seconds per subprocess.")
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "load.json")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="minato-bench-load-"))
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    try:
        generator_s = measure_generator(args.generator_tables, base, args.timeout)
        print(json.dumps({"generator_s": generator_s}), flush=True)
        results = [
            measure_size(int(n), base, args.timeout, not args.skip_ui)
            for n in args.sizes.split(",")
        ]
    finally:
        if args.keep:
            print(f"work directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    report = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in load_before],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "commit": commit,
        "command": "make bench-load"
        + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else ""),
        "generator_tables": args.generator_tables,
        "generator_100k_s": round(generator_s, 2),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    columns = ("models", "dbt_parse_s", "plain_load_s", "minato_load_s", "load_ratio")
    columns += ("plain_peak_rss_mb", "minato_peak_rss_mb", "ui_ready_s")
    print(" ".join(f"{c:>18}" for c in columns))
    for r in results:
        print(" ".join(f"{r[c]!s:>18}" for c in columns))
    print(
        f"generator: {args.generator_tables} tables x 20 columns rendered in {generator_s:.1f} s "
        f"(goal < 10 s); wrote {args.output}"
    )


if __name__ == "__main__":
    main()
