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
4. per location, the UI (bench/dagster_ui.py): seconds from starting `dagster dev`, and apart a
   `dagster code-server start` with a `dagster-webserver` reading it (as a deployment runs
   them), until GraphQL `assetNodes` lists every model; the peak RSS of each process; the
   seconds of one model's lineage query (the asset page). Both locations run with the same
   environment: deploy/dagster.env (gRPC message limits) and gRPC timeouts of `--timeout`, so
   neither is cut off by a default the other does not hit.

Also `generator_100k_s`: rendering 100,000 tables x 20 columns of metadata in memory (and,
apart, writing the 400,000 files). Results: bench/results/load.json, rewritten after each size.

`dbt parse` of 10,000 models takes minutes: `--work-dir DIR` keeps each size's parsed project in
DIR/n<N> and reuses it on later runs (its generate/parse/cache timings are kept beside it in
timings.json and reported again).
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load_metadata import table_names, write_metadata, write_sources

from devtools.dagster_ui import dagster_dev, read_env_file, webserver_with_code_server

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


def _ui(
    location: str, models: int, env: dict[str, str], work: Path, timeout: float, deployed: bool
) -> dict:
    """One UI start of one location: seconds until every model is served, peak RSS per
    process, and one model's lineage query; a location that is not served gives its error."""
    mode = "deploy" if deployed else "dev"
    home = work / f"dagster_home_{mode}_{location}"  # a fresh instance for every start
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    # `dagster dev` gives its code server 180 s to start by default: plain @dbt_assets at 10,000
    # models takes longer ("Timed out waiting for gRPC server to start"), so both get --timeout.
    (home / "dagster.yaml").write_text(
        f"code_servers:\n  local_startup_timeout: {int(timeout)}\ntelemetry:\n  enabled: false\n"
    )
    ui_env = {
        **env,
        "DAGSTER_HOME": str(home),
        **read_env_file(REPO / "deploy" / "dagster.env"),
        "DAGSTER_GRPC_TIMEOUT_SECONDS": str(int(timeout)),
        "DAGSTER_REPOSITORY_GRPC_TIMEOUT_SECONDS": str(int(timeout)),
    }
    start = dagster_dev if not deployed else webserver_with_code_server
    served = start(BIN, work / f"{location}.py", ui_env, work / f"{mode}_{location}.log")
    load = os.getloadavg()[0]
    with served:
        try:
            ready_s, _ = served.wait_for_models(models, timeout)
        except (RuntimeError, TimeoutError) as exc:
            return {"ready_s": None, "error": str(exc)[-2000:], "load_1m": round(load, 2)}
        # A model in the middle of the graph (both translators key it by schema and name): the
        # asset page asks for its lineage.
        key = ["cleansing", f"cleansing_{table_names(models)[models // 2]}"]
        lineage_s, node = served.lineage_s(key)
        if not node["dependencyKeys"]:
            raise RuntimeError(f"{location}: {key} has no upstream in the served graph")
        return {
            "ready_s": round(ready_s, 2),
            "error": None,  # replaces an earlier run's error when merged with --update
            "lineage_s": round(lineage_s, 3),
            "peak_rss_mb": served.peak_rss_mb(),
            "load_1m": round(load, 2),
        }


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


def _prepared(work: Path, models: int, timeout: float) -> dict:
    """Generate, parse and cache one size's project, or reuse the one a --work-dir run left."""
    timings = work / "timings.json"
    if timings.exists():
        return {**json.loads(timings.read_text()), "reused": True}
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
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
    prepared = {
        "generate_write_s": round(write_s, 2),
        "dbt_parse_s": round(parse_s, 2),
        "minato_cache_build_s": round(cache_s, 2),
        "prepared_load_1m": round(os.getloadavg()[0], 2),
    }
    timings.write_text(json.dumps(prepared))
    return {**prepared, "reused": False}


def measure_size(models: int, base: Path, timeout: float, ui: bool, validate: bool) -> dict:
    work = base / f"n{models}"
    result = {"models": models, **_prepared(work, models, timeout)}
    shutil.rmtree(work / "dagster_home", ignore_errors=True)  # no state from an earlier run
    env = _env(work)
    if validate:  # named apart: a later --skip-validate run keeps it
        result["validate_load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    for location in ("plain", "minato") if validate else ():
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
    if validate:
        plain, minato = result["plain_load_s"], result["minato_load_s"]
        result["load_ratio"] = round(minato / plain, 3) if plain and minato else None
    result["timeout_s"] = timeout
    if ui:
        # Interleaved, so both contenders see similar load; `dagster dev` first, as a user.
        for deployed in (False, True):
            for location in ("minato", "plain"):
                measured = _ui(location, models, env, work, timeout, deployed)
                prefix = "" if location == "minato" else "plain_"
                prefix += "deploy_" if deployed else ""
                for name, value in measured.items():
                    result[f"{prefix}ui_{name}"] = value
        minato, plain = result["ui_ready_s"], result["plain_ui_ready_s"]
        result["ui_ratio"] = round(minato / plain, 3) if minato and plain else None
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result), flush=True)
    return result


def _report(
    args: argparse.Namespace,
    started: dt.datetime,
    commit: str,
    load_before: tuple,
    part: dict,
    earlier: dict,
) -> dict:
    """This run's report; with --update, merged into the existing one (the parts this run did
    not measure are kept, and every run that contributed is listed with its command)."""
    run = {
        "started": started.isoformat(timespec="seconds"),
        "commit": commit,
        "command": "make bench-load"
        + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else ""),
        "measured": sorted(part),
        "load_average_at_start": [round(x, 2) for x in load_before],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    report = json.loads(json.dumps(earlier)) if earlier else {"results": [], "runs": []}
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    runs = report.get("runs", [])
    if "results" in part:
        # Per size, this run's values replace the same keys; `runs` lists who measured it.
        rows = {r["models"]: r for r in report.get("results", [])}
        for fresh in part["results"]:
            row = rows.setdefault(fresh["models"], {"runs": []})
            # A row written before rows named their runs came from every earlier run.
            earlier_runs = row.get("runs", list(range(len(runs))))
            row.update({**fresh, "runs": [*earlier_runs, len(runs)]})
        report["results"] = sorted(rows.values(), key=lambda r: r["models"])
    if "generator_100k_s" in part:
        report["generator_tables"] = args.generator_tables
        report["generator_100k_s"] = part["generator_100k_s"]
    report["runs"] = [*runs, run]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="Empty: no size.")
    parser.add_argument("--generator-tables", type=int, default=100_000, help="0: skip.")
    parser.add_argument("--skip-ui", action="store_true", help="Do not start the UI.")
    parser.add_argument(
        "--skip-validate", action="store_true", help="No import or validate timings."
    )
    parser.add_argument("--timeout", type=float, default=900, help="Seconds per subprocess.")
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    parser.add_argument("--work-dir", type=Path, help="Keep and reuse parsed projects here.")
    parser.add_argument("--update", action="store_true", help="Merge into the existing output.")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "load.json")
    args = parser.parse_args()

    base = args.work_dir or Path(tempfile.mkdtemp(prefix="minato-bench-load-"))
    base.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    # The code measured is the code at the start (a report is written after each size).
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    part: dict = {}
    # What --update merges into: the results as they were before this run.
    earlier = json.loads(args.output.read_text()) if args.update and args.output.exists() else {}

    def write() -> None:  # after each part, so a run stopped later keeps what it measured
        args.output.parent.mkdir(parents=True, exist_ok=True)
        report = _report(args, started, commit, load_before, part, earlier)
        args.output.write_text(json.dumps(report, indent=2) + "\n")

    try:
        if args.generator_tables:
            generator_s = measure_generator(args.generator_tables, base, args.timeout)
            part["generator_100k_s"] = round(generator_s, 2)
            print(json.dumps({"generator_s": generator_s}), flush=True)
            write()
        for n in filter(None, args.sizes.split(",")):
            part.setdefault("results", []).append(
                measure_size(int(n), base, args.timeout, not args.skip_ui, not args.skip_validate)
            )
            write()
    finally:
        if args.keep or args.work_dir:
            print(f"work directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    columns = ("models", "plain_load_s", "minato_load_s", "load_ratio", "plain_ui_ready_s")
    columns += ("ui_ready_s", "ui_ratio", "plain_deploy_ui_ready_s", "deploy_ui_ready_s")
    print(" ".join(f"{c:>18}" for c in columns))
    for r in part.get("results", []):
        print(" ".join(f"{r.get(c)!s:>18}" for c in columns))
    if "generator_100k_s" in part:
        print(
            f"generator: {args.generator_tables} tables x 20 columns rendered in "
            f"{part['generator_100k_s']:.1f} s (goal < 10 s)"
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
