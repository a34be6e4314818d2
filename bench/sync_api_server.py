"""A local JSON API in the shape of HttpJsonDestination's generic protocol, for the sync tests and
`make bench-sync`: it enforces a rate limit (429 + Retry-After), honours Idempotency-Key (a
repeated key gets the first answer and changes nothing), refuses chosen records one by one or
whole batches (400), and injects 500s and timeouts on request.

It counts how often each record was applied, so callers can prove that no row was lost and none
was applied twice. Run standalone (`python bench/sync_api_server.py --port 8765 --rate 40`) or
in a thread (`with ApiServer(...) as api:`). `GET /_stats` answers the counters as JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ApiState:
    rate_per_s: float | None = None  # Token bucket refilled at this rate, one second's burst.
    retry_after: str = "1"
    reject_values: frozenset[str] = frozenset()  # A record holding one is refused alone.
    poison_values: frozenset[str] = frozenset()  # A batch holding one is refused whole (400).
    # Answers for the next calls, in order: "429" (with Retry-After), "500", "timeout" (applied,
    # answered after timeout_sleep_s), "ok".
    faults: collections.deque[str] = field(default_factory=collections.deque)
    timeout_sleep_s: float = 1.0
    after_apply: Callable[[int], None] | None = None  # Called with the count of applying calls.
    captured: list[tuple[str, dict[str, str], Any]] | None = None  # (path, headers, body) if set
    records: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    applied: collections.Counter[tuple[str, tuple[Any, ...]]] = field(
        default_factory=collections.Counter
    )
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    requests: int = 0
    applying_calls: int = 0
    replays: int = 0
    throttled: int = 0
    first_ok_at: float | None = None
    last_ok_at: float | None = None
    ok_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _tokens: float = 0.0
    _refilled_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._tokens = self.rate_per_s or 0.0

    def admit(self) -> bool:
        """Token bucket: `rate_per_s` requests a second, bursts up to one second's worth."""
        if not self.rate_per_s:
            return True
        now = time.monotonic()
        self._tokens = min(
            self.rate_per_s, self._tokens + (now - self._refilled_at) * self.rate_per_s
        )
        self._refilled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def stats(self) -> dict[str, Any]:
        duplicated = sum(count - 1 for count in self.applied.values() if count > 1)
        span = (self.last_ok_at or 0) - (self.first_ok_at or 0)
        return {
            "requests": self.requests,
            "ok_calls": self.ok_calls,
            "applying_calls": self.applying_calls,
            "replays": self.replays,
            "throttled": self.throttled,
            "records": sum(len(table) for table in self.records.values()),
            "applied_records": len(self.applied),
            "duplicated_records": duplicated,
            # Accepted calls per second between the first and the last accepted call.
            "ok_calls_per_s": (self.ok_calls - 1) / span if span > 0 else 0.0,
        }


def _handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # Quiet.
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # The client gave up (timeout): the answer is lost, as on a real network.

        def do_GET(self) -> None:
            with state.lock:
                body = json.dumps(state.stats()).encode()
            self._answer(200, body)

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = self.headers.get("Idempotency-Key", "")
            with state.lock:
                state.requests += 1
                if state.captured is not None:
                    state.captured.append((self.path, dict(self.headers), json.loads(payload)))
                throttled = not state.admit()
                state.throttled += throttled
                fault = None if throttled or not state.faults else state.faults.popleft()
            if throttled or fault == "429":
                self._answer(429, b'{"error": "rate limited"}', {"Retry-After": state.retry_after})
                return
            if fault == "500":
                self._answer(500, b'{"error": "injected"}')
                return
            status, body, calls = self._apply(key, payload)
            if state.after_apply and calls:
                state.after_apply(calls)
            if fault == "timeout":
                time.sleep(state.timeout_sleep_s)  # Applied, but the answer comes too late.
            self._answer(status, body)

        def _apply(self, key: str, payload: bytes) -> tuple[int, bytes, int]:
            _, table, operation = self.path.split("/")[-3:]
            request = json.loads(payload)
            records, key_columns = request["records"], request["key_columns"]
            with state.lock:
                if key and key in state.answers:
                    state.replays += 1
                    return (*state.answers[key], 0)
                if any(str(v) in state.poison_values for r in records for v in r.values()):
                    return 400, b'{"error": "batch refused: poison record"}', 0
                errors = []
                rows = state.records.setdefault(table, {})
                for index, record in enumerate(records):
                    record_key = tuple(record[c] for c in key_columns)
                    if any(str(v) in state.reject_values for v in record.values()):
                        errors.append({"index": index, "reason": f"invalid record {record_key}"})
                        continue
                    if operation == "delete":
                        rows.pop(record_key, None)
                    else:
                        rows[record_key] = record
                    state.applied[(operation, record_key)] += 1
                body = json.dumps({"errors": errors}).encode()
                state.applying_calls += 1
                state.ok_calls += 1
                now = time.monotonic()
                state.first_ok_at = state.first_ok_at or now
                state.last_ok_at = now
                if key:
                    state.answers[key] = (200, body)
                return 200, body, state.applying_calls

    return Handler


class ApiServer:
    """The API on 127.0.0.1 in a background thread."""

    def __init__(self, state: ApiState, port: int = 0) -> None:
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(state))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate", type=float, default=None, help="allowed requests per second")
    args = parser.parse_args()
    server = ApiServer(ApiState(rate_per_s=args.rate), args.port)
    print(server.url, flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
