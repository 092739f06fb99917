"""A sink's worker threads behind a bounded queue.

The reading thread parses and encodes; the workers compress, send and retry,
so network waits overlap with parsing (zlib and sockets release the GIL).
The queue holds at most ``depth`` batches: when the sink falls behind, the
reader waits, and memory stays at a few batches whatever the input size.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from named_senderr.queue.driver import Driver, SinkCounters
from named_senderr.sinks.outcome import Sink, SinkFailed

_STOP = object()
POLL = 0.2  # seconds between checks for a failed sink while the queue is full


class SinkWorkers:
    """``done(tag)`` is called from a worker once the batch submitted with ``tag`` is settled: stored, already
    there, dead-lettered, or abandoned to the dead-letter file because the sink stopped."""

    def __init__(
        self,
        sink: Sink,
        make_driver: Callable[[], Driver],
        counters: SinkCounters,
        done: Callable[[Any], None] | None = None,
    ) -> None:
        self.sink = sink
        self.counters = counters
        self._done = done
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=sink.workers)
        self._drivers = [make_driver() for _ in range(sink.workers)]
        self._threads = [
            threading.Thread(target=self._run, args=(driver,), name=f"{sink.name} #{n}", daemon=True)
            for n, driver in enumerate(self._drivers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: list[Any], tag: Any = None) -> bool:
        """Queue ``batch``, waiting while the queue is full; once the sink has failed, dead-letter it, False."""
        handed = time.monotonic()  # its latency counts the wait for room too
        while not self.counters.failed:
            try:
                self._queue.put((batch, tag, handed), timeout=POLL)
                return True
            except queue.Full:
                continue
        self._drivers[0].abandon(batch, f"not sent: the sink had stopped ({self.counters.failed})")
        self._settled(tag)
        return False

    def has_room(self) -> bool:
        """A batch submitted now would not wait."""
        return not self._queue.full()

    def close(self) -> None:
        """Let the workers finish what is queued, then stop them (the sink stays open: its opener closes it)."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()

    def _run(self, driver: Driver) -> None:
        while (entry := self._queue.get()) is not _STOP:
            batch, tag, handed = entry
            try:
                self._deliver(driver, batch)
            finally:
                self.counters.settled(time.monotonic() - handed)
                self._settled(tag)

    def _deliver(self, driver: Driver, batch: list[Any]) -> None:
        if self.counters.failed:
            driver.abandon(batch, f"not sent: the sink had stopped ({self.counters.failed})")
            return
        try:
            driver.deliver(batch)
        except SinkFailed as exc:
            self.counters.fail(str(exc))
        except Exception as exc:  # a bug must stop the run, not hang the reader
            driver.abandon(batch, f"not sent: internal error {exc!r}")
            self.counters.fail(f"{self.sink.name}: internal error {exc!r}; please report it")

    def _settled(self, tag: Any) -> None:
        if self._done is not None:
            self._done(tag)
