"""NDJSON to a byte stream: the ``parse`` command's output and the ``stdout:`` sink."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, BinaryIO

import orjson

from named_senderr.event import Event, to_ecs, to_flat
from named_senderr.sinks.outcome import Outcome

if TYPE_CHECKING:  # `parse` imports this module: keep the shipping configuration out of its start-up
    from named_senderr.settings.ship import SinkConfig

_BATCH = 512


class NdjsonWriter:
    """Buffers encoded lines and writes them in batches; stdout carries data only.

    The lines are copied into one buffer as they come: orjson's results each keep a buffer of their own, and
    holding a batch of them costs several times their encoding.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending = bytearray()
        self._lines = 0  # in _pending

    def write_all(self, records: Iterable[dict]) -> None:
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        self.write_lines(dumps(record, option=option) for record in records)

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Lines already encoded, each ending in a newline."""
        pending, count = self._pending, self._lines
        for line in lines:
            pending += line
            count += 1
            if count >= _BATCH:  # written in parts: a large batch's lines are never all held at once
                self._lines = count
                self.flush()
                pending, count = self._pending, self._lines
        self._lines = count

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._pending)
            self._pending, self._lines = bytearray(), 0  # a new one: the stream may keep what it was given
        self._stream.flush()


class StdoutSink:
    """The ``stdout:`` sink: the same NDJSON as ``parse`` (ECS, or flat with ``?format=flat``)."""

    workers = 1  # one writer keeps the lines in input order

    def __init__(self, config: SinkConfig, ingest_time: str, stream: BinaryIO) -> None:
        self.name = config.name
        self._stream = stream
        self._flat = config.format == "flat"
        self._ingest_time = ingest_time

    def encode(self, event: Event) -> tuple[bytes, int]:
        record = to_flat(event) if self._flat else to_ecs(event, self._ingest_time)
        line = b"%s\n" % orjson.dumps(record)  # a right-sized copy: orjson's result keeps a buffer of several KB
        return line, len(line)

    def send(self, items: list[bytes]) -> Outcome:
        try:
            self._stream.write(b"".join(items))
            self._stream.flush()
        except BrokenPipeError:
            return Outcome(fatal="stdout was closed by the reading program")
        return Outcome(delivered=len(items))

    def dead_record(self, item: bytes) -> dict:
        return {"document": orjson.Fragment(item.rstrip(b"\n"))}

    def drop_stored(self, items: list) -> list:
        return items  # a stream keeps no record of what it was given

    def close(self) -> None:
        """stdout belongs to the process; it is not closed here."""
