"""NDJSON events straight onto a byte stream, as a delivery: ``parse``, ``tail`` and ``listen`` on stdout.

No batching thread and no retries: the events are rendered and written in the
caller's thread, and a batch is durable once its write is flushed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import BinaryIO

from named_senderr.event import Event
from named_senderr.sinks.stdout import NdjsonWriter


class StreamDelivery:
    """``flush_every``: batches are flushed at once (streaming commands) or only at the end (``parse``)."""

    def __init__(self, stream: BinaryIO, render: Callable[[Event], dict], flush_every: bool = True) -> None:
        self._writer = NdjsonWriter(stream)
        self._render = render
        self._flush_every = flush_every
        self._durable = 0

    def ready(self) -> bool:
        return True

    def put(self, events: list[Event], seq: int, wait: bool = True) -> bool:
        write, render = self._writer.write, self._render
        for event in events:
            write(render(event))
        if self._flush_every:
            self._writer.flush()
            self._durable = seq
        return True

    def durable_through(self) -> int:
        return self._durable

    def tick(self) -> None:
        """Every write is already out."""

    def failed(self) -> bool:
        return False

    def close(self, stop: threading.Event) -> None:
        self._writer.flush()
