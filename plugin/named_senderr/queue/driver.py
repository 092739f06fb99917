"""The only retry loop: send a batch until every item is stored, already there or dead-lettered.

Sinks send once and classify; this driver applies the retry policy through an
injected clock and sleep (tests pass fakes and run instantly), retries only
the items that failed, splits a batch the server found too large, and writes
permanent refusals to the dead-letter file with the server's reason.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from named_senderr.queue.retry import RetryPolicy
from named_senderr.sinks.outcome import Outcome, Sink, SinkFailed


def _unobserved(seconds: float) -> None:
    """No latency histogram behind these counters."""


@dataclass
class SinkCounters:
    """Per-sink totals, updated by the sink's workers and read by the progress line and /metrics.

    ``settled(seconds)`` is told, per batch, how long it took from its hand-off to the sink's
    delivery (a worker's queue, a consumer's read) until it was stored, already there or dead-lettered.
    """

    sent: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    requests: int = 0
    undelivered: int = 0  # no disk queue: events a shutdown left neither delivered nor dead-lettered
    failed: str | None = None
    settled: Callable[[float], None] = field(default=_unobserved, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def fail(self, reason: str) -> None:
        with self._lock:
            self.failed = self.failed or reason


class DeadLetter:
    """NDJSON of what a server refused for good, with its reason; the file is opened (appended) on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    def write(self, sink: str, reason: str, record: dict) -> None:
        line = orjson.dumps(
            {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "sink": sink, "reason": reason, **record},
            option=orjson.OPT_APPEND_NEWLINE,
        )
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
            self._file.write(line)
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()


class RetryNotices:
    """Says at once, on stderr or the log, that a sink retries and why: a dead store must never look like a hang.

    One per sink, shared by its workers: the first failed attempt of a streak is told at once, later
    ones at most every ``every`` seconds (a 429 storm over many batches stays a few lines), and the
    first batch stored after that says the store took events again.
    """

    def __init__(self, warn: Callable[[str], None], clock: Callable[[], float] = time.monotonic, every: float = 10.0):
        self.warn = warn
        self.clock = clock
        self.every = every
        self._last: float | None = None  # when the streak was last told; None: no streak
        self._lock = threading.Lock()

    def retrying(self, driver: Driver, attempt: int, delay: float, elapsed: float, outcome: Outcome) -> None:
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.every:
                return
            self._last = now
        policy = driver.policy
        what = (
            f"cannot reach the store ({outcome.error})" if outcome.unanswered else f"the store answered {outcome.error}"
        )
        then = "the queue keeps them" if driver.keep else f"they go to {driver.dead_letter.path}"
        self.warn(
            f"{driver.sink.name}: {what}; retrying {len(outcome.retry):,} event(s): attempt {attempt} of "
            f"{policy.max_attempts} failed, next try in {delay:.1f} s, {max(0.0, policy.deadline - elapsed):.0f} s "
            f"of the {policy.deadline:.0f} s retry budget left; when it runs out, {then}"
        )

    def stored(self, sink: str) -> None:
        with self._lock:
            told, self._last = self._last is not None, None
        if told:
            self.warn(f"{sink}: the store takes events again")


class RetriesExhausted(SinkFailed):
    """A batch still failed (429/5xx, no answer) when the retry policy gave up: worth trying later."""


class Halted(SinkFailed):
    """Shutdown came while a batch was waiting to be retried; with a disk queue it stays queued."""


class Driver:
    """Delivers batches for one sink; one per worker thread, counters and dead letter shared.

    With ``keep`` (a disk queue holds the batch) a batch the sink could not take is not
    dead-lettered: it stays queued and is sent again later. ``halted`` ends a retry wait early.
    """

    def __init__(
        self,
        sink: Sink,
        policy: RetryPolicy,
        dead_letter: DeadLetter,
        counters: SinkCounters,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,  # what it returns (Event.wait's flag) is ignored
        rand: Callable[[], float] = random.random,
        keep: bool = False,
        halted: Callable[[], bool] = lambda: False,
        notices: RetryNotices | None = None,
    ) -> None:
        self.sink = sink
        self.policy = policy
        self.dead_letter = dead_letter
        self.counters = counters
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.keep = keep
        self.halted = halted
        self.notices = notices or RetryNotices(lambda message: None)

    def deliver(self, items: list[Any]) -> None:
        """Raises SinkFailed when the sink cannot go on; the batch in hand is dead-lettered first."""
        pending = [items]
        while pending:
            pending.extend(reversed(self._attempt(pending.pop())))

    def abandon(self, items: list[Any], reason: str) -> None:
        """Dead-letter a batch that will not be sent (its sink has stopped)."""
        self._dead([(item, reason) for item in items])

    def _attempt(self, batch: list[Any]) -> list[list[Any]]:
        """Send ``batch`` until done; the two halves instead when the server found it too large."""
        attempts = 0
        started = self.clock()
        while True:
            outcome = self.sink.send(batch)
            self.counters.add(requests=1, sent=outcome.delivered, duplicates=outcome.duplicates)
            self._dead(outcome.dead)
            if outcome.fatal:
                if not self.keep:
                    self.abandon(batch, f"not sent: {outcome.fatal}")
                raise SinkFailed(f"{self.sink.name}: {outcome.fatal}")
            if outcome.too_large:
                if len(batch) > 1:
                    middle = len(batch) // 2
                    return [batch[:middle], batch[middle:]]
                self.abandon(batch, f"too large for the server even alone ({outcome.error})")
                return []
            batch = outcome.retry
            if not batch:
                if attempts:
                    self.notices.stored(self.sink.name)
                return []
            attempts += 1
            delay = self.policy.delay(attempts, outcome.retry_after, self.rand)
            elapsed = self.clock() - started
            if self.policy.gives_up(attempts, elapsed, delay):
                reason = f"gave up after {attempts} attempt(s) in {elapsed:.0f} s: {outcome.error}"
                if not self.keep:
                    self.abandon(batch, reason)
                raise RetriesExhausted(f"{self.sink.name}: {reason}")
            self.counters.add(retried=len(batch))
            self.notices.retrying(self, attempts, delay, elapsed, outcome)
            self.sleep(delay)
            if self.halted():
                raise Halted(f"{self.sink.name}: stopped while retrying: {outcome.error}")
            if outcome.unanswered:  # the cut may have come after the store took the batch
                unsent = self.sink.drop_stored(batch)
                self.counters.add(duplicates=len(batch) - len(unsent))
                batch = unsent
                if not batch:
                    self.notices.stored(self.sink.name)
                    return []

    def _dead(self, refused: list[tuple[Any, str]]) -> None:
        for item, reason in refused:
            self.dead_letter.write(self.sink.name, reason, self.sink.dead_record(item))
        if refused:
            self.counters.add(dead_lettered=len(refused))
