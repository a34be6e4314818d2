"""Dagster's UI processes as a user starts them, and the GraphQL questions the UI asks.

Used by `make bench-load` (time until the asset graph is served, peak RSS per process, one
asset's lineage) and by the tests that need a served location (tests/test_ui_scale.py,
test_oncall_graphql.py, test_run_lanes.py). It lives apart from both so that neither tests/ nor
bench/ imports the other. Needs only the standard library and dagster: the test suite runs
without the bench dependency group.

Each `Served` runs its processes in one new process group and stops exactly that group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

_ASSET_NODES = "{ assetNodes { assetKey { path } isMaterializable } }"
_LOCATION_ERRORS = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message errorChain { error { message } } } }
} } } }"""
_LINEAGE = """query Lineage($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    assetKey { path } dependencyKeys { path } dependedByKeys { path } description
  } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines (as docker --env-file, systemd and make read them); # starts a comment."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def graphql(port: int, query: str, variables: dict | None = None, timeout: float = 120) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def _process_group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Fields after the command's closing parenthesis: state, ppid, pgrp, ...
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            if int(stat[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def _peak_rss_mb(pid: int) -> tuple[str, float] | None:
    """(command line, the kernel's high-water mark of resident memory, VmHWM) of one process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return cmdline.strip(), int(line.split()[1]) / 1024
    return None


def _role(cmdline: str) -> str:
    for marker, role in (
        ("dagster_webserver", "webserver"),
        ("dagster-webserver", "webserver"),
        ("dagster._daemon", "daemon"),
        ("code-server", "code_server"),
        ("api grpc", "code_server"),
        ("dagster dev", "dev"),
    ):
        if marker in cmdline:
            return role
    return "other"


@dataclass
class Served:
    """Dagster processes serving one code location, started in their own process group."""

    commands: list[list[str]]
    env: dict[str, str]
    cwd: Path
    port: int
    log: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    started: float = 0.0

    def start(self) -> Served:
        self.started = time.perf_counter()
        log = self.log.open("w")
        pgid = 0  # the first process leads a new group; the others join it
        for command in self.commands:
            process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=pgid,
            )
            pgid = pgid or process.pid
            self.processes.append(process)
        log.close()
        return self

    @property
    def pgid(self) -> int:
        return self.processes[0].pid

    def _exited(self) -> str | None:
        for process in self.processes:
            if process.poll() is not None:
                return f"{' '.join(process.args)} exited ({process.returncode}); see {self.log}"
        return None

    def _location_error(self) -> str | None:
        entries = graphql(self.port, _LOCATION_ERRORS)["workspaceOrError"]["locationEntries"]
        for entry in entries:
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                # The cause is at the end of the chain (e.g. gRPC's "Sent message larger than
                # max" under "Could not reach user code server").
                causes = [link["error"]["message"] for link in loaded["errorChain"]]
                return f"location {entry['name']}: {' <- '.join([loaded['message'], *causes])}"
        return None

    def wait_for_models(self, models: int, timeout: float) -> tuple[float, list[dict]]:
        """Seconds from start until `assetNodes` lists at least `models` materializable assets,
        and the nodes. A location that fails to load fails here with its error, after the
        webserver has retried for `timeout` seconds (a reload can succeed)."""
        last_error = "no answer"
        while time.perf_counter() - self.started < timeout:
            exited = self._exited()
            if exited:
                raise RuntimeError(exited)
            try:
                nodes = graphql(self.port, _ASSET_NODES)["assetNodes"]
                if sum(node["isMaterializable"] for node in nodes) >= models:
                    return time.perf_counter() - self.started, nodes
                last_error = self._location_error() or f"{len(nodes)} asset nodes so far"
            except (OSError, urllib.error.URLError, RuntimeError, KeyError, ValueError) as exc:
                last_error = str(exc)
            time.sleep(0.5)
        raise TimeoutError(f"no {models} models served in {timeout} s: {last_error}")

    def lineage_s(self, key: list[str]) -> tuple[float, dict]:
        """Seconds for the asset page's lineage question about one asset, and the answer."""
        start = time.perf_counter()
        [node] = graphql(self.port, _LINEAGE, {"key": {"path": key}})["assetNodes"]
        return time.perf_counter() - start, node

    def peak_rss_mb(self) -> dict[str, float]:
        """Peak RSS per role (webserver, daemon, code_server, dev, other), summed per role:
        `dagster dev` runs a code server proxy and the server it spawns."""
        peaks: dict[str, float] = {}
        for pid in _process_group(self.pgid):
            found = _peak_rss_mb(pid)
            if found:
                role = _role(found[0])
                peaks[role] = round(peaks.get(role, 0.0) + found[1])
        return peaks

    def stop(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)  # whatever ignored SIGTERM, children included
        for process in self.processes:
            process.wait()

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dagster_dev(bin_dir: Path, location: Path, env: dict[str, str], log: Path) -> Served:
    """`dagster dev -f <location>`: webserver, daemon and code server, as a developer runs it."""
    port = free_port()
    command = [str(bin_dir / "dagster"), "dev", "-f", str(location), "-p", str(port)]
    return Served([command], env, location.parent, port, log)


def webserver_with_code_server(
    bin_dir: Path, location: Path, env: dict[str, str], log: Path, name: str = "location"
) -> Served:
    """A code server (`dagster code-server start`) and a webserver reading it through a
    workspace file, as a deployment runs them. The instance in DAGSTER_HOME is created first, as
    a deployment's is: two processes creating a fresh SQLite instance at once race on its
    schema ("table alembic_version already exists")."""
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.get_runs(limit=1)  # storage is created when first used
    port, grpc_port = free_port(), free_port()
    workspace = location.with_name(f"{location.stem}_workspace.yaml")
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n      location_name: {name}\n"
    )
    code_server = [str(bin_dir / "dagster"), "code-server", "start"]
    code_server += ["-h", "127.0.0.1", "-p", str(grpc_port), "-f", str(location)]
    webserver = [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
    webserver += ["-w", str(workspace)]
    return Served([code_server, webserver], env, location.parent, port, log)
