"""Msgpack records straight onto a pipe, as a delivery: ``fluentd-filter``'s stdout, read by Fluentd.

Fluentd reads its exec_filter child's stdout with a streaming parser and
waits for the answer to each chunk with stdin still open, so every batch is
written to the descriptor itself (no buffer left in between) once it is
complete: a batch is durable once written. The events and the records the
source passes back unchanged share one writer, which keeps each record whole
whatever thread writes (the rollup ticker writes the windows it closes).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import msgpack

from named_senderr.event import Event


class MsgpackOut:
    """Packed records, gathered from any thread and written to ``fd`` together at each ``flush``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._parts: list[bytes] = []
        self.broken: OSError | None = None  # the reader went away (EPIPE): nothing more is written

    def add(self, packed: bytes) -> None:
        with self._lock:
            self._parts.append(packed)

    def flush(self) -> bool:
        """Write what was added; False once the pipe is broken."""
        with self._lock:
            if self.broken is not None:
                return False
            view = memoryview(b"".join(self._parts))
            self._parts.clear()
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                self.broken = exc
                return False
        return True


class MsgpackDelivery:
    """Events rendered as records, packed and written with the batch that brought them."""

    def __init__(self, out: MsgpackOut, render: Callable[[Event], dict]) -> None:
        self._out = out
        self._render = render
        self._packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
        self._durable = 0
        self.written = 0  # event records written

    def ready(self) -> bool:
        return self._out.broken is None

    def put(self, events: list[Event], seq: int, wait: bool = True) -> bool:
        if events:
            pack, render = self._packer.pack, self._render
            self._out.add(b"".join([pack(render(event)) for event in events]))
        if not self._out.flush():
            return False
        self.written += len(events)
        self._durable = seq
        return True

    def durable_through(self) -> int:
        return self._durable

    def tick(self) -> None:
        """Every batch is written as it comes."""

    def failed(self) -> bool:
        return self._out.broken is not None

    def close(self, stop: threading.Event) -> None:
        self._out.flush()
