"""Events straight onto a byte stream, as a delivery: NDJSON for ``parse``, ``tail`` and ``listen``, msgpack for Fluentd.

No batching thread and no retries: the events are rendered and written in the
caller's thread, and a batch is durable once its write is flushed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO, Protocol

from named_senderr.event import Event
from named_senderr.sinks.stdout import NdjsonWriter


class RecordWriter(Protocol):
    """Records encoded onto a stream: NDJSON (``NdjsonWriter``), or msgpack for Fluentd (sinks/msgpack_stream.py)."""

    def write_all(self, records: Iterable[dict]) -> None: ...

    def flush(self) -> object: ...


class StreamDelivery:
    """``flush_every``: batches are flushed at once (streaming commands) or only at the end (``parse``).

    ``writer`` replaces NDJSON onto ``stream`` with another encoding. ``line``, when given, encodes an event
    straight to its NDJSON line (newline included) instead of ``render``'s record: the fast path of ``parse``.
    """

    def __init__(
        self,
        stream: BinaryIO | None,
        render: Callable[[Event], dict],
        flush_every: bool = True,
        writer: RecordWriter | None = None,
        line: Callable[[Event], bytes] | None = None,
    ) -> None:
        self._ndjson: NdjsonWriter | None = None
        if writer is None:
            assert stream is not None, "a stream or a writer"
            writer = self._ndjson = NdjsonWriter(stream)
        self._writer = writer
        self._render = render
        self._line = line
        self._flush_every = flush_every
        self._durable = 0

    def ready(self) -> bool:
        return True

    def put(
        self, events: list[Event], seq: int, wait: bool = True, routes: Sequence[frozenset[int]] | None = None
    ) -> bool:
        """``routes`` are only ever None or all this one stream's (a pipeline of one sink)."""
        if self._line is not None and self._ndjson is not None:
            line = self._line
            self._ndjson.write_lines(line(event) for event in events)
        else:
            render = self._render
            self._writer.write_all(render(event) for event in events)  # each record encoded while it is fresh
        if self._flush_every:
            self._writer.flush()
            self._durable = max(self._durable, seq)
        return True

    def durable_through(self) -> int:
        return self._durable

    def tick(self) -> None:
        """Every write is already out."""

    def failed(self) -> bool:
        return False

    def close(self, stop: threading.Event) -> None:
        self._writer.flush()
