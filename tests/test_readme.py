"""The README's Layout table matches the repository: a newcomer finds every folder there."""

import re
import subprocess

import pytest

from resources.settings import REPO_ROOT
from tests.servers import in_ci


def _tracked() -> list[str]:
    try:
        done = subprocess.run(
            ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        # A source archive has no git to list its files; CI always runs on a checkout.
        if in_ci():
            pytest.fail(f"git ls-files failed in CI: {exc}", pytrace=False)
        pytest.skip("not a git checkout: nothing to compare the README with")
    return done.stdout.splitlines()


def _layout_rows() -> list[tuple[str, str]]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, flags=re.MULTILINE)
    assert rows, "no Layout table in README.md"
    return rows


def test_every_top_level_folder_is_in_the_layout_table() -> None:
    folders = {path.split("/")[0] + "/" for path in _tracked() if "/" in path}
    listed = {path for path, _ in _layout_rows() if path.count("/") == 1}
    assert listed == folders


def test_every_package_folder_is_in_the_layout_table() -> None:
    """Feature folders of the three Python floors each have a row of their own."""
    packages = {
        path.rsplit("/", 1)[0] + "/"
        for path in _tracked()
        if path.endswith("/__init__.py") and path.count("/") == 2
    }
    listed = {path for path, _ in _layout_rows()}
    assert packages <= listed, sorted(packages - listed)


def test_every_file_the_layout_names_exists() -> None:
    tracked = _tracked()
    for folder, text in _layout_rows():
        assert any(path.startswith(folder) for path in tracked), folder
        for name in re.findall(r"`([\w./<>{},*-]+\.(?:py|yml|yaml|csv))`", text):
            if any(c in name for c in "<>{},*"):
                continue  # a pattern, e.g. `metric_definitions/*.yaml`
            candidates = [p for p in tracked if p.startswith(folder) and p.endswith("/" + name)]
            assert candidates, f"{folder}: {name} is named in README.md but not in the repository"
