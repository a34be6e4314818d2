"""Slack notifications (a fake Slack: the exact request is asserted) and the run-failure alert."""

import json
import logging
import urllib.request
from typing import Any

import dagster as dg
import pytest

from pipelines.sensors import run_failure_alert
from resources import notifications
from resources.notifications import SLACK_POST_MESSAGE_URL, Notifier

TOKEN = "xoxb-123456789012-abcdefghijklmnop"


class FakeSlackResponse:
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def read(self) -> bytes:
        return self._payload

    def __enter__(self) -> "FakeSlackResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class FakeSlack:
    """Stands in for `urllib.request.urlopen`; records every request it is given."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[urllib.request.Request, float | None]] = []

    def __call__(self, request: urllib.request.Request, timeout: float | None = None):
        self.calls.append((request, timeout))
        return FakeSlackResponse(json.dumps(self.answer).encode())

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.data) for request, _ in self.calls]


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    fake = FakeSlack({"ok": True, "channel": "C0123", "ts": "1767312000.000100"})
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return fake


def test_without_token_logs_and_sends_nothing(slack: FakeSlack, caplog) -> None:
    notifier = Notifier()
    assert not notifier.enabled

    with caplog.at_level(logging.WARNING, logger=notifications.log.name):
        notifier.send("lake/orders failed for 2026-01-02|shard_02")

    assert slack.calls == []
    [record] = [r for r in caplog.records if r.name == "minato.notifications"]
    assert record.levelno == logging.WARNING
    assert "SLACK_BOT_TOKEN" in record.getMessage()
    assert "lake/orders failed for 2026-01-02|shard_02" in record.getMessage()


def test_empty_token_counts_as_not_configured(slack: FakeSlack) -> None:
    notifier = Notifier(slack_bot_token="")

    notifier.send("hello")

    assert not notifier.enabled
    assert slack.calls == []


def test_slack_request_is_exact() -> None:
    notifier = Notifier(slack_bot_token=TOKEN, slack_channel="#minato-alerts")

    request = notifier.build_slack_request("受注の取り込みに失敗しました")

    assert request.full_url == "https://slack.com/api/chat.postMessage"
    assert request.get_method() == "POST"
    assert dict(request.header_items()) == {
        "Authorization": f"Bearer {TOKEN}",
        "Content-type": "application/json; charset=utf-8",
    }
    assert json.loads(request.data.decode("utf-8")) == {
        "channel": "#minato-alerts",
        "text": "受注の取り込みに失敗しました",
    }


def test_send_posts_once_and_accepts_ok(slack: FakeSlack, caplog) -> None:
    notifier = Notifier(slack_bot_token=TOKEN, timeout_s=3.5)

    with caplog.at_level(logging.DEBUG):
        notifier.send("run abc failed")

    [(request, timeout)] = slack.calls
    assert request.full_url == SLACK_POST_MESSAGE_URL
    assert request.get_method() == "POST"
    assert request.get_header("Authorization") == f"Bearer {TOKEN}"
    assert timeout == 3.5
    assert slack.bodies() == [{"channel": "#data-alerts", "text": "run abc failed"}]
    assert TOKEN not in caplog.text


def test_slack_error_raises_naming_it_without_the_token(
    slack: FakeSlack, caplog, monkeypatch
) -> None:
    slack.answer = {"ok": False, "error": "channel_not_found"}
    notifier = Notifier(slack_bot_token=TOKEN, slack_channel="#nope")

    with caplog.at_level(logging.DEBUG), pytest.raises(RuntimeError) as raised:
        notifier.send("run abc failed")

    assert "channel_not_found" in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert TOKEN not in caplog.text
    assert len(slack.calls) == 1


def test_slack_answer_without_ok_is_an_error(slack: FakeSlack) -> None:
    slack.answer = {}

    with pytest.raises(RuntimeError, match="unknown"):
        Notifier(slack_bot_token=TOKEN).send("x")


@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
def exploding_asset() -> None:
    raise RuntimeError("shard_02 went away")


def test_run_failure_alert_names_job_run_and_partition(
    slack: FakeSlack, instance: dg.DagsterInstance, caplog
) -> None:
    result = dg.materialize(
        [exploding_asset], partition_key="2026-01-02", instance=instance, raise_on_error=False
    )
    assert not result.success
    run = result.dagster_run
    failure_event = result.get_run_failure_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert.name,
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"notifier": Notifier(slack_bot_token=TOKEN, slack_channel="#oncall")},
    ).for_run_failure()

    with caplog.at_level(logging.DEBUG):
        run_failure_alert(context)

    [body] = slack.bodies()
    assert body["channel"] == "#oncall"
    text = body["text"]
    assert f"run {run.run_id} of job `{run.job_name}` failed" in text
    assert run.job_name == "__ephemeral_asset_job__"
    assert "(partition 2026-01-02)" in text
    assert failure_event.message in text
    assert "re-execute from failure" in text
    assert TOKEN not in caplog.text


def test_run_failure_alert_without_slack_logs_the_message(
    slack: FakeSlack, instance: dg.DagsterInstance, caplog
) -> None:
    result = dg.materialize(
        [exploding_asset], partition_key="2026-01-03", instance=instance, raise_on_error=False
    )
    run = result.dagster_run
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=run,
        resources={"notifier": Notifier()},
    ).for_run_failure()

    with caplog.at_level(logging.WARNING, logger=notifications.log.name):
        run_failure_alert(context)

    assert slack.calls == []
    assert f"run {run.run_id}" in caplog.text
    assert "(partition 2026-01-03)" in caplog.text
