"""Fluentd ``out_exec_filter`` child: the records Fluentd writes to its stdin, as an engine source.

Fluentd writes a whole buffer chunk at a time (concatenated msgpack maps, no
framing) and reads the child's stdout with a streaming parser. The log line
of every record that holds a send-error candidate goes to the engine (parse,
privacy, rollup, the same for every source) in batches of at most
BATCH_LINES, and a read's output is written and flushed before the next read. Records that
are not send errors are dropped or, with ``--non-matching pass``, written back
unchanged in their place; rejected candidates are passed back only when asked,
under their own tag. A child that dies stalls Fluentd's pipeline ("no healthy
child processes exist"), so no input stops this source: bad records are
counted and logged (Fluentd discards the child's stderr).
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from named_senderr.event import Event, to_ecs, to_flat
from named_senderr.lines import Batch, Emit, Line
from named_senderr.parse.named import Rejection, is_candidate
from named_senderr.protocol.msgpack_records import BadRecord, JsonRecords, MsgpackRecords
from named_senderr.sinks.msgpack_stream import MsgpackOut
from named_senderr.telemetry import Stats

IN_FORMATS = ("msgpack", "json")
NON_MATCHING = ("drop", "pass")
HOST_KEYS = ("host", "hostname", "_HOSTNAME")
REJECT_FIELD = "named_senderr_error"
TAG_FIELD = "named_senderr_tag"  # Fluentd's <extract> tag_key takes a record's tag from it
READ_SIZE = 256 * 1024
BATCH_LINES = 256  # candidate lines per engine batch: a read's events go out in parts small enough to stay in cache
WAKE = 0.1  # seconds between looks at the stop flag while stdin is quiet
LOG_FIRST = 20  # complaints of one kind logged one by one; then every LOG_EVERY-th
LOG_EVERY = 1000

_PACK_OPTIONS = {"use_bin_type": True, "unicode_errors": "surrogateescape"}


@dataclass
class FilterStats:
    """What the source saw, beside the engine's parse counters; logged periodically and at exit."""

    batches: int = 0
    bytes_in: int = 0
    records: int = 0
    passed: int = 0  # not send errors, passed through unchanged (--non-matching pass)
    dropped: int = 0  # not send errors, dropped
    bad: Counter[str] = field(default_factory=Counter)

    def summary(self, parsed: Stats, written: int | None) -> str:
        """``written``: event records written to stdout (None when they go to sinks)."""
        out = "" if written is None else f" ({written} records written)"
        return (
            f"{self.records} records in {self.batches} batches ({self.bytes_in} bytes): {parsed.events} events{out}, "
            f"{parsed.rejected} rejected candidates ({_counts(parsed.rejected_by_reason)}), {self.passed} passed and "
            f"{self.dropped} dropped as not send errors, {parsed.undecodable_lines} lines with invalid UTF-8; "
            f"bad input: {_counts(self.bad)}"
        )


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counter.most_common()) or "none"


def find_line(record: dict, keys: tuple[str, ...]) -> str | bytes | BadRecord:
    """The value of the first of ``keys`` that the record holds (a null one is skipped), or why there is none."""
    null = None
    for key in keys:
        value = record.get(key)
        if value is None:
            value = record.get(key.encode())  # a bin key (Ruby's ASCII-8BIT strings)
        if isinstance(value, str | bytes):
            return value
        if value is not None:
            return BadRecord("non_string", f"{key!r} holds {type(value).__name__}, not a string")
        if null is None and (key in record or key.encode() in record):
            null = key
    if null is not None:
        return BadRecord("null_value", f"{null!r} is null: the record has the field but no line in it")
    return BadRecord("missing_key", f"no {' or '.join(map(repr, keys))} key; set --key to the record's field")


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


@dataclass(slots=True)
class RecordLine(Line):
    """A line and the record it came from, which a rejected candidate is passed back as."""

    record: dict = field(default_factory=dict)


class ExecFilterSource:
    """Records read from ``in_fd`` (msgpack or JSON lines) until end of input or ``stop``."""

    name = "exec_filter"

    def __init__(
        self,
        in_fd: int,
        in_format: str,
        max_record_bytes: int,
        keys: tuple[str, ...],
        out: MsgpackOut,
        stats: Stats,
        log: logging.Logger,
        pass_non_matching: bool = False,
        rejected_tag: str | None = None,
    ) -> None:
        self.in_fd = in_fd
        self.decoder = MsgpackRecords(max_record_bytes) if in_format == "msgpack" else JsonRecords(max_record_bytes)
        self.keys = keys
        self.out = out
        self.stats = stats
        self.pass_non_matching = pass_non_matching
        self.rejected_tag = rejected_tag
        self.counts = FilterStats()
        self.complain = Complaints(log)
        self.ended = "signal"  # why reading ended, for the closing log line
        self._packer = msgpack.Packer(**_PACK_OPTIONS)
        self._lines: list[Line] = []  # candidate lines of the current read not yet emitted
        self._held: list[bytes] = []  # records passed back, not yet handed to the writer

    def run(self, emit: Emit, stop: threading.Event) -> None:
        selector = selectors.PollSelector()  # epoll refuses regular files (stdin redirected from a file)
        selector.register(self.in_fd, selectors.EVENT_READ)
        try:
            while not stop.is_set():
                if not selector.select(WAKE):
                    continue
                data = os.read(self.in_fd, READ_SIZE)
                if not data:
                    bad = self.decoder.finish()
                    if bad is not None:
                        self._bad(bad)
                    self.ended = "eof"
                    return
                if not self._batch(data, emit):
                    self.ended = "Fluentd closed our stdout" if self.out.broken else "signal"
                    return
        finally:
            selector.close()

    def close(self) -> None:
        """stdin belongs to the process."""

    def rejected(self, rejection: Rejection, line: Line) -> None:
        """Told by the parse stage of each rejected candidate: logged, and passed back under its tag if asked."""
        if self.rejected_tag is None or not isinstance(line, RecordLine):
            self.complain(f"rejected_{rejection.reason}", f"{rejection.detail}; not passed on (see --rejected-tag)")
            return
        self.complain(f"rejected_{rejection.reason}", f"{rejection.detail}; passed on under tag {self.rejected_tag}")
        error = {"reason": rejection.reason, "detail": rejection.detail}
        packed = self._pack({**line.record, REJECT_FIELD: error, TAG_FIELD: self.rejected_tag}, line.record)
        if packed is not None:
            self.out.add(packed)  # the parse stage runs before the batch's events are written: it goes first

    def _batch(self, data: bytes, emit: Emit) -> bool:
        """One read: candidate lines to the engine, other records passed back in their place; False: stop."""
        counts = self.counts
        counts.batches += 1
        counts.bytes_in += len(data)
        first_key, passing, lines = self.keys[0], self.pass_non_matching, self._lines
        bare = self.rejected_tag is None  # a line need not carry its record
        for obj in self.decoder.feed(data):
            if type(obj) is dict:  # the fast path: most lines are not send errors; one substring test each
                value = obj.get(first_key)
                if isinstance(value, (bytes, str)):
                    counts.records += 1
                    if is_candidate(value.decode("latin-1") if isinstance(value, bytes) else value):  # in_tail: bin
                        if bare and isinstance(value, bytes) and len(obj) == 1 and value.isascii():  # in_tail's record
                            lines.append(Line(value))
                        else:
                            lines.append(self._candidate(obj, value))
                        if len(lines) >= BATCH_LINES and not self._send(emit):
                            return False
                    elif not passing:
                        counts.dropped += 1
                    elif not self._pass_back(obj, emit):
                        return False
                    continue
            try:
                line = self._line(obj)
            except Exception:  # a bug must cost one record, not the Fluentd pipeline
                self._internal_error("a record")
                continue
            if line is not None:
                lines.append(line)
                if len(lines) >= BATCH_LINES and not self._send(emit):
                    return False
            elif type(obj) is dict:  # not a send error, or no line in it
                if not passing:
                    counts.dropped += 1
                elif not self._pass_back(obj, emit):
                    return False
        self.stats.lines, self.stats.bytes = counts.records, counts.bytes_in  # what /metrics shows as read
        if not self._send(emit):
            return False
        self._hand_over()
        return self.out.flush()

    def _pass_back(self, record: dict, emit: Emit) -> bool:
        """A record that is no send error, written back in its place: after the events of the lines before it."""
        if self._lines and not self._send(emit):
            return False
        self.counts.passed += 1
        packed = self._pack(record, record)
        if packed is not None:
            self._held.append(packed)
        return True

    def _send(self, emit: Emit) -> bool:
        """The lines gathered so far, to the engine; False when it refused them (stopping, stdout gone)."""
        if not self._lines:
            return True
        self._hand_over()  # records passed back before these lines go out before their events
        batch = Batch(self._lines[:])
        self._lines.clear()
        try:
            if emit(batch):
                return True
        except Exception:  # a bug must cost one batch, not the Fluentd pipeline
            self._internal_error(f"a batch of {len(batch.lines)} candidate lines")
            return True
        if not self.out.broken:
            self._bad(BadRecord("unprocessed", f"stopping: {len(batch.lines)} candidate lines and any later records "
                                               "of the last read were not processed"))  # fmt: skip
        return False

    def _hand_over(self) -> None:
        if self._held:
            self.out.add(b"".join(self._held))
            self._held.clear()

    def _internal_error(self, what: str) -> None:
        self.counts.bad["internal_error"] += 1
        self.complain.log.exception("internal error on %s; it was dropped, please report this", what)

    def _line(self, obj: Any) -> Line | None:
        """The candidate line of a decoded object that the fast path did not take; None (counted) if none."""
        if isinstance(obj, BadRecord):
            self._bad(obj)
            return None
        self.counts.records += 1
        if not isinstance(obj, dict):
            self._bad(BadRecord("not_a_map", f"a record must be a map, got {type(obj).__name__}; dropped"))
            return None
        value = find_line(obj, self.keys)
        if isinstance(value, BadRecord):
            self._bad(value)
            return None
        if not is_candidate(value if isinstance(value, str) else value.decode("latin-1")):
            return None
        return self._candidate(obj, value)

    def _candidate(self, record: dict, value: str | bytes) -> Line:
        """A line with a send-error phrase, as the bytes Fluentd sent (latin-1 kept every byte for the test).

        The record rides along only when a rejection is passed back in its place (``rejected_tag``).
        """
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        if not raw.isascii():
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                self.stats.undecodable_lines += 1  # parsed with the bad bytes escaped
        host = _record_host(record) if len(record) > 1 else None  # in_tail's records hold the line alone
        if self.rejected_tag is not None:
            return RecordLine(raw, host=host, record=record)
        return Line(raw) if host is None else Line(raw, host=host)

    def _pack(self, record: dict, source: dict) -> bytes | None:
        try:
            return self._packer.pack(record)
        except Exception as exc:  # a value msgpack cannot write must not stop the filter
            self._packer = msgpack.Packer(**_PACK_OPTIONS)  # a failed pack can leave the packer's buffer dirty
            self._bad(
                BadRecord("unpackable", f"{type(exc).__name__}: {exc}; record with keys {list(source)[:10]} dropped")
            )
            return None

    def _bad(self, bad: BadRecord) -> None:
        self.counts.bad[bad.reason] += 1
        self.complain(bad.reason, bad.detail)


def renderer(format: str) -> Callable[[Event], dict]:
    """``to_flat``, or ``to_ecs`` with the ingest time of the current second (a long-running process)."""
    if format == "flat":
        return to_flat
    second, text = -1, ""

    def ecs(event: Event) -> dict:
        nonlocal second, text
        now = int(time.time())
        if now != second:
            second, text = now, datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return to_ecs(event, text)

    return ecs
