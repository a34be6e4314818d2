"""Slack notifications (a fake Slack: the exact request is asserted)."""

import json
import logging

import pytest

from resources import notifications
from resources.notifications import SLACK_POST_MESSAGE_URL, Notifier
from tests.slack import TOKEN, FakeSlack, install_fake_slack


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    return install_fake_slack(monkeypatch)


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


def test_send_in_a_thread_returns_the_message_ts(slack: FakeSlack) -> None:
    notifier = Notifier(slack_bot_token=TOKEN)

    ts = notifier.send("first")
    notifier.send("reply", thread_ts=ts)

    assert ts == "1767312000.000001"
    assert slack.bodies() == [
        {"channel": "#data-alerts", "text": "first"},
        {"channel": "#data-alerts", "text": "reply", "thread_ts": "1767312000.000001"},
    ]
