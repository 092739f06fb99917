"""One sink's delivery thread over the disk queue: read from its cursor, deliver, then acknowledge.

The cursor moves only after the driver says the whole batch was stored (or,
for items the server refused for good, dead-lettered), so a crash or a
shutdown in between sends the batch again: at-least-once, made exactly-once
in the stores by Elasticsearch's deterministic ids and, for the one batch that
may have been in flight when the last run died, by asking the sink what it
already holds (``drop_stored``). One thread per sink keeps acknowledgements in order.

A record is the event's field values as a JSON array, for every sink; an
event a branching pipeline routes to some sinks only is ``{"to": [sink
names], "event": [values]}``, and the other sinks' consumers pass over it
(their cursors move past it all the same).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import orjson

from named_senderr.event import Event
from named_senderr.queue.disk import DiskQueue
from named_senderr.queue.driver import Driver, Halted, RetriesExhausted, SinkCounters
from named_senderr.settings.ship import BatchConfig
from named_senderr.sinks.outcome import Sink, SinkFailed

FIELDS = Event.__slots__  # the record is the event's field values in this order
_INGESTED = FIELDS.index("ingested")  # a record queued by an earlier version ends before it
IDLE = 0.2  # seconds a consumer waits for new records before looking at the stop flags again


def encode_event(event: Event, to: tuple[str, ...] | None = None) -> bytes:
    """The record of ``event``; ``to``: the names of the only sinks it goes to."""
    values = [getattr(event, name) for name in FIELDS]
    return b"%s" % orjson.dumps(values if to is None else {"to": to, "event": values})  # right-sized copy


def decode_event(record: bytes, sink: str | None = None) -> Event | None:
    """The event of ``record``; None when it is routed to other sinks than ``sink``."""
    value = orjson.loads(record)
    if isinstance(value, dict):
        if sink is not None and sink not in value["to"]:
            return None
        value = value["event"]
    return Event(*value)


def replay_key(record: bytes) -> bytes:
    """A queued event without its ingest time: the same line read again after a restart has the same key."""
    value = orjson.loads(record)
    if isinstance(value, dict):  # routed: the same event to the same sinks
        return orjson.dumps({"to": value["to"], "event": value["event"][:_INGESTED]})
    return orjson.dumps(value[:_INGESTED])


class SinkConsumer:
    """Runs until ``finished()`` says no more will be appended and all is acknowledged, or ``halt`` is set.

    With ``patient`` (``ship --follow``) a batch the retry policy gave up on is tried again after a
    pause instead of stopping the sink: the queue keeps it meanwhile, within its size bound.
    """

    def __init__(
        self,
        sink: Sink,
        queue: DiskQueue,
        driver: Driver,
        counters: SinkCounters,
        batch: BatchConfig,
        finished: Callable[[], bool],
        halt: threading.Event,
        warn: Callable[[str], None],
        patient: bool = False,
        pause: float = 5.0,
    ) -> None:
        self.sink = sink
        self.queue = queue
        self.driver = driver
        self.counters = counters
        self.batch = batch
        self.finished = finished
        self.halt = halt
        self.warn = warn
        self.patient = patient
        self.pause = pause
        # Records left unacknowledged by an earlier run: its last batch may have reached the store.
        self.replay = queue.pending(sink.name)
        self.thread = threading.Thread(target=self._run, name=f"{sink.name} consumer", daemon=True)

    def start(self) -> SinkConsumer:
        self.thread.start()
        return self

    def _run(self) -> None:
        name = self.sink.name
        while not self.halt.is_set():
            records, end = self.queue.read(name, self.batch.max_events, self.batch.max_bytes)
            if not records:
                if self.finished() and not self.queue.pending(name):
                    return
                self.queue.wait_data(name, IDLE)
                continue
            handed = time.monotonic()
            try:
                events = [event for r in records if (event := decode_event(r, name)) is not None]
                items = [self.sink.encode(event)[0] for event in events]
                stored = 0
                if self.replay and items:
                    unsent = self.sink.drop_stored(items)
                    stored, items = len(items) - len(unsent), unsent
                if items:
                    self.driver.deliver(items)
            except Halted:
                return
            except RetriesExhausted as exc:
                self.queue.rewind(name)
                if not self.patient:
                    self.counters.fail(f"{exc}; the batch stays in the queue")
                    return
                self.warn(f"{exc}; kept in the queue, trying again in {self.pause:.0f} s")
                self.halt.wait(self.pause)
                continue
            except SinkFailed as exc:
                self.queue.rewind(name)
                self.counters.fail(f"{exc}; the batch stays in the queue")
                return
            except Exception as exc:  # a bug must stop this sink, not hang the run; the batch stays queued
                self.queue.rewind(name)
                self.counters.fail(f"{name}: internal error {exc!r}; please report it")
                return
            self.replay = False  # only now: a batch sent again after a failure is checked again
            self.counters.add(duplicates=stored)
            self.queue.ack(name, end)
            if items or stored:  # not a batch of other sinks' records only
                self.counters.settled(time.monotonic() - handed)
