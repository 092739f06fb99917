"""Where transformed events go, and how far they are durable: straight to the sinks, or the disk queue.

``SinkLanes`` batches events per sink and hands the batches to each sink's
workers; a batch is durable once its sink settled it (stored, already there,
or dead-lettered), and a source batch once every sink settled every batch
holding its events. ``QueueLanes`` appends to the disk queue with one fsync:
durable at once; each sink's consumer then delivers from its own cursor.

A branching graph routes each event to some of the sinks (``routes``). In
memory, an event only enters the lanes of its sinks, so a source batch waits
for exactly the sinks its events went to. On disk, the queue keeps one
record per event, and a routed event's record names its sinks
(queue/consumer.py): a consumer skips the records of other sinks, and the
routing survives a restart with the records themselves, whatever the
pipeline file says by then. Events for every sink are written as before,
with no names, so a chain's queue is what it always was.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from named_senderr.engine.contracts import Route
from named_senderr.event import Event
from named_senderr.queue.batcher import Batcher
from named_senderr.queue.consumer import SinkConsumer, encode_event, replay_key
from named_senderr.queue.disk import HEADER, DiskQueue, QueueWriteError
from named_senderr.queue.driver import DeadLetter, Driver, RetryNotices, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.queue.workers import SinkWorkers
from named_senderr.queue.writer import QueueWriter
from named_senderr.settings.ship import BatchConfig, QueueConfig
from named_senderr.sinks.outcome import Sink
from named_senderr.telemetry import QueueStats

JOIN_GRACE = 2.0  # seconds a halted consumer gets to notice
LOOK = 0.1  # seconds between looks at the stop signal


@dataclass
class _Lane:
    sink: Sink
    batcher: Batcher
    workers: SinkWorkers
    counters: SinkCounters
    open_seq: int | None = None  # the smallest source batch in the batcher's open batch
    in_flight: dict[int, tuple[int, int]] = field(default_factory=dict)  # batch id -> (smallest source batch, events)


class SinkLanes:
    """In memory: a source batch is durable once every sink settled its events.

    ``shutdown_timeout`` seconds after ``stop`` is set, whatever is still retrying or waiting for room stops
    (``halt``): those events are counted as undelivered and their source batches are never acknowledged.
    """

    def __init__(
        self,
        sinks: list[Sink],
        policy: RetryPolicy,
        dead_letter: DeadLetter,
        batch: BatchConfig,
        counters: dict[str, SinkCounters],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        stop: threading.Event | None = None,
        shutdown_timeout: float = 10.0,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._last_seq = 0
        self.halt, self._closed = threading.Event(), threading.Event()
        wait = self.halt.wait if sleep is time.sleep else sleep
        self.lanes: list[_Lane] = []
        for sink in sinks:
            lane_counters = counters.setdefault(sink.name, SinkCounters())
            notices = RetryNotices(warn, clock)  # one per sink, shared by its workers

            def driver(sink: Sink = sink, lane_counters: SinkCounters = lane_counters,
                       notices: RetryNotices = notices) -> Driver:  # fmt: skip
                return Driver(sink, policy, dead_letter, lane_counters, clock, wait, halted=self.halt.is_set,
                              notices=notices)  # fmt: skip

            lane = _Lane(sink, Batcher(batch, clock), None, lane_counters)  # type: ignore[arg-type]
            lane.workers = SinkWorkers(sink, driver, lane_counters, done=self._settled_in(lane), halt=self.halt)
            self.lanes.append(lane)
        if stop is not None:
            threading.Thread(target=self._halt_late, args=(stop, shutdown_timeout), name="sink lanes shutdown",
                             daemon=True).start()  # fmt: skip

    def ready(self) -> bool:
        return all(lane.workers.has_room() and not lane.counters.failed for lane in self.lanes)

    def put(self, events: list[Event], seq: int, wait: bool = True, routes: Sequence[Route] | None = None) -> bool:
        for index, lane in enumerate(self.lanes):
            if lane.counters.failed:
                return False
            encode = lane.sink.encode
            mine = events if routes is None else [e for e, route in zip(events, routes, strict=True) if index in route]
            if not mine:
                continue
            if lane.open_seq is None:
                lane.open_seq = seq
            closed = lane.batcher.add_all([encode(event) for event in mine])
            for done in closed:
                self._submit(lane, done, lane.open_seq)
                lane.open_seq = seq  # what is left open, or opens next, came in this source batch
            if closed and not len(lane.batcher):
                lane.open_seq = None
        with self._lock:
            self._last_seq = max(self._last_seq, seq)
        return True

    def durable_through(self) -> int:
        with self._lock:
            through = self._last_seq
            for lane in self.lanes:
                waiting = [first for first, _events in lane.in_flight.values()]
                if lane.open_seq is not None:
                    waiting.append(lane.open_seq)
                if waiting:
                    through = min(through, min(waiting) - 1)
            return through

    def tick(self) -> None:
        for lane in self.lanes:
            if lane.batcher.expired():
                self._take(lane)

    def failed(self) -> bool:
        return any(lane.counters.failed for lane in self.lanes)

    def close(self, stop: threading.Event) -> None:
        """Deliver what is held: all of it without a signal; after one, what ``shutdown_timeout`` allows."""
        for lane in self.lanes:
            self._take(lane)
            lane.workers.close()
        self._closed.set()
        with self._lock:
            for lane in self.lanes:
                lane.counters.undelivered = sum(events for _first, events in lane.in_flight.values())

    def _halt_late(self, stop: threading.Event, seconds: float) -> None:
        """Once ``stop`` is set, the sinks get ``seconds`` to settle what they hold; then ``halt``."""
        while not self._closed.is_set():
            if stop.wait(LOOK):
                if not self._closed.wait(seconds):
                    self.halt.set()
                return

    def _take(self, lane: _Lane) -> None:
        batch = lane.batcher.take()
        if batch is not None:
            self._submit(lane, batch, lane.open_seq if lane.open_seq is not None else self._last_seq)
        lane.open_seq = None

    def _submit(self, lane: _Lane, batch: list[Any], first_seq: int | None) -> None:
        batch_id = next(self._ids)
        with self._lock:
            lane.in_flight[batch_id] = (first_seq if first_seq is not None else self._last_seq, len(batch))
        lane.workers.submit(batch, batch_id)

    def _settled_in(self, lane: _Lane) -> Callable[[Any], None]:
        def settled(batch_id: Any) -> None:
            with self._lock:
                lane.in_flight.pop(batch_id, None)

        return settled


class QueueLanes:
    """Through the disk queue: a source batch is durable once its events are appended and fsync'd."""

    def __init__(
        self,
        sinks: list[Sink],
        config: QueueConfig,
        policy: RetryPolicy,
        dead_letter: DeadLetter,
        batch: BatchConfig,
        counters: dict[str, SinkCounters],
        stats: QueueStats,
        warn: Callable[[str], None],
        stop: threading.Event,
        patient: bool,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        assert config.dir is not None
        self.config = config
        self.stats = stats
        self.queue = DiskQueue(config.dir, config.max_bytes, tuple(s.name for s in sinks), warn=warn)
        # A follower restarted after a crash between an append and its checkpoint reads those lines again: know
        # them before any consumer starts (a delivered segment is deleted).
        self._replayed = {replay_key(record) for record in self.queue.newest()} if patient else set()
        self.halt, self.closing = threading.Event(), threading.Event()
        self._durable = 0
        wait = self.halt.wait if sleep is time.sleep else sleep
        self.consumers: list[SinkConsumer] = []
        for sink in sinks:
            sink_counters = counters.setdefault(sink.name, SinkCounters())
            driver = Driver(sink, policy, dead_letter, sink_counters, clock, wait, keep=True, halted=self.halt.is_set,
                            notices=RetryNotices(warn, clock))  # fmt: skip
            consumer = SinkConsumer(sink, self.queue, driver, sink_counters, batch, self.closing.is_set, self.halt,
                                    warn, patient=patient, pause=policy.maximum)  # fmt: skip
            self.consumers.append(consumer.start())
        self._failed = lambda: any(c.counters.failed for c in self.consumers)
        self.writer = QueueWriter(self.queue, config.when_full, lambda: stop.is_set() or self._failed(),
                                  stats, warn)  # fmt: skip

    def ready(self) -> bool:
        """Room, and a disk not known to refuse: a refused batch is not even transformed (memory stays flat).

        Once the file system has room again, ``refusing`` lets the next append be tried for real.
        """
        return self.queue.has_room(HEADER.size) and not self.queue.refusing()

    def put(self, events: list[Event], seq: int, wait: bool = True, routes: Sequence[Route] | None = None) -> bool:
        payloads = self._encode(events, routes)
        if wait:
            if self._replayed:
                payloads = self._skip_replayed(payloads)
            self.writer.extend(payloads)
            if not self.writer.flush():
                return False
        else:  # refuse the batch whole rather than wait: the sender keeps it and sends it again
            if not self.queue.has_room(sum(HEADER.size + len(p) for p in payloads)):
                return False
            try:
                self.queue.append(payloads)
            except QueueWriteError:
                return False
            self.stats.queued += len(payloads)
        self._durable = max(self._durable, seq)
        return True

    def _encode(self, events: list[Event], routes: Sequence[Route] | None) -> list[bytes]:
        if routes is None:
            return [encode_event(event) for event in events]
        names: dict[Route, tuple[str, ...] | None] = {}  # None: every sink, a record as a chain writes it
        for route in routes:
            if route not in names:
                every = len(route) == len(self.consumers)
                names[route] = None if every else tuple(self.consumers[index].sink.name for index in sorted(route))
        return [encode_event(event, names[route]) for event, route in zip(events, routes, strict=True)]

    def durable_through(self) -> int:
        return self._durable

    def _skip_replayed(self, payloads: list[bytes]) -> list[bytes]:
        """Drop the events the queue already holds; the first batch without any ends the look (they come first)."""
        fresh = [payload for payload in payloads if replay_key(payload) not in self._replayed]
        self.stats.replayed += len(payloads) - len(fresh)
        if payloads and len(fresh) == len(payloads):
            self._replayed = set()
        return fresh

    def tick(self) -> None:
        """The consumers read the queue on their own."""

    def failed(self) -> bool:
        return self._failed()

    def close(self, stop: threading.Event) -> None:
        """Let the sinks catch up: until done without a signal; ``shutdown_timeout`` seconds once one came."""
        self.closing.set()
        deadline = None
        while any(c.thread.is_alive() for c in self.consumers):
            if stop.is_set() and deadline is None:
                deadline = time.monotonic() + self.config.shutdown_timeout
            if deadline is not None and time.monotonic() >= deadline:
                break
            for consumer in self.consumers:
                consumer.thread.join(0.1)
        self.halt.set()
        for consumer in self.consumers:
            consumer.thread.join(JOIN_GRACE)
        self.stats.bytes = self.queue.held_bytes
        self.stats.pending = {c.sink.name: self.queue.pending(c.sink.name) for c in self.consumers}
        self.queue.close()
