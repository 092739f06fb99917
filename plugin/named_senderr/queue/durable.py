"""``ship`` through the disk queue: read -> parse -> append + fsync -> (commit) ... sinks deliver and ack.

The reading loop appends events to the queue and, with ``--follow``, moves the
tail's checkpoint only after the append's fsync. Each sink's consumer thread
delivers from its own cursor. On SIGTERM/SIGINT reading stops, the sinks get
``shutdown_timeout`` seconds to catch up, and what they did not take stays
queued for the next start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import BinaryIO

import orjson

from named_senderr.errors import InputError
from named_senderr.event import Event
from named_senderr.metrics import Sample, serve_metrics
from named_senderr.normalize.timestamp import TimestampNormalizer, resolve_zone
from named_senderr.parse.named import MAX_LINE_BYTES, NamedLineParser, Rejection
from named_senderr.queue.consumer import SinkConsumer, encode_event
from named_senderr.queue.disk import HEADER, DiskQueue, QueueWriteError
from named_senderr.queue.driver import DeadLetter, Driver, SinkCounters
from named_senderr.queue.retry import RetryPolicy
from named_senderr.runtime import Warn, ingest_now, read_events
from named_senderr.ship_config import ShipConfig
from named_senderr.ship_runtime import REPORT_EVERY, ShipResult, open_sink
from named_senderr.sinks.outcome import Sink
from named_senderr.sources.file_tail import FileTail, TailConfig
from named_senderr.telemetry import QueueStats, Stats

CHUNK = 2000  # events per append (and fsync) when reading files
CHECKPOINT = "tail-checkpoint.json"  # in the queue dir: the checkpoint belongs with the events it vouches for
JOIN_GRACE = 2.0  # seconds a halted consumer gets to notice


class QueueWriter:
    """Collects encoded events and appends them in one fsync'd write; waits, or drops, when the queue is full.

    A disk that refuses an append (full, I/O error) is a full queue too: nothing of the
    append was kept, so the events are appended again after a pause, or dropped and counted.
    """

    def __init__(self, queue: DiskQueue, when_full: str, stop: Callable[[], bool], stats: QueueStats, warn: Warn):
        self.queue = queue
        self.when_full = when_full
        self.stop = stop
        self.stats = stats
        self.warn = warn
        self._pending: list[bytes] = []

    def add(self, event: Event) -> None:
        self._pending.append(encode_event(event))

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> bool:
        """Append what was added; False when ``stop()`` came while waiting for room (the rest not appended)."""
        while self._pending:
            piece, size = self._piece()
            if self.when_full == "drop" and not self.queue.has_room(size):
                self._drop(piece, f"is full ({self.queue.max_bytes:,} bytes)")
            elif not self.queue.wait_room(size, self.stop) or not self._append(piece):
                return False
            del self._pending[: len(piece)]
        return True

    def _append(self, piece: list[bytes]) -> bool:
        """Append ``piece``, again after a pause while the disk refuses it; False if ``stop()`` came first."""
        while True:
            try:
                self.queue.append(piece)
            except QueueWriteError as exc:
                if self.when_full == "drop":
                    self._drop(piece, f"cannot be written ({exc})")
                    return True
                if not self.queue.pause(self.stop):
                    return False
                continue
            self.stats.queued += len(piece)
            return True

    def _drop(self, piece: list[bytes], why: str) -> None:
        if not self.stats.dropped:
            self.warn(
                f"queue {self.queue.dir} {why}: dropping events (when_full = drop); "
                "raise [queue] max_bytes, free space or use --when-full wait"
            )
        self.stats.dropped += len(piece)

    def _piece(self) -> tuple[list[bytes], int]:
        """The next pending events up to a segment's size, so one chunk never overruns the bound."""
        piece: list[bytes] = []
        size = 0
        for payload in self._pending:
            if piece and size + HEADER.size + len(payload) > self.queue.segment_bytes:
                break
            piece.append(payload)
            size += HEADER.size + len(payload)
        return piece, size


def run_durable(
    config: ShipConfig,
    warn: Warn,
    report: Callable[[ShipResult], None] | None,
    sinks: list[Sink] | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    stop: threading.Event,
) -> ShipResult:
    assert config.queue.dir is not None
    ingest_time = ingest_now()
    result = ShipResult(dead_letter=config.dead_letter, queue=QueueStats())
    assert result.queue is not None
    dead_letter = DeadLetter(config.dead_letter)
    policy = RetryPolicy.from_config(config.retry)
    halt = threading.Event()
    reading_done = threading.Event()
    with ExitStack() as stack:
        if sinks is None:
            sinks = []
            for sink_config in config.sinks:
                sinks.append(open_sink(sink_config, ingest_time))
                stack.callback(sinks[-1].close)
        queue = DiskQueue(config.queue.dir, config.queue.max_bytes, tuple(s.name for s in sinks), warn=warn)
        stack.callback(queue.close)
        if config.metrics:
            server = stack.enter_context(serve_metrics(config.metrics, lambda: ship_samples(result, queue)))
            warn(f"metrics on {server.url}/metrics, health on {server.url}/healthz")
        wait = halt.wait if sleep is time.sleep else sleep
        consumers = []
        for sink in sinks:
            counters = result.sinks.setdefault(sink.name, SinkCounters())
            driver = Driver(sink, policy, dead_letter, counters, clock, wait, keep=True, halted=halt.is_set)
            consumer = SinkConsumer(sink, queue, driver, counters, config.batch, reading_done.is_set, halt, warn,
                                    patient=config.follow, pause=config.retry.max_backoff)  # fmt: skip
            consumers.append(consumer.start())
        writer = QueueWriter(queue, config.queue.when_full, lambda: stop.is_set() or bool(result.failures),
                             result.queue, warn)  # fmt: skip
        rejects = stack.enter_context(open(config.rejects, "ab")) if config.rejects else None
        parser = NamedLineParser(TimestampNormalizer(resolve_zone(config.timezone)))
        try:
            if config.follow:
                _follow(config, parser, writer, result, stop, warn, rejects, report, clock)
            else:
                _read_inputs(config, parser, writer, result, stop, warn, rejects, report, clock)
        finally:
            reading_done.set()
            _drain(consumers, stop, config.queue.shutdown_timeout, halt)
            result.signalled = stop.is_set()
            result.queue.bytes = queue.bytes
            result.queue.torn_bytes, result.queue.damaged_bytes = queue.torn_bytes, queue.damaged_bytes
            result.queue.pending = {s.name: queue.pending(s.name) for s in sinks}
            dead_letter.close()
    result.dead_lettered = dead_letter.count
    return result


def _read_inputs(config, parser, writer: QueueWriter, result: ShipResult, stop, warn, rejects, report, clock) -> None:
    events = read_events(config.inputs, parser, config.host, result.stats, warn, None, rejects)
    next_report = clock() + REPORT_EVERY
    try:
        for event in events:
            writer.add(event)
            if len(writer) < CHUNK:
                continue
            if not writer.flush() or stop.is_set():
                break
            if result.failures:
                result.stopped = True
                break
            if report is not None and clock() >= next_report:
                report(result)
                next_report = clock() + REPORT_EVERY
        writer.flush()
    finally:
        events.close()


def _follow(config, parser, writer: QueueWriter, result: ShipResult, stop, warn, rejects, report, clock) -> None:
    """The checkpoint moves past a poll's lines only once their events are appended and fsync'd."""
    tail_config = TailConfig(config.inputs, config.queue.dir / CHECKPOINT, read_from_head=config.read_from_head)
    tail = FileTail(tail_config, result.stats, warn)
    result.stats.inputs = len(config.inputs)
    next_report = clock() + REPORT_EVERY
    refused = False  # the last checkpoint save failed (warned once)
    try:
        while not stop.is_set():
            if result.failures:
                result.stopped = True
                break
            batch = tail.poll()
            for line in batch.lines:
                event = parse_line(parser, line.raw, line.oversize, line.path, line.offset, config.host,
                                   result.stats, rejects)  # fmt: skip
                if event is not None:
                    writer.add(event)
            if not writer.flush():
                break  # stopped while the queue was full: these lines are read again at the next start
            try:
                batch.commit()
                refused = False
            except InputError as exc:  # a refused save costs re-reading after a restart (stored once), not the run
                if not refused:
                    warn(f"{exc}; reading goes on, the queue holds the events; after a restart the lines since "
                         "the last saved checkpoint are read again (stored once)")  # fmt: skip
                refused = True
            if report is not None and clock() >= next_report:
                report(result)
                next_report = clock() + REPORT_EVERY
            if not batch.more:
                stop.wait(tail_config.poll_interval)
    finally:
        tail.close()


def parse_line(
    parser: NamedLineParser,
    raw: bytes,
    oversize: bool,
    path: str,
    offset: int,
    host: str | None,
    stats: Stats,
    rejects: BinaryIO | None,
) -> Event | None:
    """One followed line to an Event; a rejection is counted (and kept with ``--rejects``)."""
    if oversize or len(raw) > MAX_LINE_BYTES:
        text = raw[:MAX_LINE_BYTES].decode("utf-8", "backslashreplace")
        result: Event | Rejection | None = Rejection("line_too_long", f"over {MAX_LINE_BYTES} bytes", text)
    else:
        result = parser.parse_bytes(raw)
    if result is None:
        return None
    stats.candidates += 1
    if isinstance(result, Event):
        result.file, result.offset = path, offset
        result.host = result.host or host
        stats.events_by_reason[result.reason] += 1
        return result
    stats.rejected_by_reason[result.reason] += 1
    if rejects is not None:
        record = {"reason": result.reason, "detail": result.detail, "file": path, "offset": offset}
        rejects.write(orjson.dumps(record | {"line": result.line}, option=orjson.OPT_APPEND_NEWLINE))
    return None


def _drain(consumers: list[SinkConsumer], stop: threading.Event, timeout: float, halt: threading.Event) -> None:
    """Let the sinks catch up: until done without a signal; ``timeout`` seconds once one came."""
    deadline = None
    while any(c.thread.is_alive() for c in consumers):
        if stop.is_set() and deadline is None:
            deadline = time.monotonic() + timeout
        if deadline is not None and time.monotonic() >= deadline:
            break
        for consumer in consumers:
            consumer.thread.join(0.1)
    halt.set()
    for consumer in consumers:
        consumer.thread.join(JOIN_GRACE)


def ship_samples(result: ShipResult, queue: DiskQueue) -> Iterator[Sample]:
    """What /metrics shows for ``ship``: reading, the queue, and each sink by its ``sink`` label."""
    stats = result.stats
    yield Sample("named_senderr_lines_read_total", "counter", "Lines read from the inputs.", stats.lines)
    yield Sample("named_senderr_events_parsed_total", "counter", "Send-error events parsed.", stats.events)
    yield Sample("named_senderr_events_rejected_total", "counter", "Candidate lines rejected.", stats.rejected)
    yield from queue_samples(result.queue or QueueStats(), queue)
    per_sink = (
        ("sent", "Events stored by the sink.", lambda c: c.sent),
        ("duplicate", "Events the sink already had (stored once).", lambda c: c.duplicates),
        ("retried", "Event sends retried.", lambda c: c.retried),
        ("dead_lettered", "Events refused for good, in the dead-letter file.", lambda c: c.dead_lettered),
    )
    for what, text, get in per_sink:
        for name, counters in result.sinks.items():
            yield Sample(f"named_senderr_events_{what}_total", "counter", text, get(counters), {"sink": name})
    for name, counters in result.sinks.items():
        yield Sample("named_senderr_sink_up", "gauge", "0 once the sink failed for good.", 0 if counters.failed else 1,
                     {"sink": name})  # fmt: skip


def queue_samples(qstats: QueueStats, queue: DiskQueue) -> Iterator[Sample]:
    """The disk queue's part of /metrics, for ``ship`` and ``serve`` alike."""
    yield Sample("named_senderr_events_queued_total", "counter", "Events written to the disk queue.", qstats.queued)
    yield Sample("named_senderr_events_dropped_total", "counter", "Events dropped, the queue full.", qstats.dropped)
    yield Sample("named_senderr_queue_bytes", "gauge", "Bytes of the disk queue on disk.", queue.bytes)
    yield Sample("named_senderr_queue_max_bytes", "gauge", "Size bound of the disk queue.", queue.max_bytes)
    yield Sample("named_senderr_queue_writable", "gauge", "0 while the disk refuses appends (full, I/O error).",
                 0 if queue.write_error else 1)  # fmt: skip
    yield Sample("named_senderr_queue_write_failures_total", "counter",
                 "Appends the disk refused; nothing of them was kept.", queue.write_failures)  # fmt: skip
    yield Sample("named_senderr_queue_damaged_bytes_total", "counter",
                 "Damaged queue bytes skipped or cut; their events are lost.", queue.damaged_bytes)  # fmt: skip
    yield Sample("named_senderr_queue_torn_bytes_total", "counter",
                 "Bytes of a write a crash interrupted, cut at start (never acknowledged).", queue.torn_bytes)  # fmt: skip
