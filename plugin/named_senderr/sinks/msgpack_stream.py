"""Msgpack records straight onto a pipe: ``fluentd-filter``'s stdout, read by Fluentd.

Fluentd reads its exec_filter child's stdout with a streaming parser and
waits for the answer to each chunk with stdin still open, so every batch is
written to the descriptor itself (no buffer left in between) once it is
complete; the delivery is ``StreamDelivery`` with this writer. The events and
the records the source passes back unchanged share the writer, which keeps
each record whole whatever thread writes (the rollup ticker writes the
windows it closes).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

import msgpack


class MsgpackOut:
    """Records gathered from any thread and written to ``fd`` together at each ``flush``; never raises."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._parts: list[bytes] = []
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=False)  # strict UTF-8: its fast path
        self.broken: OSError | None = None  # the reader went away (EPIPE): nothing more is written
        self.events = 0  # event records written (``write_all``)

    def write_all(self, records: Iterable[dict]) -> None:
        """A batch's event records (the delivery's side: the runner writes from one thread at a time).

        Packed together into one buffer; a text that is not UTF-8 (a lone surrogate that kept a raw byte) fails
        the strict packer, and only then is the batch packed again keeping those bytes.
        """
        records = list(records)
        packer = self._packer
        try:
            for record in records:
                packer.pack(record)
            packed = packer.bytes()
        except UnicodeEncodeError:
            packed = b"".join(map(msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape").pack, records))
        finally:
            packer.reset()
        with self._lock:
            self._parts.append(packed)
            self.events += len(records)

    def add(self, packed: bytes) -> None:
        """A record the source packed itself (passed back unchanged)."""
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
