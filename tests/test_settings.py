"""Settings are pure functions of the environment, dbt's profile agrees with them, and loading
the code location does nothing but define: no process, no write, no network, no env change."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from dbt.config.renderer import ProfileRenderer
from dbt_common.context import set_invocation_context

from resources import settings
from resources.settings import DBT_PROJECT_DIR, REPO_ROOT


def _clean_env() -> dict[str, str]:
    """This process's environment without any Minato setting: a fresh machine's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MINATO_")}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"MINATO_DATA_DIR": "/srv/minato"},
        {"MINATO_DATA_DIR": "elsewhere/data"},
        {"MINATO_DATA_DIR": "/srv/minato", "MINATO_DUCKDB_PATH": "/fast/disk/wh.duckdb"},
        {"MINATO_ENV": "prod"},
        {"MINATO_ENV": "staging", "MINATO_WAREHOUSE": "duckdb"},
    ],
)
def test_dbt_profile_defaults_are_the_settings(env: dict[str, str]) -> None:
    """dbt reads the variables itself (profiles.yml): it must reach the same file as Python."""
    set_invocation_context(env)
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    rendered = ProfileRenderer({}).render_data(profile)["minato"]

    assert rendered["target"] == settings.warehouse_kind(env)
    # dbt runs in the project folder: its relative paths start there.
    dbt_path = (DBT_PROJECT_DIR / rendered["outputs"]["duckdb"]["path"]).resolve()
    assert dbt_path == Path(settings.effective(env)["MINATO_DUCKDB_PATH"]).resolve()
    # One cost guard for dbt and for every job Minato starts itself.
    bigquery = rendered["outputs"]["bigquery"]
    assert int(bigquery["maximum_bytes_billed"]) == settings.maximum_bytes_billed(env)


def test_defaults_follow_the_data_dir_and_set_values_win() -> None:
    defaults = settings.effective({})
    assert defaults["MINATO_DUCKDB_PATH"] == str(REPO_ROOT / "data" / "warehouse.duckdb")
    assert defaults["MINATO_SHARDS_FILE"] == str(REPO_ROOT / "shards.yaml")

    moved = settings.effective({"MINATO_DATA_DIR": "/srv/m", "MINATO_WAREHOUSE": "bigquery"})
    assert moved["MINATO_LANDING_DIR"] == "/srv/m/landing"
    assert moved["MINATO_CRM_SQLITE_PATH"] == "/srv/m/crm.sqlite"
    assert settings.warehouse_kind({"MINATO_WAREHOUSE": "bigquery"}) == "bigquery"
    assert settings.setting("MINATO_NOT_A_SETTING", {}) is None


# Run in a fresh interpreter: audit hooks see every process started, file opened for writing
# and connection made, whoever does it (Dagster, dagster-dbt, our code).
_AUDITED_IMPORT = textwrap.dedent(
    """
    import json, os, sys

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    seen = []

    def audit(event, args):
        if event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.fork"):
            seen.append(f"{event} {args[:2]!r}")
        elif event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
            if writing:
                seen.append(f"open for writing {path!r}")
        elif event in ("socket.connect", "socket.getaddrinfo"):
            seen.append(f"{event} {args[1:]!r}")

    # Third-party libraries first: what they do when imported is theirs (Dagster's vendored
    # croniter runs `file` on the interpreter to tell 32 from 64 bits).
    import dagster, dagster_aws.s3, dagster_dbt  # noqa: E401, F401

    before = dict(os.environ)
    sys.addaudithook(audit)
    import pipelines.definitions  # noqa: F401

    print(json.dumps({"seen": seen, "env_changed": dict(os.environ) != before}))
    """
)


def test_importing_the_code_location_only_defines() -> None:
    env = {**_clean_env(), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DAGSTER_IS_DEV_CLI", None)  # `dagster dev` prepares the project; a deployment not
    done = subprocess.run(
        [sys.executable, "-c", _AUDITED_IMPORT],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"seen": [], "env_changed": False}


def test_a_missing_manifest_is_one_clear_error(tmp_path: Path) -> None:
    """A checkout where nobody ran `make manifest` (the repository's own target/ is left alone:
    the code is copied without it)."""
    for package in ("assets", "pipelines", "resources"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package)
    shutil.copytree(
        DBT_PROJECT_DIR, tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target", "logs")
    )
    shutil.copy(REPO_ROOT / "shards.yaml", tmp_path / "shards.yaml")
    env = {**_clean_env(), "PYTHONPATH": str(tmp_path)}
    env.pop("DAGSTER_IS_DEV_CLI", None)

    done = subprocess.run(
        [sys.executable, "-c", "import pipelines.definitions"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )

    assert done.returncode != 0
    last_line = done.stderr.strip().splitlines()[-1]
    manifest = tmp_path / "dbt_project" / "target" / "manifest.json"
    assert last_line == (
        f"assets.dbt_models.project.ManifestMissingError: dbt manifest not found at {manifest}: "
        "run `make manifest` (or `minato manifest`) to parse the dbt project before loading "
        "the code location"
    )
    assert not manifest.exists()  # nothing was parsed behind the user's back


def test_minato_env_defaults_to_dev_and_refuses_unknown_names() -> None:
    assert settings.minato_env({}) == "dev"
    assert settings.minato_env({"MINATO_ENV": "prod"}) == "prod"
    with pytest.raises(ValueError, match="MINATO_ENV='production'"):
        settings.minato_env({"MINATO_ENV": "production"})


def test_sensor_interval_defaults_per_sensor_and_refuses_nonsense() -> None:
    assert settings.sensor_interval_s(120, {}) == 120
    assert settings.sensor_interval_s(120, {"MINATO_SENSOR_INTERVAL_S": "5"}) == 5
    with pytest.raises(ValueError, match="MINATO_SENSOR_INTERVAL_S='0'"):
        settings.sensor_interval_s(120, {"MINATO_SENSOR_INTERVAL_S": "0"})
