"""After a crash, the batch that may already have reached the store is checked before it is sent again."""

from __future__ import annotations

import threading
from pathlib import Path

from named_senderr.event import Event
from named_senderr.queue.consumer import SinkConsumer, encode_event
from named_senderr.queue.disk import DiskQueue
from named_senderr.queue.driver import DeadLetter, Driver, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.settings.ship import BatchConfig
from named_senderr.sinks.outcome import Outcome

NAME = "store+http://h"


class StoreSink:
    """A store that remembers what it holds, as Loki does."""

    name = NAME
    workers = 1

    def __init__(self, held: set[int]) -> None:
        self.held = set(held)
        self.sends: list[list[int]] = []

    def encode(self, event: Event) -> tuple[int, int]:
        return event.offset, 1

    def send(self, items: list) -> Outcome:
        self.sends.append(list(items))
        self.held.update(items)
        return Outcome(delivered=len(items))

    def dead_record(self, item) -> dict:
        return {"item": item}

    def drop_stored(self, items: list) -> list:
        return [item for item in items if item not in self.held]

    def close(self) -> None:
        pass


def queued(directory: Path, count: int) -> DiskQueue:
    queue = DiskQueue(directory, 1 << 20, (NAME,))
    events = [Event("send_failed", "would_block", "no pending connections", "m", "o", offset=i) for i in range(count)]
    queue.append([encode_event(e) for e in events])
    return queue


def drain(queue: DiskQueue, sink: StoreSink, tmp_path: Path) -> SinkCounters:
    counters = SinkCounters()
    driver = Driver(sink, RetryPolicy(), DeadLetter(tmp_path / "dead.ndjson"), counters, keep=True)
    consumer = SinkConsumer(
        sink, queue, driver, counters, BatchConfig(max_events=4), lambda: True, threading.Event(), print
    )
    consumer.start().thread.join(10)
    return counters


def test_batch_left_unacknowledged_by_a_crash_is_sent_without_what_the_store_holds(tmp_path):
    queue = queued(tmp_path / "q", 10)  # a run appended 10 events and died before any acknowledgement
    sink = StoreSink(held={0, 1, 2})  # ... after the store had taken the first three
    counters = drain(queue, sink, tmp_path)
    assert sink.sends == [[3], [4, 5, 6, 7], [8, 9]]
    assert counters.duplicates == 3
    assert not queue.pending(NAME)


def test_only_the_first_batch_after_a_restart_is_checked(tmp_path):
    queue = queued(tmp_path / "q", 8)
    sink = StoreSink(held={5})  # not in the first batch: a later batch is never checked
    drain(queue, sink, tmp_path)
    assert sink.sends == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_a_fresh_queue_asks_the_store_nothing(tmp_path):
    queue = DiskQueue(tmp_path / "q", 1 << 20, (NAME,))
    sink = StoreSink(held=set())
    sink.drop_stored = None  # would fail if called
    consumer_counters = SinkCounters()
    driver = Driver(sink, RetryPolicy(), DeadLetter(tmp_path / "dead.ndjson"), consumer_counters, keep=True)
    consumer = SinkConsumer(
        sink, queue, driver, consumer_counters, BatchConfig(), lambda: True, threading.Event(), print
    )
    assert consumer.replay is False
