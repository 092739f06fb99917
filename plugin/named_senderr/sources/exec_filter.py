"""Fluentd ``out_exec_filter`` child: records in on stdin, event records out on stdout, in msgpack.

Fluentd writes a whole buffer chunk at a time (concatenated msgpack maps, no
framing) and reads stdout with a streaming parser, so each read chunk is one
batch: every output record of a batch goes out in one write. A child that
dies stalls Fluentd's pipeline ("no healthy child processes exist"), so no
input can stop this loop: bad records are counted and logged, undecodable
bytes are dropped and the decoder restarts. Stdout carries msgpack only;
everything for humans goes to the log (Fluentd discards the child's stderr).
"""

from __future__ import annotations

import logging
import os
import selectors
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from named_senderr.event import Event, to_ecs, to_flat
from named_senderr.parse.named import NamedLineParser, Rejection, is_candidate
from named_senderr.protocol.msgpack_records import BadRecord, JsonRecords, MsgpackRecords

IN_FORMATS = ("msgpack", "json")
NON_MATCHING = ("drop", "pass")
HOST_KEYS = ("host", "hostname", "_HOSTNAME")
REJECT_FIELD = "named_senderr_error"
READ_SIZE = 256 * 1024
LOG_FIRST = 20  # complaints of one kind logged one by one; then every LOG_EVERY-th
LOG_EVERY = 1000

_PACK_OPTIONS = {"use_bin_type": True, "unicode_errors": "surrogateescape"}


@dataclass
class FilterStats:
    """Counters of one run, logged periodically and at exit; the tests read them too."""

    batches: int = 0
    bytes_in: int = 0
    records: int = 0
    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # candidate lines by the parser's reason
    passed: int = 0  # not send errors, passed through unchanged
    dropped: int = 0  # not send errors, dropped (--non-matching drop)
    undecodable_lines: int = 0  # kept, invalid UTF-8 escaped
    bad: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"{self.records} records in {self.batches} batches ({self.bytes_in} bytes): {self.events} events, "
            f"{sum(self.rejected.values())} rejected candidates ({_counts(self.rejected)}), {self.passed} passed and "
            f"{self.dropped} dropped as not send errors, {self.undecodable_lines} lines with invalid UTF-8; "
            f"bad input: {_counts(self.bad)}"
        )


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common()) or "none"


class RecordParser:
    """Finds the log line in a Fluent record (the first of ``keys`` present) and parses it."""

    def __init__(self, parser: NamedLineParser, keys: tuple[str, ...], host: str | None = None) -> None:
        self.parser = parser
        self.keys = keys
        self.host = host
        self.undecodable = 0

    def parse(self, record: dict) -> Event | Rejection | BadRecord | None:
        value: Any = record.get(self.keys[0])
        if type(value) is str and not is_candidate(value):
            return None  # the common case, one substring test
        for key in self.keys:
            value = record.get(key)
            if value is None and key.isascii():
                value = record.get(key.encode())  # a bin key (Ruby's ASCII-8BIT strings)
            if value is not None:
                break
        else:
            return BadRecord(
                "missing_key", f"no {' or '.join(map(repr, self.keys))} key; set --key to the record's field"
            )
        if isinstance(value, str):
            result = (
                self.parser.parse(value)
                if _is_utf8(value)
                else self._parse_raw(value.encode("utf-8", "surrogateescape"))
            )
        elif isinstance(value, bytes):
            result = self._parse_raw(value)
        else:
            return BadRecord("non_string", f"{key!r} holds {type(value).__name__}, not a string")
        if isinstance(result, Event) and result.host is None:
            result.host = _record_host(record) or self.host
        return result

    def _parse_raw(self, raw: bytes) -> Event | Rejection | None:
        """A bin value, or a str that was not UTF-8: valid UTF-8 parses as text, the rest is escaped and counted."""
        try:
            return self.parser.parse(raw.decode("utf-8"))
        except UnicodeDecodeError:
            result = self.parser.parse_bytes(raw)
        if result is not None:
            self.undecodable += 1
        return result


def _is_utf8(text: str) -> bool:
    """False when the unpacker kept invalid UTF-8 bytes as lone surrogates."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _record_host(record: dict) -> str | None:
    for key in HOST_KEYS:
        value = record.get(key)
        if isinstance(value, str) and value and _is_utf8(value):
            return value
    return None


class Complaints:
    """Logs bad input without flooding: the first few of each kind, then one in LOG_EVERY, with the count."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.seen: Counter[str] = Counter()

    def __call__(self, reason: str, detail: str) -> None:
        self.seen[reason] += 1
        count = self.seen[reason]
        if count <= LOG_FIRST or count % LOG_EVERY == 0:
            self.log.warning("%s (%d so far): %s", reason, count, detail)


class ExecFilter:
    """One batch of input bytes in, one buffer of msgpack records out."""

    def __init__(
        self,
        records: RecordParser,
        render: Callable[[Event], dict],
        log: logging.Logger,
        *,
        in_format: str = "msgpack",
        non_matching: str = "drop",
        max_record_bytes: int = 1024 * 1024,
    ) -> None:
        self.records = records
        self.render = render
        self.log = log
        self.in_format = in_format
        self.pass_non_matching = non_matching == "pass"
        self.max_record_bytes = max_record_bytes
        self.stats = FilterStats()
        self.complain = Complaints(log)
        self._packer = msgpack.Packer(**_PACK_OPTIONS)
        self._decoder = MsgpackRecords(max_record_bytes) if in_format == "msgpack" else JsonRecords(max_record_bytes)

    def batch(self, data: bytes) -> bytes:
        """The msgpack output for one read chunk; records split across chunks wait for their rest."""
        self.stats.batches += 1
        self.stats.bytes_in += len(data)
        objects = self._decoder.feed(data)
        out = []
        first_key = self.records.keys[0]
        skipped = 0
        for obj in objects:
            if type(obj) is dict:  # the fast path: most lines are not send errors; one substring test each
                value = obj.get(first_key)
                if type(value) is str and not is_candidate(value):
                    skipped += 1
                    if self.pass_non_matching and (item := self._pack(obj, obj)) is not None:
                        out.append(item)
                    continue
            try:
                item = self._one(obj)
            except Exception:  # a bug must cost one record, not the Fluentd pipeline
                self.stats.bad["internal_error"] += 1
                self.log.exception("internal error on a record; it was dropped, please report this")
                continue
            if item is not None:
                out.append(item)
        self.stats.records += skipped
        if self.pass_non_matching:
            self.stats.passed += skipped
        else:
            self.stats.dropped += skipped
        self.stats.undecodable_lines = self.records.undecodable
        return b"".join(out)

    def finish(self) -> None:
        """At EOF: a record cut short by the end of input is counted, not silently lost."""
        bad = self._decoder.finish()
        if bad is not None:
            self._bad(bad)

    def _one(self, obj: Any) -> bytes | None:
        if isinstance(obj, BadRecord):
            self._bad(obj)
            return None
        self.stats.records += 1
        if not isinstance(obj, dict):
            self._bad(BadRecord("not_a_map", f"a record must be a map, got {type(obj).__name__}; dropped"))
            return None
        result = self.records.parse(obj)
        if isinstance(result, Event):
            self.stats.events += 1
            return self._pack(self.render(result), obj)
        if isinstance(result, Rejection):
            self.stats.rejected[result.reason] += 1
            self.complain(f"rejected_{result.reason}", f"{result.detail}; passed through with {REJECT_FIELD}")
            return self._pack({**obj, REJECT_FIELD: {"reason": result.reason, "detail": result.detail}}, obj)
        if isinstance(result, BadRecord):
            self._bad(result)
        if self.pass_non_matching:
            self.stats.passed += 1
            return self._pack(obj, obj)
        self.stats.dropped += 1
        return None

    def _bad(self, bad: BadRecord) -> None:
        self.stats.bad[bad.reason] += 1
        self.complain(bad.reason, bad.detail)

    def _pack(self, record: dict, source: dict) -> bytes | None:
        try:
            return self._packer.pack(record)
        except Exception as exc:  # a value msgpack cannot write must not stop the filter
            self._packer = msgpack.Packer(**_PACK_OPTIONS)  # a failed pack can leave the packer's buffer dirty
            self._bad(
                BadRecord("unpackable", f"{type(exc).__name__}: {exc}; record with keys {list(source)[:10]} dropped")
            )
            return None


def renderer(format: str) -> Callable[[Event], dict]:
    """``to_flat``, or ``to_ecs`` with the ingest time of the current second (a long-running process)."""
    if format == "flat":
        return to_flat
    clock = {"second": -1, "text": ""}

    def ecs(event: Event) -> dict:
        second = int(time.time())
        if second != clock["second"]:
            clock["second"] = second
            clock["text"] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return to_ecs(event, clock["text"])

    return ecs


def run_exec_filter(filter_: ExecFilter, in_fd: int, out_fd: int, stop_fd: int | None, stats_interval: float) -> str:
    """Read ``in_fd`` until EOF or a byte on ``stop_fd`` (a signal); returns why it stopped."""
    selector = selectors.PollSelector()  # epoll refuses regular files (stdin redirected from a file)
    selector.register(in_fd, selectors.EVENT_READ, "input")
    if stop_fd is not None:
        selector.register(stop_fd, selectors.EVENT_READ, "stop")
    next_stats = time.monotonic() + stats_interval
    try:
        while True:
            ready = {key.data for key, _ in selector.select()}
            if "stop" in ready:
                return "signal"
            data = os.read(in_fd, READ_SIZE)
            if not data:
                filter_.finish()
                return "eof"
            out = filter_.batch(data)
            if out:
                _write_all(out_fd, out)
            if time.monotonic() >= next_stats:
                filter_.log.info("%s", filter_.stats.summary())
                next_stats = time.monotonic() + stats_interval
    finally:
        selector.close()


def _write_all(fd: int, data: bytes) -> None:
    """os.write straight to the pipe: nothing is left in a buffer between batches."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
