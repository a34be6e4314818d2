"""The pull-request workflow parses as GitHub Actions YAML and runs the four `minato env`
commands, in order, with options that exist; the report it posts is the one `diff` wrote."""

import re
import shlex

import click
import yaml

from pipelines.env_cli import env
from resources.settings import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "pr-environment.yml"


def _steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as true
    [job] = workflow["jobs"].values()
    return job["steps"]


def _minato_env_calls(steps: list[dict]) -> list[tuple[str, list[str], dict]]:
    calls = []
    for step in steps:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            words = shlex.split(line) if "minato env" in line else []
            if words and words[0].endswith("minato") and words[1] == "env":
                calls.append((words[2], words[3:], step))
    return calls


def test_the_four_commands_run_in_order_with_real_options() -> None:
    calls = _minato_env_calls(_steps())
    assert [name for name, _, _ in calls] == ["create", "build", "diff", "drop"]
    for name, words, _ in calls:
        command: click.Command = env.commands[name]
        known = {opt for param in command.params for opt in param.opts}
        assert {w for w in words if w.startswith("--")} <= known, (name, words)
        assert words[0] == "$ENV_NAME"


def test_drop_always_runs_and_the_diff_report_is_posted() -> None:
    steps = _steps()
    calls = {name: (words, step) for name, words, step in _minato_env_calls(steps)}
    assert calls["drop"][1]["if"] == "always()"
    diff_words = calls["diff"][0]
    report = diff_words[diff_words.index("--out") + 1]
    post = next(step for step in steps if "gh pr comment" in step.get("run", ""))
    assert re.findall(r'--body-file "([^"]+)"', post["run"]) == [report, report]
