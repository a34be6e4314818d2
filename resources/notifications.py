"""Notifications: Slack in production, the log on the embedded default."""

from __future__ import annotations

import json
import logging
import urllib.request

import dagster as dg
from pydantic import Field

log = logging.getLogger("minato.notifications")

SLACK_POST_MESSAGE_URL = "https://slack.com/api/chat.postMessage"


class Notifier(dg.ConfigurableResource):
    """Posts to a Slack channel when a bot token is configured; otherwise writes to the log.

    The token comes only from the environment (`SLACK_BOT_TOKEN`) and is never logged.
    """

    slack_bot_token: str | None = Field(default=None, description="Slack bot token (xoxb-...).")
    slack_channel: str = Field(default="#data-alerts", description="Channel for alerts.")
    dagster_ui_url: str = Field(
        default="http://localhost:3000", description="Dagster UI base URL for run links."
    )
    runbook_url: str = Field(
        default="docs/runbook.md",
        description="Where on-call reads the runbook (e.g. its page on your Git host); alerts "
        "link to the entry of their failure class.",
    )
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.slack_bot_token)

    def run_url(self, run_id: str) -> str:
        return f"{self.dagster_ui_url.rstrip('/')}/runs/{run_id}"

    def build_slack_request(
        self, text: str, thread_ts: str | None = None
    ) -> urllib.request.Request:
        message = {"channel": self.slack_channel, "text": text}
        if thread_ts:
            # A reply in the thread of an earlier message (repeats and resolutions of an alert).
            message["thread_ts"] = thread_ts
        body = json.dumps(message).encode()
        return urllib.request.Request(
            SLACK_POST_MESSAGE_URL,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.slack_bot_token}",
                "Content-Type": "application/json; charset=utf-8",
            },
        )

    def send(self, text: str, thread_ts: str | None = None) -> str | None:
        """Post `text` (in the thread `thread_ts` if given); the message's Slack `ts`, which
        names its thread, or None when Slack is not configured."""
        if not self.enabled:
            log.warning("alert (Slack not configured, set SLACK_BOT_TOKEN): %s", text)
            return None
        request = self.build_slack_request(text, thread_ts)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as r:
            payload = json.loads(r.read() or b"{}")
        # Slack answers HTTP 200 with ok=false on errors such as a wrong channel.
        if not payload.get("ok", False):
            raise RuntimeError(f"Slack rejected the message: {payload.get('error', 'unknown')}")
        return payload.get("ts")
