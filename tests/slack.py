"""A fake Slack Web API for tests: stands in for `urllib.request.urlopen` and records the exact
requests, so tests assert what would have been posted."""

import json
import urllib.request
from typing import Any

import pytest

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
    """Stands in for `urllib.request.urlopen`; records every request it is given and answers
    like chat.postMessage, each message with its own `ts`."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[urllib.request.Request, float | None]] = []

    def __call__(self, request: urllib.request.Request, timeout: float | None = None):
        self.calls.append((request, timeout))
        answer = dict(self.answer)
        if "ts" in answer:
            answer["ts"] = f"1767312000.{len(self.calls):06d}"
        return FakeSlackResponse(json.dumps(answer).encode())

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.data) for request, _ in self.calls]


def install_fake_slack(monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    fake = FakeSlack({"ok": True, "channel": "C0123", "ts": "1767312000.000001"})
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return fake
