"""A Kafka consumer group as an engine source: each poll one batch, whose ack commits its partitions' offsets.

Offsets are never committed by the client (``enable.auto.commit`` and
``enable.auto.offset.store`` off): a batch's ack, which the runner calls once
the next stage durably holds its events and in the order the batches came,
queues the offset after its last record of each partition; the source's own
thread commits them before its next poll (the client serves one thread at a
time). A rebalance that takes partitions away first commits what was
acknowledged for them, then forgets them: an ack that comes later for a batch
of a partition this worker no longer owns (or owns again, re-reading from the
committed offset) is dropped, and the new owner reads those records again. The
stores' deterministic ids (sinks/ids.py, over host, time and line) make that
re-reading store each event once.

A record is one line: the value itself (``raw``, the key the host), or the
``log``/``message`` field of a JSON or msgpack map (Fluent Bit's and Fluentd's
Kafka outputs). A record that holds no line (not UTF-8, over
``max_record_bytes``, not the format expected) is counted by reason and said,
and its offset is committed with its batch, so it never blocks its partition.

Lag (the end of each partition minus the committed offset) is measured by a
second, group-less client on its own thread, so it keeps growing in /metrics
while a slow or failed sink holds the pipeline (and this source) back.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgpack
import orjson
from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from named_senderr.lines import Batch, Emit, Line
from named_senderr.metrics import Sample
from named_senderr.parse.named import MAX_LINE_BYTES
from named_senderr.protocol.msgpack_records import BadRecord
from named_senderr.settings.kafka_source import KafkaSettings
from named_senderr.sources.exec_filter import HOST_KEYS, find_line
from named_senderr.telemetry import Stats

POLL = 0.5  # seconds a poll waits for records: how soon a stop or an ack is seen when the topic is quiet
LAG_EVERY = 2.0  # seconds between lag measurements
SAID_FIRST, SAID_EVERY = 5, 1000  # bad records said: the first few of each reason, then one in SAID_EVERY

Partition = tuple[str, int]  # topic, partition
Offsets = dict[Partition, tuple[int, int]]  # the offset to commit and the assignment it was read under


def to_line(
    settings: KafkaSettings, value: bytes | None, key: bytes | None, timestamp: tuple[int, int]
) -> Line | BadRecord:
    """The line a record holds, or why it holds none. Pure: no client needed."""
    if value is None:
        return BadRecord("no_value", "the record has no value (a tombstone)")
    if len(value) > settings.max_record_bytes:
        return BadRecord("oversize", f"{len(value):,} bytes, over max_record_bytes = {settings.max_record_bytes:,}")
    kind, millis = timestamp
    time = None if kind == TIMESTAMP_NOT_AVAILABLE else _rfc3339(millis)
    host = _text(key)
    if settings.format == "raw":
        data = value
    else:
        record = _decode(settings.format, value)
        if isinstance(record, BadRecord):
            return record
        found = find_line(record, settings.keys)
        if isinstance(found, BadRecord):
            return found
        data = found.encode("utf-8", "surrogateescape") if isinstance(found, str) else found
        host = next((h for k in HOST_KEYS if isinstance(h := record.get(k), str) and h), host)
    if not _is_utf8(data):
        return BadRecord("not_utf8", "the line is not UTF-8 text")
    if len(data) > MAX_LINE_BYTES:  # the parser refuses it as line_too_long, with its head in the rejects
        return Line(data[:MAX_LINE_BYTES], host=host, oversize=True, time=time)
    return Line(data, host=host, time=time)


def _decode(format: str, value: bytes) -> dict | BadRecord:
    try:
        record = orjson.loads(value) if format == "json" else msgpack.unpackb(value, raw=False, strict_map_key=False,
                                                                              unicode_errors="surrogateescape")  # fmt: skip
    except orjson.JSONDecodeError as exc:
        return BadRecord("invalid_json", f"not JSON (from byte {exc.pos} on)")
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        return BadRecord("not_msgpack", f"not one msgpack object: {type(exc).__name__}")
    if not isinstance(record, dict):
        return BadRecord("not_a_map", f"a {type(record).__name__}, not a map of fields")
    return record


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(key: bytes | None) -> str | None:
    if not key or not _is_utf8(key):
        return None
    return key.decode("utf-8")


def _rfc3339(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class KafkaStats:
    """What /metrics shows of the consumer: every record read is handed on or rejected by reason."""

    records: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rebalances: Counter[str] = field(default_factory=Counter)  # assigned, revoked, lost
    commits: int = 0
    commit_failures: int = 0
    acks_dropped: int = 0  # batches acknowledged after their partition was taken away: left to its new owner
    lag: dict[Partition, int] = field(default_factory=dict)  # of the partitions owned now
    owned: dict[Partition, int] = field(default_factory=dict)  # partition -> the assignment it came with
    committed: dict[Partition, int] = field(default_factory=dict)  # the group's offset, as far as we know


@dataclass
class KafkaSource:
    settings: KafkaSettings
    stats: Stats
    warn: Callable[[str], None]
    name: str = "kafka"
    kafka: KafkaStats = field(default_factory=KafkaStats)
    _consumer: Consumer | None = field(default=None, init=False)
    _acked: queue.SimpleQueue[Offsets] = field(default_factory=queue.SimpleQueue, init=False)
    _assignments: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)  # kafka.owned/committed/lag
    _done: threading.Event = field(default_factory=threading.Event, init=False)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        config = self.settings.client_config() | {"error_cb": self._error, "on_commit": self._committed}
        self._consumer = consumer = Consumer(config)
        consumer.subscribe(list(self.settings.topics), on_assign=self._assign, on_revoke=self._revoke,
                           on_lost=self._lose)  # fmt: skip
        self.stats.inputs += len(self.settings.topics)
        watcher = threading.Thread(target=self._watch_lag, name=f"{self.name} lag", daemon=True)
        watcher.start()
        while not stop.is_set():
            self._commit()
            batch = self._batch(consumer.consume(self.settings.batch_records, POLL))
            if batch is not None and not emit(batch):
                return  # refused (stopping): not committed, read again by whoever owns the partitions next

    def close(self) -> None:
        """After the last ack: commit what it acknowledged, and leave the group (the others rebalance at once)."""
        self._done.set()
        if self._consumer is not None:
            self._commit(wait=True)
            self._consumer.close()
            self._consumer = None

    def samples(self) -> Iterator[Sample]:
        k, source = self.kafka, {"source": self.name}
        yield Sample("named_senderr_kafka_records_total", "counter", "Records read from Kafka.", k.records, source)
        for reason, count in sorted(k.rejected.items()):
            yield Sample("named_senderr_kafka_records_rejected_total", "counter",
                         "Records that hold no line, by reason; committed with their batch.", count,
                         source | {"reason": reason})  # fmt: skip
        for kind in ("assigned", "revoked", "lost"):
            yield Sample("named_senderr_kafka_rebalances_total", "counter", "Partition sets assigned, revoked or lost.",
                         k.rebalances[kind], source | {"event": kind})  # fmt: skip
        counters = (
            ("commits", "Offset commits that succeeded.", k.commits),
            ("commit_failures", "Offset commits that failed: those records are read again.", k.commit_failures),
            ("acks_dropped", "Batches acknowledged after a rebalance took their partition: re-read by its owner.",
             k.acks_dropped),
        )  # fmt: skip
        for what, text, value in counters:
            yield Sample(f"named_senderr_kafka_{what}_total", "counter", text, value, source)
        with self._lock:
            lags = sorted(k.lag.items())
            owned = len(k.owned)
        yield Sample("named_senderr_kafka_partitions", "gauge", "Partitions this worker owns now.", owned, source)
        for (topic, partition), lag in lags:
            yield Sample("named_senderr_kafka_lag", "gauge", "Records past the group's committed offset.", lag,
                         source | {"topic": topic, "partition": str(partition)})  # fmt: skip

    def _batch(self, messages: list[Message]) -> Batch | None:
        """The records' lines; the ack commits the offset after each partition's last record, rejected or not."""
        lines: list[Line] = []
        offsets: Offsets = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._error(error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None  # a record, not an event
            assignment = self.kafka.owned.get((topic, partition))
            if assignment is None:
                continue  # taken away during this poll: its new owner reads it
            self.kafka.records += 1
            offsets[(topic, partition)] = (offset + 1, assignment)
            value = message.value()
            found = to_line(self.settings, value, message.key(), message.timestamp())
            if isinstance(found, BadRecord):
                self._reject(found, topic, partition, offset)
                continue
            self.stats.lines += 1
            self.stats.bytes += len(value or b"")
            lines.append(found)
        if not offsets:
            return None
        return Batch(lines, lambda: self._acked.put(offsets))

    def _reject(self, bad: BadRecord, topic: str, partition: int, offset: int) -> None:
        self.kafka.rejected[bad.reason] += 1
        count = self.kafka.rejected[bad.reason]
        if count <= SAID_FIRST or count % SAID_EVERY == 0:
            self.warn(f"{self.name}: record {topic}/{partition}@{offset} rejected ({bad.reason}, {count} so far): "
                      f"{bad.detail}; skipped, its offset committed with its batch")  # fmt: skip

    def _commit(self, wait: bool = False) -> None:
        """Commit the acknowledged offsets of the partitions still owned under the same assignment."""
        latest: dict[Partition, int] = {}
        while not self._acked.empty():
            offsets = self._acked.get()
            stale = False
            for part, (offset, assignment) in offsets.items():
                if self.kafka.owned.get(part) == assignment:
                    latest[part] = offset
                else:
                    stale = True
            self.kafka.acks_dropped += stale
        if not latest or self._consumer is None:
            return
        parts = [TopicPartition(topic, partition, offset) for (topic, partition), offset in latest.items()]
        try:
            if wait:
                self._committed(None, self._consumer.commit(offsets=parts, asynchronous=False))
            else:
                self._consumer.commit(offsets=parts, asynchronous=True)
        except KafkaException as exc:
            self._committed(exc.args[0], parts)

    def _committed(self, error: KafkaError | None, parts: list[TopicPartition]) -> None:
        """A commit's outcome (called within a poll for the asynchronous ones)."""
        failed = [p for p in parts if p.error is not None]
        if error is not None or failed:
            self.kafka.commit_failures += 1
            why = error.str() if error is not None else failed[0].error.str()  # type: ignore[union-attr]
            self.warn(f"{self.name}: offset commit failed ({why}); the records since the last commit will be read "
                      "again, and the stores keep them once")  # fmt: skip
            return
        self.kafka.commits += 1
        with self._lock:
            for part in parts:
                self.kafka.committed[(part.topic, part.partition)] = part.offset

    def _assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._assignments += 1
        self.kafka.rebalances["assigned"] += 1
        try:
            known = consumer.committed(parts, timeout=10)
        except KafkaException:
            known = []
        with self._lock:
            for part in parts:
                self.kafka.owned[(part.topic, part.partition)] = self._assignments
            for part in known:
                if part.offset != OFFSET_INVALID:
                    self.kafka.committed[(part.topic, part.partition)] = part.offset

    def _revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        """Still the owner: commit what was acknowledged, then let the partitions go."""
        self.kafka.rebalances["revoked"] += 1
        self._commit(wait=True)
        self._forget(parts)

    def _lose(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        """Already someone else's (the group went on without us): nothing may be committed for them."""
        self.kafka.rebalances["lost"] += 1
        self._forget(parts)

    def _forget(self, parts: list[TopicPartition]) -> None:
        with self._lock:
            for part in parts:
                key = (part.topic, part.partition)
                self.kafka.owned.pop(key, None)
                self.kafka.lag.pop(key, None)
                self.kafka.committed.pop(key, None)

    def _error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self.warn(f"{self.name}: kafka: {error.str()}" + ("; giving up" if error.fatal() else "; retrying"))

    def _watch_lag(self) -> None:
        """Every LAG_EVERY s: each owned partition's end offset minus its committed one, from a client of its own."""
        config = {k: v for k, v in self.settings.client_config().items() if not k.startswith(("enable.", "auto."))}
        watcher = Consumer(config | {"group.id": f"{self.settings.group}-lag"})
        try:
            while not self._done.wait(LAG_EVERY):
                with self._lock:
                    owned = list(self.kafka.owned)
                for topic, partition in owned:
                    try:
                        low, high = watcher.get_watermark_offsets(TopicPartition(topic, partition), timeout=LAG_EVERY)
                    except KafkaException:
                        continue  # the broker is away: the last figure stays
                    with self._lock:
                        if (topic, partition) in self.kafka.owned:
                            start = self.kafka.committed.get((topic, partition), low)
                            self.kafka.lag[(topic, partition)] = max(high - start, 0)
        finally:
            watcher.close()
