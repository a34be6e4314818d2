"""Delivery of one batch, shared by every destination: rate limit, retries with exponential
backoff and jitter (honouring `Retry-After`), and splitting a refused batch to find the records
at fault. Thread-safe: the sync engine runs several deliveries at once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from resources.destinations import (
    Batch,
    BatchRejectedError,
    Rejection,
    SyncDestination,
    TransientDestinationError,
)


class DestinationUnavailableError(RuntimeError):
    """Transient errors outlasted the retry budget: the run stops; what was acknowledged stays."""


class RateLimiter:
    """At most `per_second` calls a second, evenly spaced, across threads (None: no limit).

    Spaced rather than bursty so that an API's own limiter never sees more than the configured
    rate in any window, except that slots missed in the last CATCH_UP_S (a sender held up by a
    slow response or the journal) may be used at once: without that, every hiccup would be lost
    for good and the long-run rate would stay below the limit. `pause_until` holds every thread
    back after a `Retry-After`.
    """

    CATCH_UP_S = 0.1

    def __init__(self, per_second: float | None, clock: Callable[[], float] = time.monotonic):
        self._interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._next = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now - self.CATCH_UP_S, self._next) if self._interval else now
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)

    def pause_until(self, moment: float) -> None:
        with self._lock:
            self._next = max(self._next, moment)


@dataclass
class Delivery:
    """What became of one batch: the refused records (indices into the batch) and the calls."""

    rejections: list[Rejection] = field(default_factory=list)
    calls: int = 0
    retries: int = 0
    splits: int = 0


def _backoff_s(destination: SyncDestination, attempt: int, retry_after_s: float | None) -> float:
    # Full jitter (AWS architecture blog): spreads retries of concurrent senders apart.
    ceiling = min(destination.backoff_max_s, destination.backoff_initial_s * 2**attempt)
    jitter = random.uniform(0, ceiling)
    if retry_after_s is None:
        return jitter
    return retry_after_s + random.uniform(0, destination.backoff_initial_s)


def _write_with_retries(
    destination: SyncDestination, batch: Batch, limiter: RateLimiter, delivery: Delivery
) -> list[Rejection]:
    for attempt in range(destination.max_attempts):
        limiter.acquire()
        delivery.calls += 1
        try:
            return destination.write(batch)
        except TransientDestinationError as exc:
            if attempt + 1 == destination.max_attempts:
                raise DestinationUnavailableError(
                    f"{destination.kind}: batch {batch.idempotency_key} failed "
                    f"{destination.max_attempts} times, last: {exc}"
                ) from exc
            wait = _backoff_s(destination, attempt, exc.retry_after_s)
            if exc.retry_after_s is not None:
                limiter.pause_until(time.monotonic() + wait)
            delivery.retries += 1
            time.sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")


def deliver(destination: SyncDestination, batch: Batch, limiter: RateLimiter) -> Delivery:
    """Write `batch`; a batch refused as a whole is halved until the refused records are alone."""
    delivery = Delivery()
    pending = [(0, batch)]
    while pending:
        offset, part = pending.pop()
        try:
            rejected = _write_with_retries(destination, part, limiter, delivery)
        except BatchRejectedError as exc:
            if part.num_rows == 1:
                rejected = [Rejection(0, str(exc))]
            else:
                half = part.num_rows // 2
                delivery.splits += 1
                pending.append((offset + half, part.part(half, part.num_rows - half, "1")))
                pending.append((offset, part.part(0, half, "0")))
                continue
        delivery.rejections.extend(Rejection(offset + r.index, r.reason) for r in rejected)
    return delivery
