"""Appending events to the disk queue: all or nothing, waiting (or dropping) while it is full.

A disk that refuses an append (full, I/O error) is a full queue too: nothing of
the append was kept, so the events are appended again after a pause, or
dropped and counted. The queue's counters for /metrics live here as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from named_senderr.metrics import Sample
from named_senderr.queue.disk import HEADER, DiskQueue, QueueWriteError
from named_senderr.telemetry import QueueStats

Warn = Callable[[str], None]


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

    def extend(self, payloads: list[bytes]) -> None:
        """Encoded events (``queue.consumer.encode_event``), appended at the next ``flush``."""
        self._pending.extend(payloads)

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


def queue_samples(qstats: QueueStats, queue: DiskQueue) -> Iterator[Sample]:
    """The disk queue's part of /metrics, for ``ship`` and ``serve`` alike."""
    yield Sample("named_senderr_events_queued_total", "counter", "Events written to the disk queue.", qstats.queued)
    yield Sample("named_senderr_events_dropped_total", "counter", "Events dropped, the queue full.", qstats.dropped)
    yield Sample("named_senderr_queue_bytes", "gauge", "Bytes of the disk queue on disk.", queue.held_bytes)
    yield Sample("named_senderr_queue_max_bytes", "gauge", "Size bound of the disk queue.", queue.max_bytes)
    yield Sample("named_senderr_queue_writable", "gauge", "0 while the disk refuses appends (full, I/O error).",
                 0 if queue.write_error else 1)  # fmt: skip
    yield Sample("named_senderr_queue_write_failures_total", "counter",
                 "Appends the disk refused; nothing of them was kept.", queue.write_failures)  # fmt: skip
    yield Sample("named_senderr_queue_damaged_bytes_total", "counter",
                 "Damaged queue bytes skipped or cut; their events are lost.", queue.damaged_bytes)  # fmt: skip
    yield Sample("named_senderr_queue_torn_bytes_total", "counter",
                 "Bytes of a write a crash interrupted, cut at start (never acknowledged).", queue.torn_bytes)  # fmt: skip
